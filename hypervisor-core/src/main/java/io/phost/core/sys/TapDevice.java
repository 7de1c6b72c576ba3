package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * A TAP device opened through {@code /dev/net/tun} ({@code TUNSETIFF} with {@code IFF_TAP|IFF_NO_PI}, and
 * {@code IFF_VNET_HDR} when asked). The fd is non-blocking: {@link #read} returns {@code -EAGAIN} when empty.
 *
 * <pre>
 * struct ifreq (40 bytes):  0: char ifr_name[16]   16: short ifr_flags   (rest of the union unused)
 *
 * With IFF_VNET_HDR every frame read or written is preceded by a virtio_net_hdr (size set to 12 with
 * TUNSETVNETHDRSZ, i.e. virtio_net_hdr_mrg_rxbuf, little-endian):
 *   0: u8 flags (1 = NEEDS_CSUM)  1: u8 gso_type (0 none, 1 TCPV4, 3 UDP, 4 TCPV6, 0x80 ECN)
 *   2: u16 hdr_len  4: u16 gso_size  6: u16 csum_start  8: u16 csum_offset  10: u16 num_buffers
 * </pre>
 *
 * The device outlives a move into another network namespace ({@code ip link set NAME netns NS}): the fd
 * keeps working, which is how a "tap port" puts a namespace on a switch.
 */
public final class TapDevice implements AutoCloseable {
    public static final int IFF_TAP = 0x0002;
    public static final int IFF_NO_PI = 0x1000;
    public static final int IFF_VNET_HDR = 0x4000;
    /** tun queues written frames for a NAPI instance instead of running the stack inside write(2). */
    public static final int IFF_NAPI = 0x0010;
    public static final long TUNSETIFF = 0x400454caL;
    public static final long TUNSETOFFLOAD = 0x400454d0L;
    public static final long TUNSETVNETHDRSZ = 0x400454d8L;
    public static final int TUN_F_CSUM = 0x01;
    public static final int TUN_F_TSO4 = 0x02;
    public static final int TUN_F_TSO6 = 0x04;
    public static final int TUN_F_TSO_ECN = 0x08;
    /** Size of the virtio_net_hdr we configure (virtio_net_hdr_mrg_rxbuf, as virtio 1.0 uses). */
    public static final int VNET_HDR_LENGTH = 12;

    private final String name;
    private final int fd;
    private final boolean vnetHeader;
    private volatile boolean closed;

    private TapDevice(String name, int fd, boolean vnetHeader) {
        this.name = name;
        this.fd = fd;
        this.vnetHeader = vnetHeader;
    }

    /**
     * Creates (or attaches to) TAP {@code name}. With {@code vnetHeader} each frame carries a 12-byte
     * virtio_net_hdr; {@code offloads} (TUN_F_* bits, 0 for none) lets the kernel hand over unchecksummed and
     * GSO super-frames (requires {@code vnetHeader}).
     */
    public static TapDevice open(String name, boolean vnetHeader, int offloads) {
        return open(name, vnetHeader, offloads, 0);
    }

    /** As {@link #open(String, boolean, int)} with extra {@code TUNSETIFF} flags ({@link #IFF_NAPI}). */
    public static TapDevice open(String name, boolean vnetHeader, int offloads, int extraFlags) {
        if (name.getBytes(StandardCharsets.US_ASCII).length > 15) {
            throw new IllegalArgumentException("interface name longer than 15 bytes: " + name);
        }
        if (offloads != 0 && !vnetHeader) {
            throw new IllegalArgumentException("offloads need the virtio-net header");
        }
        int fd = NetSyscalls.open("/dev/net/tun", NetSyscalls.O_RDWR | NetSyscalls.O_NONBLOCK | NetSyscalls.O_CLOEXEC);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = a.allocate(40);
            byte[] n = name.getBytes(StandardCharsets.US_ASCII);
            MemorySegment.copy(n, 0, ifr, ValueLayout.JAVA_BYTE, 0, n.length);
            short flags = (short) (IFF_TAP | IFF_NO_PI | (vnetHeader ? IFF_VNET_HDR : 0) | extraFlags);
            ifr.set(ValueLayout.JAVA_SHORT, 16, flags);
            NetSyscalls.ioctl(fd, TUNSETIFF, ifr, "TUNSETIFF " + name);
            String actual = ifr.getString(0, StandardCharsets.US_ASCII);
            if (vnetHeader) {
                NetSyscalls.ioctl(fd, TUNSETVNETHDRSZ, a.allocateFrom(ValueLayout.JAVA_INT, VNET_HDR_LENGTH),
                    "TUNSETVNETHDRSZ " + name);
            }
            // TUNSETOFFLOAD takes the flags as the ioctl argument value itself, not a pointer to it.
            NetSyscalls.ioctl(fd, TUNSETOFFLOAD, MemorySegment.ofAddress(offloads), "TUNSETOFFLOAD " + name);
            return new TapDevice(actual, fd, vnetHeader);
        } catch (RuntimeException e) {
            NetSyscalls.close(fd);
            throw e;
        }
    }

    public String name() {
        return name;
    }

    public int fd() {
        return fd;
    }

    public boolean vnetHeader() {
        return vnetHeader;
    }

    /** SIOCSIFMTU (linux/sockios.h): struct ifreq { char name[16]; int mtu; } on any socket. */
    private static final long SIOCSIFMTU = 0x8922L;

    /** Sets the interface's MTU (SIOCSIFMTU through a throwaway AF_INET datagram socket). */
    public void setMtu(int mtu) {
        int sock = NetSyscalls.socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */ | NetSyscalls.SOCK_CLOEXEC, 0);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ifr = a.allocate(40);
            byte[] n = name.getBytes(StandardCharsets.US_ASCII);
            MemorySegment.copy(n, 0, ifr, ValueLayout.JAVA_BYTE, 0, n.length);
            ifr.set(ValueLayout.JAVA_INT, 16, mtu);
            NetSyscalls.ioctl(sock, SIOCSIFMTU, ifr, "SIOCSIFMTU " + name + " " + mtu);
        } finally {
            NetSyscalls.close(sock);
        }
    }

    /** TUNSETCARRIER (linux/if_tun.h): _IOW('T', 226, int), the carrier state as a pointer to an int. */
    private static final long TUNSETCARRIER = 0x400454e2L;

    /** Sets the TAP's carrier (a NIC's link): off, the interface shows NO-CARRIER and the kernel sends nothing on it. */
    public void setCarrier(boolean on) {
        try (Arena a = Arena.ofConfined()) {
            NetSyscalls.ioctl(fd, TUNSETCARRIER, a.allocateFrom(ValueLayout.JAVA_INT, on ? 1 : 0), "TUNSETCARRIER " + name);
        }
    }

    /** Reads one frame (with its vnet header when enabled) into {@code address}; bytes read or -errno. */
    public long read(long address, int capacity) {
        return NetSyscalls.read(fd, address, capacity);
    }

    /** Writes one frame; bytes written or -errno (-EAGAIN when the device queue is full, -EIO when down). */
    public long write(long address, int length) {
        return NetSyscalls.write(fd, address, length);
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            NetSyscalls.close(fd);
        }
    }
}
