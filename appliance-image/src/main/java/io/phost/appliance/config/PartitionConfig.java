package io.phost.appliance.config;

import java.util.List;

/**
 * {@code [[partition]]}: a child partition (today: a process partition that runs a command or a built-in
 * workload).
 *
 * @param memory   guest memory in bytes
 * @param command  argv of a program to run, or null when a workload is given
 * @param workload the built-in workload, or null when a command is given
 */
public record PartitionConfig(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicConfig> nics,
                              List<String> command, Workload workload, boolean autostart) {
    public PartitionConfig {
        disks = List.copyOf(disks);
        nics = List.copyOf(nics);
        command = command == null ? null : List.copyOf(command);
        if ((command == null) == (workload == null)) {
            throw new IllegalArgumentException("exactly one of command and workload must be set");
        }
    }
}
