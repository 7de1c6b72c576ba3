package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;

/**
 * CPU affinity of a thread (sched_setaffinity/sched_getaffinity; pid 0 = this thread), so VSP agents can be
 * kept on the CPUs {@code [host] vsp_cpus} names, and a partition's threads (QEMU's vCPUs and the rest, or a
 * process partition's process) on the CPUs its {@code cpus} key names.
 * <pre>
 *   cpu_set_t: 1024 bits, CPU n is bit (n % 64) of 64-bit word n / 64
 * </pre>
 */
public final class CpuAffinity {
    /** CPU numbers a mask can hold (glibc's CPU_SETSIZE). */
    public static final int MAX_CPUS = 1024;
    private static final long MASK_BYTES = MAX_CPUS / 8;
    /** int sched_setaffinity(pid_t pid, size_t cpusetsize, const cpu_set_t *mask) */
    private static final MethodHandle SET = Native.downcall("sched_setaffinity",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS));
    /** int sched_getaffinity(pid_t pid, size_t cpusetsize, cpu_set_t *mask) */
    private static final MethodHandle GET = Native.downcall("sched_getaffinity",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS));

    private CpuAffinity() {}

    /** Restricts the calling thread to {@code cpus}; throws NativeException naming the errno (e.g. EINVAL: none online). */
    public static void pin(List<Integer> cpus) {
        pin(0, cpus);
    }

    /**
     * Restricts thread {@code tid} (a kernel task id: a process's main thread has tid = pid; 0 = the calling
     * thread) to {@code cpus}. Threads it creates later inherit the set.
     */
    public static void pin(long tid, List<Integer> cpus) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(MASK_BYTES, 8);
            for (int cpu : cpus) {
                if (cpu < 0 || cpu >= MAX_CPUS) {
                    throw new IllegalArgumentException("CPU " + cpu + " outside 0.." + (MAX_CPUS - 1));
                }
                long word = mask.get(ValueLayout.JAVA_LONG, (cpu / 64) * 8L);
                mask.set(ValueLayout.JAVA_LONG, (cpu / 64) * 8L, word | 1L << (cpu % 64));
            }
            Native.check((int) SET.invokeExact(Native.errnoState(), (int) tid, MASK_BYTES, mask),
                "sched_setaffinity tid=" + tid + " " + cpus);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The CPUs the calling thread may run on. */
    public static List<Integer> current() {
        return of(0);
    }

    /**
     * Pins every thread of process {@code pid} (each {@code /proc/PID/task/TID}) to {@code cpus}; two passes, so
     * a thread created while the first ran (its creator maybe not yet pinned) is caught by the second. Returns
     * the thread ids pinned; a thread that exits meanwhile is skipped.
     */
    public static List<Long> pinProcess(long pid, List<Integer> cpus) throws java.io.IOException {
        java.util.Set<Long> done = new java.util.TreeSet<>();
        for (int pass = 0; pass < 2; pass++) {
            try (var tasks = java.nio.file.Files.list(java.nio.file.Path.of("/proc", Long.toString(pid), "task"))) {
                for (java.nio.file.Path t : tasks.toList()) {
                    long tid = Long.parseLong(t.getFileName().toString());
                    try {
                        pin(tid, cpus);
                        done.add(tid);
                    } catch (NativeException e) {
                        if (java.nio.file.Files.exists(t)) {
                            throw e; // not ESRCH from a thread that just exited
                        }
                    }
                }
            }
        }
        return List.copyOf(done);
    }

    /**
     * The host's online CPUs, from {@code /sys/devices/system/cpu/online} ("0-3,8,10-11").
     */
    public static List<Integer> online() throws java.io.IOException {
        return parseList(java.nio.file.Files.readString(java.nio.file.Path.of("/sys/devices/system/cpu/online")).strip());
    }

    /** Parses the kernel's CPU list format ("0-3,8"), as in /sys and {@code Cpus_allowed_list}. */
    public static List<Integer> parseList(String list) {
        List<Integer> cpus = new ArrayList<>();
        if (list.isEmpty()) {
            return cpus;
        }
        for (String part : list.split(",")) {
            int dash = part.indexOf('-');
            int from = Integer.parseInt(dash < 0 ? part : part.substring(0, dash));
            int to = dash < 0 ? from : Integer.parseInt(part.substring(dash + 1));
            for (int c = from; c <= to; c++) {
                cpus.add(c);
            }
        }
        return cpus;
    }

    /** The CPUs thread {@code tid} may run on (0 = the calling thread). */
    public static List<Integer> of(long tid) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(MASK_BYTES, 8);
            Native.check((int) GET.invokeExact(Native.errnoState(), (int) tid, MASK_BYTES, mask), "sched_getaffinity tid=" + tid);
            List<Integer> cpus = new ArrayList<>();
            for (int cpu = 0; cpu < MAX_CPUS; cpu++) {
                if ((mask.get(ValueLayout.JAVA_LONG, (cpu / 64) * 8L) & 1L << (cpu % 64)) != 0) {
                    cpus.add(cpu);
                }
            }
            return cpus;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
