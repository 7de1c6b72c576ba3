package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/** Stateful ACL rules on crafted TCP/UDP frames: flows both ways, idle timeouts, a bounded table, no allocation. */
class AclFlowTableTest {
    private final VSwitch sw = new VSwitch("s", SwitchType.PRIVATE);
    private final Frames.Recorder toA = new Frames.Recorder();
    private final Frames.Recorder toB = new Frames.Recorder();
    private long now = 1_000_000_000L;

    /** IPv4 TCP/UDP from src:sport to dst:dport (addresses as ints). */
    private static byte[] packet(long dstMac, long srcMac, int proto, int src, int sport, int dst, int dport) {
        ByteBuffer l4 = ByteBuffer.allocate(20);
        l4.putShort((short) sport).putShort((short) dport);
        byte[] ip = Frames.ipv4(proto, l4.array());
        ByteBuffer.wrap(ip).putInt(12, src).putInt(16, dst);
        return Frames.frame(dstMac, srcMac, -1, 0x0800, ip);
    }

    private Port[] ports() {
        return ports(toA, toB);
    }

    private Port[] ports(FrameSink sinkA, FrameSink sinkB) {
        sw.tick(now);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withAcls(PortAcl.parse("allow outbound any tcp stateful"),
            PortAcl.parse("allow outbound any udp:53 stateful"), PortAcl.parse("deny inbound any tcp"),
            PortAcl.parse("deny inbound any udp")), sinkA, null);
        Port b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), sinkB, null);
        return new Port[] {a, b};
    }

    private void send(Port p, byte[] f) {
        sw.receive(p, Frames.buf(f), 0, f.length);
    }

    @Test
    void shouldPassRepliesOfOutboundFlowsOnlyUntilTheyIdleOut() {
        Port[] p = ports();
        int a = 0x0a_00_00_02;
        int b = 0x0a_00_00_01;
        send(p[1], packet(A, B, 6, b, 80, a, 40000));                 // unsolicited: denied
        assertEquals(0, toA.count());
        send(p[0], packet(B, A, 6, a, 40000, b, 80));                 // the partition opens it
        send(p[1], packet(A, B, 6, b, 80, a, 40000));                 // the reply
        send(p[1], packet(A, B, 6, b, 81, a, 40000));                 // another port of the remote: not the flow
        send(p[1], packet(A, B, 17, b, 80, a, 40000));                // same ports over UDP: not the flow
        assertEquals(1, toA.count());
        send(p[0], packet(B, A, 17, a, 5353, b, 53));                 // DNS query, then its answer
        send(p[1], packet(A, B, 17, b, 53, a, 5353));
        assertEquals(2, toA.count());
        now += AclFlowTable.UDP_IDLE_NANOS + 1;
        sw.tick(now);
        send(p[1], packet(A, B, 17, b, 53, a, 5353));                 // the UDP flow idled out
        send(p[1], packet(A, B, 6, b, 80, a, 40000));                 // the TCP flow is still alive
        assertEquals(3, toA.count());
        now += AclFlowTable.TCP_IDLE_NANOS + 1;
        sw.tick(now);
        send(p[1], packet(A, B, 6, b, 80, a, 40000));
        assertEquals(3, toA.count());
        assertEquals(5, p[0].counters().drops(DropReason.ACL));
    }

    @Test
    void shouldStayBoundedWhenAPartitionOpensMoreFlowsThanTheTableHolds() {
        Port[] p = ports();
        for (int i = 0; i < 3 * AclFlowTable.CAPACITY; i++) {
            send(p[0], packet(B, A, 6, 0x0a_00_00_02, 1024 + (i % 60000), 0x0a_00_00_01 + i / 60000, 80));
        }
        AclFlowTable flows = p[0].flows;
        assertEquals(AclFlowTable.CAPACITY, flows.size(now));
        assertEquals(2 * AclFlowTable.CAPACITY, flows.evictions(), "every flow beyond the capacity evicts one");
        // The newest flow is there; its reply passes.
        int last = 3 * AclFlowTable.CAPACITY - 1;
        send(p[1], packet(A, B, 6, 0x0a_00_00_01 + last / 60000, 80, 0x0a_00_00_02, 1024 + (last % 60000)));
        assertEquals(1, toA.count());
    }

    @Test
    void shouldTrackAndMatchFlowsWithoutAllocating() {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        Port[] p = ports(FrameSink.DISCARD, FrameSink.DISCARD);
        var out = Frames.buf(packet(B, A, 6, 0x0a_00_00_02, 40000, 0x0a_00_00_01, 80));
        var back = Frames.buf(packet(A, B, 6, 0x0a_00_00_01, 80, 0x0a_00_00_02, 40000));
        var unsolicited = Frames.buf(packet(A, B, 6, 0x0a_00_00_01, 80, 0x0a_00_00_02, 22));
        Runnable burst = () -> {
            for (int i = 0; i < 10_000; i++) {
                sw.receive(p[0], out, 0, out.capacity());
                sw.receive(p[1], back, 0, back.capacity());
                sw.receive(p[1], unsolicited, 0, unsolicited.capacity());
            }
        };
        for (int i = 0; i < 20; i++) {
            burst.run();
        }
        long tid = Thread.currentThread().threadId();
        long before = mx.getThreadAllocatedBytes(tid);
        burst.run();
        assertEquals(0, mx.getThreadAllocatedBytes(tid) - before, "bytes allocated for 30 000 frames");
    }

    /** IPv6 TCP/UDP from src:sport to dst:dport behind a hop-by-hop header (addresses: fd00::LAST). */
    private static byte[] packet6(long dstMac, long srcMac, int proto, int src, int sport, int dst, int dport, int flags) {
        ByteBuffer l4 = ByteBuffer.allocate(20);
        l4.putShort((short) sport).putShort((short) dport).putInt(0).putInt(0).put((byte) 0x50).put((byte) flags);
        ByteBuffer ip = ByteBuffer.allocate(40 + 8 + 20);
        ip.putInt(0x6000_0000).putShort((short) 28).put((byte) 0).put((byte) 64);
        ip.putLong(0xfd00_0000_0000_0000L).putLong(src).putLong(0xfd00_0000_0000_0000L).putLong(dst);
        ip.put((byte) proto).put((byte) 0).putShort((short) 0).putInt(0).put(l4.array()); // hop-by-hop, then L4
        return Frames.frame(dstMac, srcMac, -1, 0x86dd, ip.array());
    }

    /**
     * IPv6 in ACLs: prefixes match IPv6 packets (an IPv4 rule does not), stateful flows work for IPv6 TCP behind an
     * extension header, and a FIN ends a flow 10 s after its last packet instead of 300 s. Before: IPv6 was never
     * matched by an IP rule, never tracked, and a closed flow stayed open 300 s.
     */
    @Test
    void shouldMatchIpv6PrefixesTrackIpv6FlowsAndCloseAFlowSoonAfterAFin() {
        sw.tick(now);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withAcls(PortAcl.parse("allow outbound any tcp stateful"),
            PortAcl.parse("deny inbound any tcp"), PortAcl.parse("deny inbound fd00::/120 udp"),
            PortAcl.parse("allow inbound fd00::7 udp"), PortAcl.parse("deny inbound 10.0.0.0/8 udp:9")), toA, null);
        Port b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        assertEquals("deny inbound fd00::/120 udp", a.config().acls()[2].toString());
        send(b, packet6(A, B, 17, 5, 9, 2, 9));                           // fd00::5 in fd00::/120: denied
        send(b, packet6(A, B, 17, 7, 9, 2, 9));                           // fd00::7: the more specific allow
        send(b, packet6(A, B, 17, 0x1000, 9, 2, 9));                      // outside the /120 (the IPv4 rule is no match)
        assertEquals(2, toA.count());
        send(b, packet6(A, B, 6, 1, 80, 2, 40000, 0x02));                 // unsolicited TCP: denied
        send(a, packet6(B, A, 6, 2, 40000, 1, 80, 0x02));                 // the partition opens it
        send(b, packet6(A, B, 6, 1, 80, 2, 40000, 0x12));                 // SYN-ACK: the flow
        assertEquals(3, toA.count());
        send(a, packet6(B, A, 6, 2, 40000, 1, 80, 0x11));                 // FIN
        now += AclFlowTable.CLOSING_IDLE_NANOS / 2;
        sw.tick(now);
        send(b, packet6(A, B, 6, 1, 80, 2, 40000, 0x11));                 // the peer's FIN, 5 s later: still the flow
        assertEquals(4, toA.count());
        now += AclFlowTable.CLOSING_IDLE_NANOS + 1;
        sw.tick(now);
        send(b, packet6(A, B, 6, 1, 80, 2, 40000, 0x10));                 // 10 s after the last packet: gone
        assertEquals(4, toA.count());
        assertEquals(0, a.flows.size(now));
    }

    private static byte[] packet6(long dstMac, long srcMac, int proto, int src, int sport, int dst, int dport) {
        return packet6(dstMac, srcMac, proto, src, sport, dst, dport, 0);
    }
}
