package io.phost.appliance.config;

import java.util.List;

/**
 * {@code [[partition]]}: a child partition: a process partition that runs a command or a built-in workload, or
 * (with {@code kind = "vm"}) a virtual machine.
 *
 * @param memory   guest memory in bytes
 * @param command  argv of a program to run, or null when a workload is given (and for a VM)
 * @param workload the built-in workload, or null when a command is given (and for a VM)
 * @param vm       the VM's settings for {@code kind = "vm"}, else null
 * @param cpus     host CPUs the partition's threads are pinned to ({@code cpus}); empty = not pinned
 * @param onCrash  {@code on_crash} ({@code restart} or {@code stop}) of either kind; a VM's is also in {@code vm}
 */
public record PartitionConfig(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicConfig> nics,
                              List<String> command, Workload workload, boolean autostart, VmConfig vm, String onCrash,
                              List<Integer> cpus) {
    public PartitionConfig {
        cpus = cpus == null ? List.of() : List.copyOf(cpus);
        onCrash = vm != null ? vm.onCrash() : onCrash == null ? "stop" : onCrash;
        disks = List.copyOf(disks);
        nics = List.copyOf(nics);
        command = command == null ? null : List.copyOf(command);
        if (vm != null ? command != null || workload != null : (command == null) == (workload == null)) {
            throw new IllegalArgumentException("a process partition has exactly one of command and workload; a VM neither");
        }
    }

    public PartitionConfig(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicConfig> nics,
                           List<String> command, Workload workload, boolean autostart, VmConfig vm) {
        this(name, vcpus, memory, disks, nics, command, workload, autostart, vm, null, List.of());
    }

    /** A process partition. */
    public PartitionConfig(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicConfig> nics,
                           List<String> command, Workload workload, boolean autostart) {
        this(name, vcpus, memory, disks, nics, command, workload, autostart, null);
    }

    public boolean isVm() {
        return vm != null;
    }
}
