package io.phost.perf.vhost;

import java.lang.management.ManagementFactory;
import java.util.function.LongSupplier;

/** CPU time of a vhost-user back-end under test, in nanoseconds, as a counter read before and after a timed run. */
final class BackendCpu {
    private BackendCpu() {}

    /**
     * The threads of this process started after {@code existing} was taken (an export's control thread and queue
     * workers, or the trivial responder's), found at the first read (after the warm-up, when all have started).
     */
    static LongSupplier threadsStartedAfter(long[] existing) {
        var threads = ManagementFactory.getThreadMXBean();
        long[][] ids = new long[1][];
        return () -> {
            if (ids[0] == null) {
                ids[0] = VhostNetPoint.startedSince(threads.getAllThreadIds(), existing);
            }
            long sum = 0;
            for (long id : ids[0]) {
                sum += Math.max(0, threads.getThreadCpuTime(id)); // -1: ended
            }
            return sum;
        };
    }

    /** Another process (qemu-storage-daemon), from /proc/PID/stat in clock ticks: coarse, fine over seconds. */
    static LongSupplier process(long pid) {
        return () -> VhostNetPoint.Cpu.process(pid).nanos();
    }

    static long[] existingThreads() {
        return ManagementFactory.getThreadMXBean().getAllThreadIds();
    }
}
