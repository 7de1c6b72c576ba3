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
}
