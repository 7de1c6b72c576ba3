package io.phost.core.partition;

import io.phost.core.vm.VmSpec;
import java.util.List;

/**
 * A child partition as configured ({@code [[partition]]}).
 *
 * @param name        unique, [A-Za-z0-9._-]{1,64}
 * @param vcpus       advisory CPU count (passed to the guest as PHOST_VCPUS)
 * @param memoryBytes guest memory; the child must present a sealed memfd at least this large
 * @param command     the program to launch; empty with a null workload = the guest attaches by itself
 * @param workload    a built-in workload name ({@code phost guest <workload>}), launched through the
 *                    host's {@link GuestLauncher}; null when {@code command} is used
 * @param onCrash     what to do when the launched process exits unasked ({@code on_crash}, as for a VM;
 *                    null = STOP)
 * @param cpus        host CPUs the launched process (every thread) is pinned to; empty = not pinned
 */
public record PartitionSpec(String name, int vcpus, long memoryBytes, List<String> command, String workload,
                            VmSpec.CrashPolicy onCrash, List<Integer> cpus) {
    public PartitionSpec {
        cpus = cpus == null ? List.of() : List.copyOf(cpus);
        onCrash = onCrash == null ? VmSpec.CrashPolicy.STOP : onCrash;
        if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}")) {
            throw new IllegalArgumentException("partition name must match [A-Za-z0-9._-]{1,64}: " + name);
        }
        if (vcpus < 1 || memoryBytes < 64 * 1024 || memoryBytes % 4096 != 0) {
            throw new IllegalArgumentException("partition " + name + ": vcpus >= 1 and memory >= 64 KiB in whole pages");
        }
        command = command == null ? List.of() : List.copyOf(command);
        if (!command.isEmpty() && workload != null) {
            throw new IllegalArgumentException("partition " + name + ": command or workload, not both");
        }
    }

    public PartitionSpec(String name, int vcpus, long memoryBytes, List<String> command, String workload) {
        this(name, vcpus, memoryBytes, command, workload, VmSpec.CrashPolicy.STOP, List.of());
    }

    public PartitionSpec(String name, int vcpus, long memoryBytes, List<String> command, String workload,
                         VmSpec.CrashPolicy onCrash) {
        this(name, vcpus, memoryBytes, command, workload, onCrash, List.of());
    }

    public PartitionSpec withOnCrash(VmSpec.CrashPolicy policy) {
        return new PartitionSpec(name, vcpus, memoryBytes, command, workload, policy, cpus);
    }

    public PartitionSpec withCpus(List<Integer> c) {
        return new PartitionSpec(name, vcpus, memoryBytes, command, workload, onCrash, c);
    }

    public static PartitionSpec command(String name, int vcpus, long memoryBytes, List<String> command) {
        return new PartitionSpec(name, vcpus, memoryBytes, command, null);
    }

    public static PartitionSpec builtin(String name, int vcpus, long memoryBytes, String workload) {
        return new PartitionSpec(name, vcpus, memoryBytes, List.of(), workload);
    }

    /** A partition the host does not launch: a process that knows the credential attaches by itself. */
    public static PartitionSpec external(String name, int vcpus, long memoryBytes) {
        return new PartitionSpec(name, vcpus, memoryBytes, List.of(), null);
    }

    public boolean launched() {
        return !command.isEmpty() || workload != null;
    }
}
