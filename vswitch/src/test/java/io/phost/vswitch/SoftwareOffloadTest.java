package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.util.Random;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Unfinished frames (as a TAP with TSO/csum offload or a veth behind AF_PACKET hands them over) towards a port
 * whose sink takes no offloads (a synthetic NIC): the switch completes checksums and segments. Every segment is
 * checked with an independent checksum routine and the payload is reassembled byte for byte.
 */
class SoftwareOffloadTest {
    private static final int ETH = 14;
    private VSwitch sw;
    private Port in;
    private Port out;
    private final Frames.Recorder rec = new Frames.Recorder();

    @BeforeEach
    void setUp() {
        sw = new VSwitch("s", SwitchType.INTERNAL);
        sw.tick(System.nanoTime());
        in = sw.addPort("host", PortKind.HOST, PortConfig.uplink(), FrameSink.DISCARD, null);
        out = sw.addPort("vnic", PortKind.VNIC, PortConfig.vnic(B), rec, null);
    }

    /** Ethernet + IPv4 (id 0x1234) + TCP (32-byte header, flags PSH|ACK|FIN|CWR) + payload; TCP checksum = pseudo sum. */
    static byte[] tcp4(byte[] payload, int tcpFlags) {
        ByteBuffer bb = ByteBuffer.allocate(ETH + 20 + 32 + payload.length);
        bb.putShort((short) (B >>> 32)).putInt((int) B).putShort((short) (A >>> 32)).putInt((int) A).putShort((short) 0x0800);
        bb.put((byte) 0x45).put((byte) 0).putShort((short) (20 + 32 + payload.length)).putShort((short) 0x1234)
            .putShort((short) 0x4000).put((byte) 64).put((byte) 6).putShort((short) 0).putInt(0x0a530064).putInt(0x0a530001);
        bb.putShort((short) 40000).putShort((short) 5201).putInt(0xfffffc00).putInt(77).put((byte) 0x80).put((byte) tcpFlags)
            .putShort((short) 502).putShort((short) 0).putShort((short) 0).put(new byte[12]);
        bb.put(payload);
        return bb.array();
    }

    /** Ethernet + IPv6 + UDP + payload. */
    static byte[] udp6(byte[] payload) {
        ByteBuffer bb = ByteBuffer.allocate(ETH + 40 + 8 + payload.length);
        bb.putShort((short) (B >>> 32)).putInt((int) B).putShort((short) (A >>> 32)).putInt((int) A).putShort((short) 0x86dd);
        bb.putInt(0x6000_0000).putShort((short) (8 + payload.length)).put((byte) 17).put((byte) 64);
        for (int i = 0; i < 32; i++) {
            bb.put((byte) (0xfd + i));
        }
        bb.putShort((short) 5353).putShort((short) 9999).putShort((short) (8 + payload.length)).putShort((short) 0).put(payload);
        return bb.array();
    }

    static byte[] tcp6(byte[] payload) {
        ByteBuffer bb = ByteBuffer.allocate(ETH + 40 + 20 + payload.length);
        bb.putShort((short) (B >>> 32)).putInt((int) B).putShort((short) (A >>> 32)).putInt((int) A).putShort((short) 0x86dd);
        bb.putInt(0x6000_0000).putShort((short) (20 + payload.length)).put((byte) 6).put((byte) 64);
        for (int i = 0; i < 32; i++) {
            bb.put((byte) (0x20 + i));
        }
        bb.putShort((short) 1).putShort((short) 2).putInt(1000).putInt(0).put((byte) 0x50).put((byte) 0x18)
            .putShort((short) 100).putShort((short) 0).putShort((short) 0).put(payload);
        return bb.array();
    }

    /** Independent RFC 1071 checksum over 16-bit words. */
    static int ones(byte[] f, int from, int to, int initial) {
        long s = initial;
        for (int i = from; i < to; i += 2) {
            int hi = f[i] & 0xff;
            int lo = i + 1 < to ? f[i + 1] & 0xff : 0;
            s += (hi << 8) | lo;
        }
        while ((s >> 16) != 0) {
            s = (s & 0xffff) + (s >> 16);
        }
        return (int) s;
    }

    static int u16(byte[] f, int i) {
        return ((f[i] & 0xff) << 8) | (f[i + 1] & 0xff);
    }

    /** True when the L4 checksum of an IPv4 segment (L4 at {@code l4}) verifies. */
    static boolean l4ValidV4(byte[] f, int l3, int l4, int proto) {
        int len = f.length - l4;
        int pseudo = ones(f, l3 + 12, l3 + 20, 0) + proto + len;
        return ones(f, l4, f.length, pseudo) == 0xffff;
    }

