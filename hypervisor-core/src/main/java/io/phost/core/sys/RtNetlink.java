package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * rtnetlink RTM_SETLINK for SR-IOV virtual-function settings on a physical function (what
 * {@code ip link set PF vf N mac M vlan V spoofchk on trust off} sends). Host byte order throughout.
 * <pre>
 * nlmsghdr   0: u32 len  4: u16 type (RTM_SETLINK 19)  6: u16 flags (REQUEST|ACK)  8: u32 seq  12: u32 pid
 * ifinfomsg 16: u8 family 17: pad 18: u16 type 20: i32 index 24: u32 flags 28: u32 change       (32 bytes)
 * rtattr IFLA_VFINFO_LIST(22) { rtattr IFLA_VF_INFO(1) {
 *     IFLA_VF_MAC(1)      { u32 vf; u8 mac[32] }
 *     IFLA_VF_VLAN(2)     { u32 vf; u32 vlan; u32 qos }
 *     IFLA_VF_SPOOFCHK(4) { u32 vf; u32 setting }
 *     IFLA_VF_TRUST(9)    { u32 vf; u32 setting } } }
 * answer: NLMSG_ERROR(2) { i32 error (0 = ack, -errno); original header }
 * </pre>
 */
public final class RtNetlink {
    public static final int RTM_SETLINK = 19;
    public static final int NLMSG_ERROR = 2;
    public static final int NLM_F_REQUEST = 1;
    public static final int NLM_F_ACK = 4;
    public static final int IFLA_VFINFO_LIST = 22;
    public static final int IFLA_VF_INFO = 1;
    public static final int IFLA_VF_MAC = 1;
    public static final int IFLA_VF_VLAN = 2;
    public static final int IFLA_VF_SPOOFCHK = 4;
    public static final int IFLA_VF_TRUST = 9;

    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.nativeOrder());
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.nativeOrder());

    private RtNetlink() {}

    /** VF settings to apply; {@code mac} -1 / {@code vlan} -1 / booleans null mean "leave as is". */
    public record VfSettings(int vf, long mac, int vlan, Boolean spoofCheck, Boolean trust) {}

    /**
     * Encodes the RTM_SETLINK request into {@code m} and returns its length. Public so tests can check the
     * layout byte for byte.
     */
    public static int encode(MemorySegment m, int seq, int pfIndex, VfSettings s) {
        m.fill((byte) 0);
        int p = 32; // after nlmsghdr + ifinfomsg
        m.set(ValueLayout.JAVA_BYTE, 16, (byte) 0);          // AF_UNSPEC
        m.set(I32, 20, pfIndex);
        int list = p;
        p += 4;
        int info = p;
        p += 4;
        if (s.mac() != -1) {
            p = attr(m, p, IFLA_VF_MAC, 36);
            m.set(I32, p - 36, s.vf());
            for (int i = 0; i < 6; i++) {
                m.set(ValueLayout.JAVA_BYTE, p - 32 + i, (byte) (s.mac() >>> (40 - 8 * i)));
            }
        }
        if (s.vlan() != -1) {
            p = attr(m, p, IFLA_VF_VLAN, 12);
            m.set(I32, p - 12, s.vf());
            m.set(I32, p - 8, s.vlan());
            m.set(I32, p - 4, 0);
        }
        if (s.spoofCheck() != null) {
            p = attr(m, p, IFLA_VF_SPOOFCHK, 8);
            m.set(I32, p - 8, s.vf());
            m.set(I32, p - 4, s.spoofCheck() ? 1 : 0);
        }
        if (s.trust() != null) {
            p = attr(m, p, IFLA_VF_TRUST, 8);
            m.set(I32, p - 8, s.vf());
            m.set(I32, p - 4, s.trust() ? 1 : 0);
        }
        m.set(I16, info, (short) (p - info));
        m.set(I16, info + 2, (short) IFLA_VF_INFO);
        m.set(I16, list, (short) (p - list));
        m.set(I16, list + 2, (short) IFLA_VFINFO_LIST);
        m.set(I32, 0, p);                                       // nlmsg_len
        m.set(I16, 4, (short) RTM_SETLINK);
        m.set(I16, 6, (short) (NLM_F_REQUEST | NLM_F_ACK));
        m.set(I32, 8, seq);
        return p;
    }

    /** Writes an rtattr header for a payload of {@code length} bytes at {@code p}; returns the aligned end. */
    private static int attr(MemorySegment m, int p, int type, int length) {
        m.set(I16, p, (short) (4 + length));
        m.set(I16, p + 2, (short) type);
        return p + 4 + ((length + 3) & ~3);
    }

    /**
     * Applies {@code s} to VF {@code s.vf()} of the interface with index {@code pfIndex}; returns 0 or the
     * kernel's negative errno (EOPNOTSUPP when the driver has no SR-IOV support).
     */
    public static int setVf(int pfIndex, VfSettings s) {
        int fd = NetSyscalls.socket(NetSyscalls.AF_NETLINK, NetSyscalls.SOCK_RAW | NetSyscalls.SOCK_CLOEXEC,
            NetSyscalls.NETLINK_ROUTE);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment req = a.allocate(256, 8);
            int len = encode(req, 1, pfIndex, s);
            long sent = NetSyscalls.send(fd, req.address(), len, 0);
            if (sent < 0) {
                return (int) sent;
            }
            MemorySegment ans = a.allocate(4096, 8);
            long n = NetSyscalls.recv(fd, ans.address(), 4096, 0);
            if (n < 0) {
                return (int) n;
            }
            if (n < 20 || (ans.get(I16, 4) & 0xffff) != NLMSG_ERROR) {
                return -Errno.EIO;
            }
            return ans.get(I32, 16);
        } finally {
            NetSyscalls.close(fd);
        }
    }
}
