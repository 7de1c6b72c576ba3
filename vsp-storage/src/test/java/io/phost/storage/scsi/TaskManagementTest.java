package io.phost.storage.scsi;

import io.phost.qos.QosFlow;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.VirtualDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static io.phost.storage.scsi.ScsiHarness.rw10;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Task management through the core ({@link ScsiTarget#manage}): commands no engine started (held by a paused
 * LUN, deferred by QoS) complete with TASK ABORTED; a command already in the kernel completes normally, and
 * the function answers only after it did; queries answer FUNCTION SUCCEEDED when they find their task.
 */
@Timeout(30)
class TaskManagementTest {
    private final Arena arena = Arena.ofShared();
    private final List<ScsiRequest> completed = new ArrayList<>();

    /** Runs the queue's thread until stopped: the owner of every request and completion. */
    private static final class QueueThread extends Thread {
        final ScsiQueue queue;
        final AtomicBoolean stop = new AtomicBoolean();

        QueueThread(ScsiQueue queue) {
            this.queue = queue;
            setDaemon(true);
        }

        @Override
        public void run() {
            while (!stop.get()) {
                queue.awaitWork(200_000L);
            }
        }

        void finish() throws InterruptedException {
            stop.set(true);
            join();
        }
    }

    private ScsiRequest read(ScsiQueue q, int lun, long tag) {
        ScsiRequest r = q.tryAcquire();
        r.reset(lun, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, tag);
        r.data().add(arena.allocate(512, 4096));
        q.submit(r);
        return r;
    }

    @Test
    void shouldAbortHeldCommandsAndAnswerQueries() throws Exception {
        ScsiTarget target = new ScsiTarget();
        ScsiLun lun0 = new ScsiLun("tm0", MemoryDisk.ram(1 << 20, 512, false));
        target.add(0, lun0);
        target.add(1, new ScsiLun("tm1", MemoryDisk.ram(1 << 20, 512, false)));
        ScsiQueue q = new ScsiQueue(target, 8, 4, completed::add);
        assertTrue(lun0.pauseIo(1_000));
        ScsiRequest r7 = read(q, 0, 7);
        ScsiRequest r8 = read(q, 0, 8);
        ScsiRequest r9 = read(q, 1, 7); // same tag on another LUN: not in ABORT TASK's scope
        QueueThread t = new QueueThread(q);
        t.start();

        assertEquals(TaskResponse.FUNCTION_COMPLETE, target.manage(TaskFunction.ABORT_TASK, 0, 7, 5_000));
        assertEquals(TaskResponse.FUNCTION_SUCCEEDED, target.manage(TaskFunction.QUERY_TASK, 0, 8, 5_000), "r8 is still held");
        assertEquals(TaskResponse.FUNCTION_COMPLETE, target.manage(TaskFunction.QUERY_TASK, 0, 7, 5_000), "r7 is gone");
        assertEquals(TaskResponse.INCORRECT_LUN, target.manage(TaskFunction.LOGICAL_UNIT_RESET, 5, 0, 5_000));
        t.finish();
        assertEquals(java.util.Set.of(r9, r7), java.util.Set.copyOf(completed), "r9 ran, r7 was aborted, r8 is still held");
        assertEquals(2, completed.size());
        assertEquals(Scsi.STATUS_TASK_ABORTED, r7.status());
        assertEquals(0, r7.transferred());
        assertEquals(Scsi.STATUS_GOOD, r9.status());

        t = new QueueThread(q);
        t.start();
        assertEquals(TaskResponse.FUNCTION_COMPLETE, target.manage(TaskFunction.LOGICAL_UNIT_RESET, 0, 0, 5_000));
        assertEquals(TaskResponse.FUNCTION_COMPLETE, target.manage(TaskFunction.QUERY_TASK_SET, 0, 0, 5_000), "nothing left");
        t.finish();
        assertEquals(3, completed.size());
        assertEquals(r8, completed.get(2));
        assertEquals(Scsi.STATUS_TASK_ABORTED, r8.status());
        assertEquals(0, lun0.inFlight());
        assertEquals(0, q.outstanding());

        lun0.resumeIo(); // the LUN serves again after its reset
        completed.forEach(q::release);
        completed.clear();
        ScsiRequest again = read(q, 0, 10);
        while (completed.isEmpty()) {
            q.awaitWork(1_000_000L);
        }
        assertEquals(Scsi.STATUS_GOOD, again.status());
        q.close();
    }

    /** A disk whose reads wait for {@link #gate}: a read the thread-pool engine started is "in the kernel". */
    private static final class GatedDisk implements VirtualDisk {
        final CountDownLatch gate = new CountDownLatch(1);
        final CountDownLatch started = new CountDownLatch(1);

        @Override public long size() { return 1 << 20; }
        @Override public int logicalSectorSize() { return 512; }
        @Override public int physicalSectorSize() { return 512; }
        @Override public boolean readOnly() { return false; }
        @Override public void write(long offset, MemorySegment src) { }
        @Override public void flush() { }
        @Override public void writeZeroes(long offset, long length) { }
        @Override public String format() { return "gated"; }
        @Override public void close() { }

        @Override
        public void read(long offset, MemorySegment dst) {
            started.countDown();
            try {
                gate.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            dst.fill((byte) 0x5A);
        }
    }

    @Test
    void shouldWaitForACommandInTheKernelAndAbortOneDeferredByQos() throws Exception {
        GatedDisk gated = new GatedDisk();
        QosFlow never = new QosFlow() {
            @Override
            public long tryAdmit(int bytes, long nowNanos) {
                return 1_000_000_000L;
            }

            @Override
            public void completed(int bytes, long latencyNanos, long nowNanos) {
            }
        };
        ScsiTarget target = new ScsiTarget();
        target.add(0, new ScsiLun("gated", gated, QosFlow.UNLIMITED, false, IoEngines.Kind.THREADS));
        ScsiLun slow = new ScsiLun("slow", MemoryDisk.ram(1 << 20, 512, false), never, false, IoEngines.Kind.AUTO);
        target.add(1, slow);
        ScsiQueue q = new ScsiQueue(target, 8, 4, r -> {
            synchronized (completed) {
                completed.add(r);
            }
        });
        ScsiRequest inKernel = read(q, 0, 1);
        ScsiRequest deferred = read(q, 1, 2);
        QueueThread t = new QueueThread(q);
        t.start();
        assertTrue(gated.started.await(10, TimeUnit.SECONDS), "the engine started the read");

        assertEquals(TaskResponse.SERVICE_DELIVERY_FAILURE, target.manage(TaskFunction.ABORT_TASK, 0, 1, 100),
            "a command the kernel still runs: the abort cannot complete within its timeout");
        CompletableFuture<TaskResponse> reset = CompletableFuture.supplyAsync(
            () -> target.manage(TaskFunction.I_T_NEXUS_RESET, 0, 0, 10_000));
        Thread.sleep(200);
        assertFalse(reset.isDone(), "the reset waits for the command in the kernel");
        synchronized (completed) {
            assertEquals(List.of(deferred), completed, "the QoS-deferred command was aborted at once");
        }
        assertEquals(Scsi.STATUS_TASK_ABORTED, deferred.status());
        assertEquals(0, slow.inFlight());

        gated.gate.countDown();
        assertEquals(TaskResponse.FUNCTION_COMPLETE, reset.get(10, TimeUnit.SECONDS));
        synchronized (completed) {
            assertEquals(List.of(deferred, inKernel), completed, "the command in the kernel completed before the answer");
        }
        assertEquals(Scsi.STATUS_GOOD, inKernel.status());
        assertEquals(512, inKernel.transferred());
        t.finish();
        q.close();
    }
}
