package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;

/**
 * The calling thread's CPU affinity (sched_setaffinity/sched_getaffinity with pid 0 = this thread), so VSP
 * agents can be kept on the CPUs {@code [host] vsp_cpus} names, away from the guests' threads.
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
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(MASK_BYTES, 8);
            for (int cpu : cpus) {
                if (cpu < 0 || cpu >= MAX_CPUS) {
                    throw new IllegalArgumentException("CPU " + cpu + " outside 0.." + (MAX_CPUS - 1));
                }
                long word = mask.get(ValueLayout.JAVA_LONG, (cpu / 64) * 8L);
                mask.set(ValueLayout.JAVA_LONG, (cpu / 64) * 8L, word | 1L << (cpu % 64));
            }
            Native.check((int) SET.invokeExact(Native.errnoState(), 0, MASK_BYTES, mask), "sched_setaffinity " + cpus);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The CPUs the calling thread may run on. */
    public static List<Integer> current() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(MASK_BYTES, 8);
            Native.check((int) GET.invokeExact(Native.errnoState(), 0, MASK_BYTES, mask), "sched_getaffinity");
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
