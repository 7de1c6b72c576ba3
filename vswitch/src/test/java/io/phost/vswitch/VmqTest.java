package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static io.phost.vswitch.Frames.C;
import static io.phost.vswitch.Frames.buf;
import static io.phost.vswitch.Frames.plain;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicLong;
import org.agrona.DirectBuffer;
import org.junit.jupiter.api.Test;

class VmqTest {
    /** Remembers which thread delivered last. */
    static final class ThreadSink implements FrameSink {
        volatile String lastThread = "";
        final AtomicLong frames = new AtomicLong();

        @Override
        public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            lastThread = Thread.currentThread().getName();
            frames.incrementAndGet();
            return true;
        }
    }

    @Test
    void shouldDeliverEachVnicsFramesThroughItsOwnQueueAndWeightZeroThroughTheDefault() {
        try (Vmq vmq = new Vmq(2)) {
            VSwitch sw = new VSwitch("v", SwitchType.PRIVATE);
            Frames.Recorder rb = new Frames.Recorder();
            Frames.Recorder rc = new Frames.Recorder();
            Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A), FrameSink.DISCARD, null);
            sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), vmq.attach("b", 100, rb), null);
            sw.addPort("c", PortKind.VNIC, PortConfig.vnic(C), vmq.attach("c", 0, rc), null);
            sw.receive(a, buf(plain(B, A)), 0, 60);
            sw.receive(a, buf(plain(C, A)), 0, 60);
            assertEquals(0, rb.count(), "nothing delivered until a worker drains");
            vmq.drainOnce(0);
            vmq.drainOnce(1);
            assertEquals(1, rb.count());
            assertEquals(1, rc.count());
            assertArrayEquals(plain(B, A), rb.last());
            assertEquals(2, vmq.queues().size());
            assertEquals(1, vmq.defaultQueue().drained());
            assertNotEquals(vmq.defaultQueue().owner(), vmq.queues().get(1).owner(), "own queue on the other worker");
        }
    }

    @Test
    void shouldReportEgressFullWhenAQueueOverflows() {
        try (Vmq vmq = new Vmq(1)) {
            VSwitch sw = new VSwitch("v", SwitchType.PRIVATE);
            // Jumbo NICs (MTU 9000): the frames must pass the MTU check to fill the queue.
            Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withMtu(9000), FrameSink.DISCARD, null);
            Port b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withMtu(9000),
                vmq.attach("b", 1, new Frames.Recorder()), null);
            byte[] big = new byte[9000];
            System.arraycopy(plain(B, A), 0, big, 0, 60);
            for (int i = 0; i < Vmq.QUEUE_BYTES / 9000 + 10; i++) {
                sw.receive(a, buf(big), 0, big.length);
            }
            assertTrue(b.counters().drops(DropReason.EGRESS_FULL) > 0);
        }
    }

    @Test
    void shouldMoveABusyQueueToTheIdleWorkerWhenRebalancing() {
        try (Vmq vmq = new Vmq(2)) {
            Frames.Recorder r1 = new Frames.Recorder();
            Frames.Recorder r2 = new Frames.Recorder();
            FrameSink s1 = vmq.attachOnWorker("one", 0, r1);
            FrameSink s2 = vmq.attachOnWorker("two", 0, r2);
            byte[] f = plain(B, A);
            for (int i = 0; i < 10; i++) {
                s1.tryTransmit(buf(f), 0, 60, PacketMeta.NONE);
                s2.tryTransmit(buf(f), 0, 60, PacketMeta.NONE);
            }
            vmq.drainOnce(0);
            assertTrue(vmq.rebalance(), "worker 0 carries all load, worker 1 none");
            vmq.drainOnce(0); // hands the chosen queue over
            int movedOwners = 0;
            for (VmqQueue q : vmq.queues()) {
                movedOwners += q.owner();
            }
            assertEquals(1, movedOwners, "exactly one of the two busy queues now on worker 1");
            s1.tryTransmit(buf(f), 0, 60, PacketMeta.NONE);
            s2.tryTransmit(buf(f), 0, 60, PacketMeta.NONE);
            vmq.drainOnce(1);
            assertEquals(21, r1.count() + r2.count());
        }
    }

    @Test
    void shouldSpreadTwoBusyVnicsOverTwoWorkerThreads() throws Exception {
        try (Vmq vmq = new Vmq(2)) {
            ThreadSink t1 = new ThreadSink();
            ThreadSink t2 = new ThreadSink();
            FrameSink s1 = vmq.attachOnWorker("one", 0, t1);
            FrameSink s2 = vmq.attachOnWorker("two", 0, t2);
            vmq.start();
            byte[] f = plain(B, A);
            var fb = buf(f);
            long end = System.nanoTime() + 1_500_000_000L;
            long nextRebalance = System.nanoTime() + 50_000_000L;
            while (System.nanoTime() < end) {
                s1.tryTransmit(fb, 0, 60, PacketMeta.NONE);
                s2.tryTransmit(fb, 0, 60, PacketMeta.NONE);
                if (System.nanoTime() > nextRebalance) {
                    vmq.rebalance();
                    nextRebalance = System.nanoTime() + 50_000_000L;
                    if (!t1.lastThread.isEmpty() && !t2.lastThread.isEmpty() && !t1.lastThread.equals(t2.lastThread)) {
                        break;
                    }
                }
            }
            long before1 = t1.frames.get();
            long before2 = t2.frames.get();
            for (int i = 0; i < 1000; i++) {
                s1.tryTransmit(fb, 0, 60, PacketMeta.NONE);
                s2.tryTransmit(fb, 0, 60, PacketMeta.NONE);
            }
            long deadline = System.nanoTime() + 2_000_000_000L;
            while ((t1.frames.get() == before1 || t2.frames.get() == before2) && System.nanoTime() < deadline) {
                Thread.sleep(1);
            }
            assertNotEquals(t1.lastThread, t2.lastThread, "two busy vNICs must be drained by different workers");
            assertTrue(t1.lastThread.startsWith("vmq-") && t2.lastThread.startsWith("vmq-"), t1.lastThread + " " + t2.lastThread);
        }
    }
}