    static boolean l4ValidV6(byte[] f, int l3, int l4, int proto) {
        int len = f.length - l4;
        int pseudo = ones(f, l3 + 8, l3 + 40, 0) + proto + len;
        return ones(f, l4, f.length, pseudo) == 0xffff;
    }

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void shouldSegmentATcpV4SuperFrameIntoValidSegmentsForASinkWithoutOffloads() {
        byte[] payload = random(5000, 1);
        byte[] f = tcp4(payload, 0x80 | 0x18 | 0x01); // CWR, PSH|ACK, FIN
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_NEEDS_CSUM;
        m.gsoType = PacketMeta.GSO_TCPV4;
        m.gsoSize = 1448;
        m.csumStart = ETH + 20;
        m.csumOffset = 16;
        m.hdrLen = ETH + 52;
        sw.receive(in, new UnsafeBuffer(f), 0, f.length, m);
        assertEquals(4, rec.count(), "5000 bytes in 1448-byte pieces");
        ByteArrayOutputStream joined = new ByteArrayOutputStream();
        for (int i = 0; i < 4; i++) {
            byte[] s = rec.frames.get(i);
            int piece = Math.min(1448, 5000 - 1448 * i);
            assertEquals(ETH + 52 + piece, s.length);
            assertEquals(20 + 32 + piece, u16(s, ETH + 2), "IPv4 total length");
            assertEquals(0x1234 + i, u16(s, ETH + 4), "IPv4 id");
            assertEquals(0xffff, ones(s, ETH, ETH + 20, 0), "IPv4 header checksum of segment " + i);
            assertTrue(l4ValidV4(s, ETH, ETH + 20, 6), "TCP checksum of segment " + i);
            long seq = ByteBuffer.wrap(s, ETH + 24, 4).getInt() & 0xffffffffL;
            assertEquals((0xfffffc00L + 1448L * i) & 0xffffffffL, seq, "sequence number (wraps)");
            int flags = s[ETH + 33] & 0xff;
            assertEquals(i == 0, (flags & 0x80) != 0, "CWR on the first segment only");
            assertEquals(i == 3, (flags & 0x09) == 0x09, "FIN and PSH on the last segment only");
            joined.write(s, ETH + 52, piece);
        }
        assertArrayEquals(payload, joined.toByteArray());
        assertEquals(4, out.counters().softwareOffloadFrames());
        assertEquals(4, out.counters().txPackets());
        assertEquals(0, out.counters().totalDrops());
    }

    @Test
    void shouldSegmentTcpV6AndUdpL4SuperFrames() {
        byte[] payload = random(3000, 2);
        byte[] f = tcp6(payload);
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_NEEDS_CSUM;
        m.gsoType = PacketMeta.GSO_TCPV6;
        m.gsoSize = 1400;
        m.csumStart = ETH + 40;
        m.csumOffset = 16;
        sw.receive(in, new UnsafeBuffer(f), 0, f.length, m);
        assertEquals(3, rec.count());
        for (byte[] s : rec.frames) {
            assertEquals(s.length - ETH - 40, u16(s, ETH + 4), "IPv6 payload length");
            assertTrue(l4ValidV6(s, ETH, ETH + 40, 6));
        }
        rec.clear();
        byte[] u = udp6(random(2500, 3));
        m.gsoType = PacketMeta.GSO_UDP_L4;
        m.gsoSize = 1000;
        m.csumOffset = 6;
        sw.receive(in, new UnsafeBuffer(u), 0, u.length, m);
        assertEquals(3, rec.count());
        for (byte[] s : rec.frames) {
            assertEquals(s.length - ETH - 40, u16(s, ETH + 40 + 4), "UDP length");
            assertTrue(l4ValidV6(s, ETH, ETH + 40, 17));
        }
    }

    @Test
    void shouldCompleteAPartialChecksumWithoutTouchingTheOriginalFrame() {
        byte[] payload = random(301, 4); // odd length: the last byte is summed as a padded word
        byte[] f = tcp4(payload, 0x18);
        // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, as the kernel leaves it.
        int pseudo = ones(f, ETH + 12, ETH + 20, 0) + 6 + (32 + 301);
        int folded = ones(new byte[0], 0, 0, pseudo);
        f[ETH + 20 + 16] = (byte) (folded >>> 8);
        f[ETH + 20 + 17] = (byte) folded;
        byte[] original = f.clone();
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_NEEDS_CSUM;
        m.csumStart = ETH + 20;
        m.csumOffset = 16;
        sw.receive(in, new UnsafeBuffer(f), 0, f.length, m);
        assertEquals(1, rec.count());
        assertTrue(l4ValidV4(rec.last(), ETH, ETH + 20, 6));
        assertArrayEquals(original, f, "the frame other ports get stays unfinished");
    }

