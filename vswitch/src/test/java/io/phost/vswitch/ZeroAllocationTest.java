package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static io.phost.vswitch.Frames.C;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.Test;

/** The data path allocates nothing per frame: counted with the JVM's per-thread allocation counter. */
class ZeroAllocationTest {
    @Test
    void shouldForwardFloodRetagAndMirrorWithoutAllocating() {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        VSwitch sw = new VSwitch("z", SwitchType.EXTERNAL);
        sw.tick(System.nanoTime());
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withAccessVlan(5).withGuards(false, true, true)
            .withMirror(MirrorMode.SOURCE).withLimits(1_000_000_000, 0, 1, 16), FrameSink.DISCARD, null);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withAccessVlan(5), FrameSink.DISCARD, null);
        sw.addPort("m", PortKind.VNIC, PortConfig.vnic(C).withMirror(MirrorMode.DESTINATION), FrameSink.DISCARD, null);
        Port up = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink(), FrameSink.DISCARD, null);
        var toB = Frames.buf(Frames.plain(B, A));
        var bcast = Frames.buf(Frames.plain(EthernetDescriptor.BROADCAST, A));
        var fromUp = Frames.buf(Frames.tagged(A, 0x0a_00_00_00_00_01L, 5));
        Runnable burst = () -> {
            for (int i = 0; i < 10_000; i++) {
                sw.receive(a, toB, 0, 60);
                sw.receive(a, bcast, 0, 60);
                sw.receive(up, fromUp, 0, fromUp.capacity());
            }
        };
        for (int i = 0; i < 20; i++) {
            burst.run(); // warm up: JIT, MAC table sized, lazily built scratch state
        }
        long tid = Thread.currentThread().threadId();
        long before = mx.getThreadAllocatedBytes(tid);
        burst.run();
        long after = mx.getThreadAllocatedBytes(tid);
        assertEquals(0, after - before, "bytes allocated for 30 000 frames");
    }
}
