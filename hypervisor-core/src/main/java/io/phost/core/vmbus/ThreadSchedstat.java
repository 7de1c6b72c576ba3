package io.phost.core.vmbus;

import io.phost.core.sys.DirectFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The calling thread's run-queue wait: the second field of {@code /proc/thread-self/schedstat} (ns spent
 * runnable but not running), and from the same read the third (how many times it was switched in). Opened, read and closed per sample (three syscalls, no allocation, no fd kept
 * by a thread that may end without notice); callers sample once per window of idle episodes.
 */
final class ThreadSchedstat implements SpinGovernor.RunQueueProbe {
    private final MemorySegment path = Arena.ofAuto().allocateFrom("/proc/thread-self/schedstat");
    private final MemorySegment buf = Arena.ofAuto().allocate(128);
    private boolean unreadable;
    private long switchIns = -1;

    @Override
    public long waitNanos() {
        if (unreadable) {
            return -1;
        }
        int fd = DirectFile.tryOpen(path, DirectFile.O_RDONLY, 0);
        if (fd < 0) {
            unreadable = true; // no schedstat (kernel without CONFIG_SCHEDSTATS): decide on spin hits alone
            return -1;
        }
        try {
            long n = DirectFile.pread(fd, buf, 0);
            switchIns = parseField(buf, n, 3);
            return parseField(buf, n, 2);
        } catch (RuntimeException e) {
            unreadable = true;
            return -1;
        } finally {
            DirectFile.close(fd);
        }
    }

    @Override
    public long switchIns() {
        return unreadable ? -1 : switchIns;
    }

    /** The second space-separated decimal field of the first {@code n} bytes; -1 if absent. */
    static long parseSecondField(MemorySegment s, long n) {
        return parseField(s, n, 2);
    }

    /** The {@code wanted}-th (from 1) space-separated decimal field of the first {@code n} bytes; -1 if absent. */
    static long parseField(MemorySegment s, long n, int wanted) {
        int field = 0;
        long value = 0;
        boolean inNumber = false;
        for (long i = 0; i < n; i++) {
            byte b = s.get(ValueLayout.JAVA_BYTE, i);
            if (b >= '0' && b <= '9') {
                if (!inNumber) {
                    inNumber = true;
                    field++;
                    value = 0;
                }
                value = value * 10 + (b - '0');
            } else if (inNumber) {
                if (field == wanted) {
                    return value;
                }
                inNumber = false;
            }
        }
        return inNumber && field == wanted ? value : -1;
    }
}
