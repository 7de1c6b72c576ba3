package io.phost.perf;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Run-queue delay of this process's threads from {@code /proc/self/task/TID/schedstat} (three numbers:
 * ns on CPU, ns runnable but waiting for a CPU, timeslices). The waiting time is what a loaded machine
 * adds to every hand-off: a thread that was woken but had to wait for a CPU. Threads are chosen by the
 * prefix of their kernel name ({@code comm}: the Java thread name cut to 15 bytes).
 */
public final class Schedstat {
    private Schedstat() {}

    /** Sum of run-queue wait (ns) over this process's threads whose comm starts with {@code prefix}; -1 if unreadable. */
    public static long waitNanos(String prefix) {
        long sum = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : tasks) {
                try {
                    if (Files.readString(t.resolve("comm")).startsWith(prefix)) {
                        sum += parseWait(Files.readString(t.resolve("schedstat")));
                    }
                } catch (IOException | RuntimeException e) {
                    // the thread exited between the listing and the read: it no longer waits
                }
            }
        } catch (IOException e) {
            return -1;
        }
        return sum;
    }

    /**
     * The three schedstat fields summed over this process's threads whose comm starts with {@code prefix}:
     * {ns on CPU, ns runnable but waiting for a CPU, timeslices}; zeros if none is found.
     */
    public static long[] sample(String prefix) {
        long[] sum = new long[3];
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : tasks) {
                try {
                    if (Files.readString(t.resolve("comm")).startsWith(prefix)) {
                        String[] f = Files.readString(t.resolve("schedstat")).trim().split("\\s+");
                        for (int i = 0; i < 3; i++) {
                            sum[i] += Long.parseLong(f[i]);
                        }
                    }
                } catch (IOException | RuntimeException e) {
                    // the thread exited between the listing and the read
                }
            }
        } catch (IOException e) {
            return sum;
        }
        return sum;
    }

    /** The second field of a schedstat line: ns spent runnable on a run queue. */
    static long parseWait(String schedstat) {
        return Long.parseLong(schedstat.trim().split("\\s+")[1]);
    }
}
