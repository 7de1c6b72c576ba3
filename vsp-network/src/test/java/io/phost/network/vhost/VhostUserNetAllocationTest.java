package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.tools.AllocationWindows;
import io.phost.vswitch.FrameRing;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The vhost-user-net data path allocates nothing per frame once warm: guest → switch (TX burst walk, gather,
 * policies, forwarding) and switch → guest (RX chains taken ahead, scatter, used ring, call), all on the switch's
 * agent thread, plus the queue workers that relay kicks. The allocated-bytes counters of those three threads are
 * read around windows of frames and judged as {@link AllocationWindows} says (the best window with no JIT
 * compilation, tolerating the JDK's errno-capture slice of the eventfd and poll downcalls).
 */
@Timeout(120)
class VhostUserNetAllocationTest {
    @Test
    void shouldNotAllocatePerFrameOnTheQueueWorkerThreads() throws Exception {
        Path d = Files.createTempDirectory("phost-vnet-alloc");
        Path sock = d.resolve("a.sock");
        FrameRing peerIn = new FrameRing(1 << 20);
        FrameRing peerOut = new FrameRing(1 << 20);
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch("va" + ProcessHandle.current().pid() % 100000));
             VhostUserNetPort p = attach(sw, peerIn, peerOut, sock);
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 4 << 20)) {
            f.negotiate(VhostUserNetTest.WANTED);
            VhostUserFrontend.Queue rx = f.startQueue(RX_QUEUE, 256);
            VhostUserFrontend.Queue tx = f.startQueue(TX_QUEUE, 256);
            long txBuf = f.alloc(HDR_LENGTH + 1514, 8);
            long rxBuf = f.alloc(2048, 8);
            byte[] out = VhostUserNetTest.frame(VhostUserNetTest.PEER_MAC, VhostUserNetTest.GUEST_MAC, 1514, 1);
            MemorySegment.copy(MemorySegment.ofArray(out), 0, f.at(txBuf + HDR_LENGTH, out.length), 0, out.length);
            MemorySegment in = MemorySegment.ofArray(VhostUserNetTest.frame(VhostUserNetTest.GUEST_MAC, VhostUserNetTest.PEER_MAC, 1514, 2));
            run(f, tx, rx, txBuf, rxBuf, peerIn, peerOut, in, 5_000);
            var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            Thread[] agent = new Thread[1];
            sw.agent().submit(s -> agent[0] = Thread.currentThread()).get(5, TimeUnit.SECONDS);
            Thread q0 = worker("vm-n0-q0");
            Thread q1 = worker("vm-n0-q1");
            int frames = 3_000;
            int[] windows = new int[1];
            AllocationWindows.Result r = AllocationWindows.measure(frames, () -> {
                windows[0]++;
                try {
                    run(f, tx, rx, txBuf, rxBuf, peerIn, peerOut, in, frames);
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            }, () -> mx.getThreadAllocatedBytes(agent[0].threadId()) + mx.getThreadAllocatedBytes(q0.threadId())
                + mx.getThreadAllocatedBytes(q1.threadId()));
            System.out.println("vhost-user-net agent and workers, bytes per " + frames + "-frame window (each way):" + r.windows());
            assertTrue(r.withinJdkSlice(), "switch agent and queue workers " + r.describe("frames each way"));
            assertEquals(5_000 + windows[0] * (long) frames, p.counters().rxFrames(), "frames into the guest; " + p.counters());
            assertEquals(5_000 + windows[0] * (long) frames, p.counters().txFrames(), "frames from the guest; " + p.counters());
        } finally {
            Files.deleteIfExists(sock);
            Files.deleteIfExists(d);
        }
    }

    private static VhostUserNetPort attach(ManagedSwitch sw, FrameRing peerIn, FrameRing peerOut, Path sock) {
        sw.attach("peer", PortConfig.vnic(VhostUserNetTest.PEER_MAC), peerOut, peerIn);
        return VhostUserNetPort.start("vm/n0", sw, PortConfig.vnic(VhostUserNetTest.GUEST_MAC), sock, List.of());
    }

    private static Thread worker(String name) {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name)).findFirst()
            .orElseThrow(() -> new AssertionError("no queue worker " + name + ": " + Thread.getAllStackTraces().keySet()));
    }

    private static void run(VhostUserFrontend f, VhostUserFrontend.Queue tx, VhostUserFrontend.Queue rx, long txBuf, long rxBuf,
                            FrameRing peerIn, FrameRing peerOut, MemorySegment in, int n) throws InterruptedException {
        int[] got = new int[1];
        for (int i = 0; i < n; i++) {
            assertTrue(tx.add(new long[] {txBuf}, new int[] {HDR_LENGTH + 1514}, new boolean[] {false}) >= 0);
            tx.kick();
            assertNotNull(tx.awaitUsed(5_000));
            got[0] = 0;
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (got[0] == 0) {
                peerOut.poll((seg, off, len) -> got[0] = len, 16);
                assertTrue(System.nanoTime() < deadline, "frame " + i + " never reached the peer");
                Thread.onSpinWait();
            }
            assertTrue(rx.add(new long[] {rxBuf}, new int[] {2048}, new boolean[] {true}) >= 0);
            rx.kick();
            assertTrue(peerIn.tryWrite(in, 0, (int) in.byteSize()));
            assertNotNull(rx.awaitUsed(5_000));
        }
    }
}
