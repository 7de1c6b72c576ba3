package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vmbus.PollingMode;
import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.vhost.ScsiTestDriver.rw16;
import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * vhost-user-scsi request queues wait for the driver's next command as vhost-user-blk's do ({@code [host] polling},
 * {@link VhostUserScsiExport.Options#withPolling}): driven by a driver that kicks only when the back-end asks, every
 * command completes with the right data while the worker polls with kicks off and sleeps in between; in
 * {@code efficiency} the worker asks for a kick for every command; an idle controller's workers (request, control,
 * event) cost (nearly) no CPU after polling.
 */
@Timeout(180)
class VhostUserScsiPollingTest {
    private static final int COMMANDS = 2_000;
    private static final long ALL_BUT_LOG_AND_PACKED = ~((1L << VhostUserDescriptor.F_LOG_ALL) | (1L << VhostUserDescriptor.F_RING_PACKED));

    @Test
    void shouldServeEveryCommandWhilePollingOnASplitRingWithEventIdx() throws Exception {
        long kicks = run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED, "spoll-ei");
        assertTrue(kicks <= COMMANDS, "latency: at most one kick per command (" + kicks + ")");
    }

    @Test
    void shouldServeEveryCommandWhilePollingWithTheNoNotifyFlag() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED & ~(1L << VhostUserDescriptor.F_RING_EVENT_IDX), "spoll-nn");
    }

    @Test
    void shouldServeEveryCommandUnderTheAdaptiveGovernor() throws Exception {
        run(PollingMode.ADAPTIVE, ALL_BUT_LOG_AND_PACKED, "spoll-ad");
    }

    @Test
    void shouldAskForAKickForEveryCommandInEfficiencyMode() throws Exception {
        long kicks = run(PollingMode.EFFICIENCY, ALL_BUT_LOG_AND_PACKED, "spoll-ef");
        assertEquals(COMMANDS, kicks, "efficiency: the worker sleeps after each command and asks for the next kick");
    }

    /** WRITE(16)s then READ(16)s back {@link #COMMANDS} 4 KiB blocks at QD1 on LUN 0; returns the kicks the driver sent. */
    private static long run(PollingMode mode, long wanted, String name) throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), name, ".raw");
        Path sock = Files.createTempDirectory(name).resolve("s.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            ScsiLun lun = new ScsiLun(name, disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
            ScsiTarget target = new ScsiTarget();
            target.add(0, lun);
            int blocks = 4096 / lun.blockSize();
            try (VhostUserScsiExport e = VhostUserScsiExport.start(name, target, sock,
                     VhostUserScsiExport.Options.defaults().withRequestQueues(1).withPolling(mode));
                 ScsiTestDriver d = ScsiTestDriver.connect(e, 8 << 20, wanted, 8, 64)) {
                VhostUserFrontend f = d.f;
                VhostUserFrontend.Queue q = d.requests;
                long req = f.alloc(REQ_LENGTH, 8);
                long resp = f.alloc(RESP_LENGTH, 8);
                long data = f.alloc(4096, 4096);
                long kicks = 0;
                for (int i = 0; i < COMMANDS; i++) {
                    boolean write = i < COMMANDS / 2;
                    int block = i % (COMMANDS / 2);
                    MemorySegment buf = f.at(data, 4096);
                    if (write) {
                        buf.fill((byte) block);
                        buf.set(ValueLayout.JAVA_INT_UNALIGNED, 0, block);
                    } else {
                        buf.fill((byte) 0);
                    }
                    MemorySegment r = f.at(req, REQ_LENGTH);
                    r.fill((byte) 0);
                    r.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
                    r.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x40);
                    MemorySegment.copy(MemorySegment.ofArray(rw16(write ? 0x8A : 0x88, (long) block * blocks, blocks)), 0, r,
                        REQ_CDB_OFFSET, 16);
                    f.at(resp, RESP_LENGTH).fill((byte) 0x77);
                    int head = write
                        ? q.add(new long[] {req, data, resp}, new int[] {REQ_LENGTH, 4096, RESP_LENGTH}, new boolean[] {false, false, true})
                        : q.add(new long[] {req, resp, data}, new int[] {REQ_LENGTH, RESP_LENGTH, 4096}, new boolean[] {false, true, true});
                    if (q.kickIfNeeded()) {
                        kicks++;
                    }
                    int[] used = q.awaitUsed(10_000);
                    assertNotNull(used, name + ": command " + i + " completed (no lost wake-up); worker error: " + e.lastError());
                    assertEquals(head, used[0]);
                    MemorySegment s = f.at(resp, RESP_LENGTH);
                    assertEquals(S_OK, s.get(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET), name + ": command " + i + " response");
                    assertEquals(0, s.get(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET), name + ": command " + i + " status GOOD");
                    if (!write) {
                        assertEquals(block, buf.get(ValueLayout.JAVA_INT_UNALIGNED, 0), name + ": block " + block + " read back");
                        assertEquals((byte) block, buf.get(ValueLayout.JAVA_BYTE, 4095));
                    }
                }
                System.out.println(name + " " + mode + ": " + kicks + " kicks for " + COMMANDS + " commands");
                assertIdleWorkersSleep(name);
                return kicks;
            }
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** After the last command no worker of the controller keeps polling: over 1 s together far less than a core. */
    private static void assertIdleWorkersSleep(String name) throws InterruptedException {
        var workers = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith(name + "-q")).toList();
        assertEquals(3, workers.size(), "control, event and request queue workers: " + workers);
        var mx = ManagementFactory.getThreadMXBean();
        Thread.sleep(100);
        long before = workers.stream().mapToLong(t -> mx.getThreadCpuTime(t.threadId())).sum();
        Thread.sleep(1_000);
        long used = workers.stream().mapToLong(t -> mx.getThreadCpuTime(t.threadId())).sum() - before;
        assertTrue(used < 100_000_000L, name + ": the idle workers used " + used / 1_000_000 + " ms of CPU in 1 s");
    }
}
