package io.phost.perf.vmbus;

import io.phost.core.sys.CpuAffinity;
import java.io.IOException;
import java.util.List;

/**
 * Where {@code phost bench vmbus} runs its two sides: the host side (this JVM: the VSP agent that reads the
 * ring, Agrona's server thread, and every other thread of this process) on one CPU, the child process (the
 * writer, VMBus or Agrona, and all its threads) on another, through {@code sched_setaffinity} ({@link CpuAffinity}).
 * Both peers get the same placement. Why: unpinned, the two busy-spinning processes of a 2-vCPU machine
 * change placement between rounds (both on one CPU, or the reader's CPU also running the other's JIT and GC
 * threads), and both sides' rates swing ~4x between rounds (eleventh session), far above the suite's 20 %
 * refusal line.
 * <p>
 * {@code PHOST_BENCH_VMBUS_PIN}: unset = the first two CPUs this process may run on ("host on the first, child
 * on the second"); {@code HOST:CHILD} = those CPU numbers; {@code off} = no pinning (the old placement). With
 * fewer than two CPUs allowed nothing is pinned and {@link #describe()} says so.
 */
final class BenchPinning {
    private final int hostCpu;
    private final int childCpu;
    private final String why;
    private List<Integer> restore = List.of();

    private BenchPinning(int hostCpu, int childCpu, String why) {
        this.hostCpu = hostCpu;
        this.childCpu = childCpu;
        this.why = why;
    }

    static BenchPinning fromEnvironment() {
        return of(System.getenv("PHOST_BENCH_VMBUS_PIN"), CpuAffinity.current());
    }

    /** {@code spec} as {@code PHOST_BENCH_VMBUS_PIN}; {@code allowed} the CPUs this process may run on. */
    static BenchPinning of(String spec, List<Integer> allowed) {
        if (spec != null && spec.strip().equalsIgnoreCase("off")) {
            return new BenchPinning(-1, -1, "not pinned (PHOST_BENCH_VMBUS_PIN=off)");
        }
        if (spec != null && !spec.isBlank()) {
            if (!spec.strip().matches("\\d+:\\d+")) {
                throw new IllegalArgumentException("PHOST_BENCH_VMBUS_PIN=" + spec + ": expected HOST:CHILD CPU numbers (e.g. 0:1) or off");
            }
            String[] p = spec.strip().split(":");
            int host = Integer.parseInt(p[0]);
            int child = Integer.parseInt(p[1]);
            if (host == child) {
                throw new IllegalArgumentException("PHOST_BENCH_VMBUS_PIN=" + spec + ": the two sides need different CPUs");
            }
            return new BenchPinning(host, child, "PHOST_BENCH_VMBUS_PIN=" + spec.strip());
        }
        if (allowed.size() < 2) {
            return new BenchPinning(-1, -1, "not pinned (only CPU " + allowed + " allowed)");
        }
        return new BenchPinning(allowed.get(0), allowed.get(1), "default: the first two allowed CPUs of " + allowed);
    }

    boolean pinned() {
        return hostCpu >= 0;
    }

    int hostCpu() {
        return hostCpu;
    }

    int childCpu() {
        return childCpu;
    }

    /** The CPUs a child process is pinned to (empty: not pinned). */
    List<Integer> childCpus() {
        return pinned() ? List.of(childCpu) : List.of();
    }

    /** One line for the output and the log. */
    String describe() {
        return pinned()
            ? "host side (agent/Agrona server and all other threads of this JVM) on CPU " + hostCpu + ", child (writer) on CPU " + childCpu + " (" + why + ")"
            : why;
    }

    /** Pins every thread of this process to the host CPU; {@link #release()} gives back the CPUs it had. */
    void pinHostSide() throws IOException {
        if (!pinned()) {
            return;
        }
        restore = CpuAffinity.current();
        CpuAffinity.pinProcess(ProcessHandle.current().pid(), List.of(hostCpu));
    }

    void release() throws IOException {
        if (pinned() && !restore.isEmpty()) {
            CpuAffinity.pinProcess(ProcessHandle.current().pid(), restore);
            restore = List.of();
        }
    }

    /** Pins a child process (all its threads; threads it starts later inherit it). */
    void pinChild(long pid) throws IOException {
        if (pinned()) {
            CpuAffinity.pinProcess(pid, List.of(childCpu));
        }
    }
}
