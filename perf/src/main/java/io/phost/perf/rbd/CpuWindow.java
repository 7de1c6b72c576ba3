package io.phost.perf.rbd;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * CPU time a process spent during a window of a benchmark, from {@code /proc/PID/task/*}: the first field of
 * each task's {@code schedstat} (nanoseconds on a CPU), summed over the tasks alive at both ends. The JVM's
 * JIT compiler threads are left out (fio has none; they are warm-up, not per-I/O work). For this JVM the
 * queue agents' share is measured apart: Java threads whose name ends with {@code -q0} (a VMBus storage
 * channel agent {@code vsp-storage-…-q0}, a vhost-user queue worker {@code …-q0}).
 *
 * <p>For information beside IOPS: CPU per I/O compares the sides' efficiency while 2 vCPUs are shared with
 * the OSD, where IOPS alone mostly says who got a CPU.
 */
final class CpuWindow {
    private final long pid;
    private final long startNanos;
    private final long startCpu;
    private final long startAgent;
    private final long startCluster;
    /**
     * The test cluster's daemons (ceph-osd, ceph-mon), whose CPU per I/O is measured beside each side's: the
     * OSD's work is the same for every side, and a side that spins could starve it. Empty when unknown.
     */
    private static volatile long[] clusterPids = new long[0];

    private CpuWindow(long pid) {
        this.pid = pid;
        this.startNanos = System.nanoTime();
        this.startCpu = processCpu(pid);
        this.startAgent = pid == ProcessHandle.current().pid() ? agentCpu() : 0;
        this.startCluster = clusterCpu();
    }

    /**
     * Finds the cluster's daemons from the {@code *.pid} files in the {@code run} directory beside {@code conf}
     * (where tools/ceph-test-cluster/start.sh puts them); none for a cluster laid out otherwise.
     */
    static void watchCluster(Path conf) {
        java.util.List<Long> pids = new java.util.ArrayList<>();
        Path run = conf.toAbsolutePath().getParent().resolve("run");
        try (DirectoryStream<Path> files = Files.newDirectoryStream(run, "*.pid")) {
            for (Path f : files) {
                try {
                    pids.add(Long.parseLong(Files.readString(f).trim()));
                } catch (IOException | NumberFormatException e) {
                    // a daemon that is gone or half-written: not counted
                }
            }
        } catch (IOException e) {
            // no run directory: cluster CPU stays unknown (NaN)
        }
        clusterPids = pids.stream().mapToLong(Long::longValue).toArray();
    }

    /** CPU nanoseconds of the cluster's daemons (all threads) now; -1 when they are not known. */
    static long clusterCpu() {
        long[] pids = clusterPids;
        if (pids.length == 0) {
            return -1;
        }
        long sum = 0;
        for (long p : pids) {
            sum += processCpu(p);
        }
        return sum;
    }

    /** CPU nanoseconds the cluster's daemons spent since the start; negative when unknown. */
    long clusterNanos() {
        return startCluster < 0 ? -1 : clusterCpu() - startCluster;
    }

    /** Starts a window over this JVM. */
    static CpuWindow self() {
        return new CpuWindow(ProcessHandle.current().pid());
    }

    /** Starts a window over another process (fio). */
    static CpuWindow of(long pid) {
        return new CpuWindow(pid);
    }

    /** CPU nanoseconds (JIT threads left out) spent since the start. */
    long cpuNanos() {
        return processCpu(pid) - startCpu;
    }

    private static final java.lang.invoke.MethodHandle GETRUSAGE = java.lang.foreign.Linker.nativeLinker().downcallHandle(
        java.lang.foreign.Linker.nativeLinker().defaultLookup().find("getrusage").orElseThrow(),
        java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT, java.lang.foreign.ValueLayout.JAVA_INT,
            java.lang.foreign.ValueLayout.ADDRESS));

    /**
     * This JVM's CPU nanoseconds from {@code getrusage(RUSAGE_SELF)}: threads that ended count too (the VMBus side's
     * in-process guest runs on {@code guest-io-*} threads that end before the window is read, so a sum over the
     * tasks alive at both ends left the guest out; issue 20, twelfth session). Microsecond resolution.
     */
    private static long selfCpu() {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            java.lang.foreign.MemorySegment ru = a.allocate(144, 8); // struct rusage: ru_utime, ru_stime first
            int r = (int) GETRUSAGE.invokeExact(0, ru);
            if (r != 0) {
                return -1;
            }
            long us = ru.get(java.lang.foreign.ValueLayout.JAVA_LONG, 0) * 1_000_000L + ru.get(java.lang.foreign.ValueLayout.JAVA_LONG, 8)
                + ru.get(java.lang.foreign.ValueLayout.JAVA_LONG, 16) * 1_000_000L + ru.get(java.lang.foreign.ValueLayout.JAVA_LONG, 24);
            return us * 1_000L;
        } catch (Throwable t) {
            return -1;
        }
    }

    /** Run time of this JVM's JIT compiler threads (left out of its CPU: warm-up, not per-I/O work). */
    private static long selfCompilerCpu() {
        long sum = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : tasks) {
                try {
                    if (!Files.readString(t.resolve("comm")).contains("CompilerThre")) {
                        continue;
                    }
                    String s = Files.readString(t.resolve("schedstat"));
                    int sp = s.indexOf(' ');
                    sum += Long.parseLong(sp > 0 ? s.substring(0, sp) : s.trim());
                } catch (IOException | NumberFormatException e) {
                    // the task ended between the listing and the read
                }
            }
        } catch (IOException e) {
            return 0;
        }
        return sum;
    }

    /** CPU nanoseconds of this JVM's queue agents since the start. */
    long agentNanos() {
        return agentCpu() - startAgent;
    }

    /** Wall nanoseconds since the start. */
    long wallNanos() {
        return System.nanoTime() - startNanos;
    }

    /**
     * Run time per thread name ({@code comm}, digits folded to {@code #}) of this JVM's tasks now: for the
     * per-thread breakdown {@code PHOST_BENCH_RBD_THREADS=1} logs (which of guest, agent and librbd's threads
     * the CPU per I/O goes to).
     */
    static java.util.Map<String, Long> byThread() {
        java.util.Map<String, Long> m = new java.util.TreeMap<>();
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path t : tasks) {
                try {
                    String comm = Files.readString(t.resolve("comm")).trim().replaceAll("[0-9]+", "#");
                    String s = Files.readString(t.resolve("schedstat"));
                    int sp = s.indexOf(' ');
                    m.merge(comm, Long.parseLong(sp > 0 ? s.substring(0, sp) : s.trim()), Long::sum);
                } catch (IOException | NumberFormatException e) {
                    // the task ended meanwhile
                }
            }
        } catch (IOException e) {
            return m;
        }
        return m;
    }

    /**
     * Sum of schedstat run time over the process's tasks, compiler threads excluded; 0 once it is gone. For this
     * JVM, {@link #selfCpu} less the compiler threads: ended threads (the in-process guest's) count.
     */
    static long processCpu(long pid) {
        if (pid == ProcessHandle.current().pid()) {
            long self = selfCpu();
            if (self >= 0) {
                return self - selfCompilerCpu();
            }
        }
        long sum = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/" + pid + "/task"))) {
            for (Path t : tasks) {
                try {
                    String comm = Files.readString(t.resolve("comm")).trim();
                    if (comm.contains("CompilerThre")) {
                        continue;
                    }
                    String s = Files.readString(t.resolve("schedstat"));
                    int sp = s.indexOf(' ');
                    sum += Long.parseLong(sp > 0 ? s.substring(0, sp) : s.trim());
                } catch (IOException | NumberFormatException e) {
                    // the task ended between the listing and the read: its time is not counted
                }
            }
        } catch (IOException e) {
            return 0;
        }
        return sum;
    }

    private static long agentCpu() {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long sum = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().endsWith("-q0") && t != Thread.currentThread()) {
                long ns = mx.getThreadCpuTime(t.threadId());
                sum += Math.max(0, ns);
            }
        }
        return sum;
    }
}
