package io.phost.storage.scsi;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * One task management function in flight, published by {@link ScsiTarget#manage} to every queue of the
 * target; each queue applies it on its own thread (the only thread that may complete its requests).
 */
final class TaskOrder {
    final long sequence;
    final TaskFunction function;
    final int lun;
    final long tag;
    /** Commands in scope that the queues found (aborted, or still running). */
    final AtomicInteger found = new AtomicInteger();
    /** Commands in scope already in the kernel when the order was applied and not yet completed. */
    final AtomicInteger running = new AtomicInteger();

    TaskOrder(long sequence, TaskFunction function, int lun, long tag) {
        this.sequence = sequence;
        this.function = function;
        this.lun = lun;
        this.tag = tag;
    }

    boolean covers(ScsiRequest r) {
        return function.wholeTarget() || r.lun() == lun && (!function.oneTask() || r.tag() == tag);
    }
}
