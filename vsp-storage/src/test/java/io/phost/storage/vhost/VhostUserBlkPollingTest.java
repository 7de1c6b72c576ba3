package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vmbus.PollingMode;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * vhost-user-blk queue workers under each {@code [host] polling} mode, driven by a driver that kicks only when the
 * back-end asks (as a guest's virtio driver does): every request completes with the right data on split rings with
 * and without EVENT_IDX and on packed rings while the worker polls with kicks off and sleeps in between; in
 * {@code efficiency} the worker asks for a kick for every request (it never polls); a device that went idle after
 * polling costs (nearly) no CPU.
 */
@Timeout(180)
class VhostUserBlkPollingTest {
    private static final int REQUESTS = 2_000;
    private static final long ALL_BUT_LOG_AND_PACKED = ~((1L << VhostUserDescriptor.F_LOG_ALL) | (1L << VhostUserDescriptor.F_RING_PACKED));

    @Test
    void shouldServeEveryRequestWhilePollingOnASplitRingWithEventIdx() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED, "vpoll-ei");
    }

    @Test
    void shouldServeEveryRequestWhilePollingOnASplitRingWithTheNoNotifyFlag() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED & ~(1L << VhostUserDescriptor.F_RING_EVENT_IDX), "vpoll-nn");
    }

    @Test
    void shouldServeEveryRequestWhilePollingOnAPackedRing() throws Exception {
        run(PollingMode.LATENCY, ~(1L << VhostUserDescriptor.F_LOG_ALL), "vpoll-pk");
    }

    @Test
    void shouldServeEveryRequestUnderTheAdaptiveGovernor() throws Exception {
        run(PollingMode.ADAPTIVE, ALL_BUT_LOG_AND_PACKED, "vpoll-ad");
    }

    @Test
    void shouldAskForAKickForEveryRequestInEfficiencyMode() throws Exception {
        long kicks = run(PollingMode.EFFICIENCY, ALL_BUT_LOG_AND_PACKED, "vpoll-ef");
        assertEquals(REQUESTS, kicks, "efficiency: the worker sleeps after each request and asks for the next kick");
    }

    /** Writes then reads back {@link #REQUESTS} 4 KiB blocks at QD1; returns the kicks the driver sent. */
    private static long run(PollingMode mode, long wanted, String name) throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), name, ".raw");
        Path sock = Files.createTempDirectory(name).resolve("p.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start(name, disk, sock,
                 VhostUserBlkExport.Options.defaults().withQueues(1).withPolling(mode));
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
            f.negotiate(wanted);
            VhostUserFrontend.Queue q = f.startQueue(0, 64);
            long header = f.alloc(16, 16);
            long status = f.alloc(1, 1);
            long data = f.alloc(4096, 4096);
            long kicks = 0;
            for (int i = 0; i < REQUESTS; i++) {
                boolean write = i < REQUESTS / 2;
                int block = i % (REQUESTS / 2);
                MemorySegment d = f.at(data, 4096);
                if (write) {
                    d.fill((byte) block);
                    d.set(ValueLayout.JAVA_INT_UNALIGNED, 0, block);
                } else {
                    d.fill((byte) 0);
                }
                MemorySegment h = f.at(header, 16);
                h.set(LE32, 0, write ? T_OUT : T_IN);
                h.set(LE32, 4, 0);
                h.set(LE64, 8, block * 8L);
                f.at(status, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                int head = q.add(new long[] {header, data, status}, new int[] {16, 4096, 1}, new boolean[] {false, !write, true});
                if (q.kickIfNeeded()) {
                    kicks++;
                }
                int[] used = q.awaitUsed(10_000);
                assertNotNull(used, name + ": request " + i + " completed (no lost wake-up)");
                assertEquals(head, used[0]);
                assertEquals(S_OK, f.at(status, 1).get(ValueLayout.JAVA_BYTE, 0), name + ": request " + i);
                if (!write) {
                    assertEquals(block, d.get(ValueLayout.JAVA_INT_UNALIGNED, 0), name + ": block " + block + " read back");
                    assertEquals((byte) block, d.get(ValueLayout.JAVA_BYTE, 4095));
                }
            }
            System.out.println(name + " " + mode + ": " + kicks + " kicks for " + REQUESTS + " requests");
            assertIdleWorkerSleeps(name);
            return kicks;
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** After the last request the worker stops polling: over 1 s it uses far less than a core (a spinner uses ~all of it). */
    static void assertIdleWorkerSleeps(String name) throws InterruptedException {
        Thread worker = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals(name + "-q0")).findFirst()
            .orElseThrow(() -> new AssertionError("no queue worker"));
        var mx = ManagementFactory.getThreadMXBean();
        Thread.sleep(100);
        long before = mx.getThreadCpuTime(worker.threadId());
        Thread.sleep(1_000);
        long used = mx.getThreadCpuTime(worker.threadId()) - before;
        assertTrue(used < 100_000_000L, name + ": the idle worker used " + used / 1_000_000 + " ms of CPU in 1 s");
    }
}
