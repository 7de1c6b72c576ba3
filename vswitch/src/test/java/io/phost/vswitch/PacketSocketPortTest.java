package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.core.sys.PacketSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The AF_PACKET uplink's receive side on a veth pair: frames that fit a ring slot are read in place, bigger ones
 * (jumbo here, GSO super-frames in traffic) come from the socket's queue ({@code TP_STATUS_COPY}), and the switch
 * must see all of them whole, unchanged and in the order they were sent, with a VLAN tag the kernel stripped put
 * back on both paths. Frames of a test ethertype are sent from the other end with a raw socket; anything else the
 * kernel sends on a fresh link (IPv6 DAD, router solicitations) is ignored.
 */
class PacketSocketPortTest {
    private static final int ETHERTYPE = 0x88b5; // IEEE local experimental
    private Netns net;
    private final List<AutoCloseable> devices = new ArrayList<>();

    @BeforeEach
    void setUp() {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun and iperf3");
        net = new Netns();
    }

    @AfterEach
    void tearDown() throws Exception {
        for (AutoCloseable d : devices.reversed()) {
            d.close();
        }
        if (net != null) {
            net.close();
        }
    }

    @Test
    void shouldDeliverSlotSizedAndQueuedFramesWholeAndInOrderWithTheirVlanTags() {
        String a = net.ifname("psa");
        String b = net.ifname("psb");
        net.veth(a, b);
        for (String i : new String[] {a, b}) {
            Netns.must("ip", "link", "set", i, "mtu", "9000");
            Netns.must("ip", "link", "set", i, "up");
        }
        PacketSocketPort port = PacketSocketPort.open(a);
        devices.add(port);
        PacketSocket sender = PacketSocket.open(b, 1 << 16, 2, false);
        devices.add(sender);

        // Untagged sizes around a slot's capacity (2,048 bytes less the 76-byte header: 1,972) and well above it;
        // every third frame carries a VLAN 7 tag on top (the receiving kernel strips it into tp_vlan_tci).
        int[] sizes = {60, 1514, 9014, 64, 1972, 1973, 3000, 9014, 1514, 2100};
        int frames = 400;
        List<byte[]> sent = new ArrayList<>();
        List<byte[]> got = new ArrayList<>();
        FrameHandler collect = (buf, off, len, meta) -> {
            if (len >= 18 && (buf.getShort(off + 12, ByteOrder.BIG_ENDIAN) & 0xffff) == ETHERTYPE
                || len >= 18 && (buf.getShort(off + 16, ByteOrder.BIG_ENDIAN) & 0xffff) == ETHERTYPE) {
                byte[] f = new byte[len];
                buf.getBytes(off, f);
                got.add(f);
            }
        };
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(9018);
            int seq = 0;
            while (seq < frames) {
                // Bursts of 25 build a backlog of slots and queued frames before the port reads them.
                for (int k = 0; k < 25 && seq < frames; k++, seq++) {
                    boolean tagged = seq % 3 == 0;
                    byte[] f = frame(seq, sizes[seq % sizes.length] + (tagged ? 4 : 0), tagged);
                    MemorySegment.copy(f, 0, out, ValueLayout.JAVA_BYTE, 0, f.length);
                    long r = sender.send(out.address(), f.length);
                    assertEquals(f.length, r, "send of frame " + seq + " (" + f.length + " bytes)");
                    sent.add(f);
                }
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (got.size() < sent.size() && System.nanoTime() < deadline) {
                    if (port.poll(collect, 32) == 0) {
                        Thread.onSpinWait();
                    }
                }
            }
        }
        assertEquals(sent.size(), got.size(), "frames the switch saw (uplink drops " + port.receiveDrops() + ")");
        for (int i = 0; i < sent.size(); i++) {
            assertArrayEquals(sent.get(i), got.get(i), "frame " + i + " of " + sent.get(i).length + " bytes");
        }
        assertEquals(0, port.receiveDrops());
        assertEquals(frames * 5 / 10, port.queuedFrames, "frames above a slot's 1,972 bytes came from the queue");
    }

    /** An Ethernet frame of {@code length} bytes carrying {@code seq} and a pattern derived from it. */
    private static byte[] frame(int seq, int length, boolean tagged) {
        byte[] f = new byte[length];
        byte[] dst = {0x02, 0x51, 0, 0, 0, 1};
        byte[] src = {0x02, 0x51, 0, 0, 0, 2};
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(src, 0, f, 6, 6);
        int p = 12;
        if (tagged) {
            f[p++] = (byte) 0x81;
            f[p++] = 0;
            f[p++] = 0;
            f[p++] = 7;
        }
        f[p++] = (byte) (ETHERTYPE >> 8);
        f[p++] = (byte) ETHERTYPE;
        f[p++] = (byte) (seq >> 8);
        f[p++] = (byte) seq;
        for (int i = p; i < length; i++) {
            f[i] = (byte) (seq * 31 + i);
        }
        return f;
    }
}