    @Test
    void shouldCutSegmentsToTheDestinationMtuAndDropPlainFramesAboveIt() {
        sw.configure(out, out.config().withMtu(1000));
        byte[] payload = random(3000, 9);
        byte[] f = tcp4(payload, 0x18);
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_NEEDS_CSUM;
        m.gsoType = PacketMeta.GSO_TCPV4;
        m.gsoSize = 1448;
        m.csumStart = ETH + 20;
        m.csumOffset = 16;
        sw.receive(in, new UnsafeBuffer(f), 0, f.length, m);
        assertEquals(4, rec.count(), "3000 bytes in 948-byte pieces (MTU 1000 - 52 bytes of headers)");
        for (byte[] seg : rec.frames) {
            assertTrue(seg.length - ETH <= 1000, "IP packet within the MTU: " + (seg.length - ETH));
            assertTrue(l4ValidV4(seg, ETH, ETH + 20, 6));
        }
        rec.clear();
        byte[] plain = tcp4(random(1200, 10), 0x10);
        sw.receive(in, new UnsafeBuffer(plain), 0, plain.length, PacketMeta.NONE);
        assertEquals(0, rec.count());
        assertEquals(1, out.counters().drops(DropReason.OVERSIZE));
        Port small = sw.addPort("small", PortKind.VNIC, PortConfig.vnic(0x02_00_00_00_00_77L).withMtu(576), FrameSink.DISCARD, null);
        byte[] big = tcp4(random(600, 11), 0x10);
        big[6] = 0x02; // source MAC := the small port's own 02:00:00:00:00:77 (spoofing is off)
        big[7] = 0;
        big[8] = 0;
        big[9] = 0;
        big[10] = 0;
        big[11] = 0x77;
        sw.receive(small, new UnsafeBuffer(big), 0, big.length, PacketMeta.NONE);
        assertEquals(1, small.counters().drops(DropReason.OVERSIZE), "a vNIC cannot send above its own MTU");
    }

    @Test
    void shouldTreatDataValidAsAHintThatNeedsNothing() {
        byte[] f = tcp4(random(100, 5), 0x10);
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_DATA_VALID;
        sw.receive(in, new UnsafeBuffer(f), 0, f.length, m);
        assertEquals(1, rec.count());
        assertArrayEquals(f, rec.last());
        assertEquals(0, out.counters().softwareOffloadFrames());
    }

    @Test
    void shouldCountMalformedOffloadMetadataAsUnsupportedAndNeverThrow() {
        Random r = new Random(6);
        PacketMeta m = new PacketMeta();
        byte[] f = tcp4(random(4000, 7), 0x18);
        for (int i = 0; i < 20_000; i++) {
            byte[] g = f.clone();
            for (int k = 0; k < 4; k++) {
                g[ETH + r.nextInt(60)] = (byte) r.nextInt();
            }
            m.flags = r.nextInt(4);
            m.gsoType = r.nextInt(8) | (r.nextBoolean() ? PacketMeta.GSO_ECN : 0);
            m.gsoSize = r.nextInt(3) == 0 ? r.nextInt(65536) : 1 + r.nextInt(2000);
            m.csumStart = r.nextInt(3) == 0 ? r.nextInt(65536) : r.nextInt(100);
            m.csumOffset = r.nextInt(3) == 0 ? r.nextInt(65536) : r.nextInt(20);
            int len = 14 + r.nextInt(g.length - 14);
            sw.receive(in, new UnsafeBuffer(g), 0, len, m);
        }
        assertTrue(out.counters().drops(DropReason.OFFLOAD_UNSUPPORTED) > 0);
    }

    @Test
    void shouldSegmentWithoutAllocating() {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        VSwitch quiet = new VSwitch("q", SwitchType.INTERNAL);
        quiet.tick(System.nanoTime());
        Port host = quiet.addPort("host", PortKind.HOST, PortConfig.uplink(), FrameSink.DISCARD, null);
        quiet.addPort("vnic", PortKind.VNIC, PortConfig.vnic(B), FrameSink.DISCARD, null);
        byte[] f = tcp4(random(60_000, 8), 0x18);
        UnsafeBuffer b = new UnsafeBuffer(f);
        PacketMeta m = new PacketMeta();
        m.flags = PacketMeta.FLAG_NEEDS_CSUM;
        m.gsoType = PacketMeta.GSO_TCPV4;
        m.gsoSize = 1448;
        m.csumStart = ETH + 20;
        m.csumOffset = 16;
        for (int i = 0; i < 2000; i++) {
            quiet.receive(host, b, 0, f.length, m);
        }
        long tid = Thread.currentThread().threadId();
        long before = mx.getThreadAllocatedBytes(tid);
        for (int i = 0; i < 500; i++) {
            quiet.receive(host, b, 0, f.length, m);
        }
        assertEquals(0, mx.getThreadAllocatedBytes(tid) - before, "bytes allocated segmenting 500 64 KiB frames");
    }
}
