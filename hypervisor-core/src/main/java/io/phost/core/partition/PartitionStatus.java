package io.phost.core.partition;

import java.util.List;
import java.util.Map;

/**
 * One row of {@code /status} and {@code phost status}.
 *
 * @param kind      process or vm
 * @param pid       the child's pid (QEMU's for a VM), or -1 when not running
 * @param channels  open VMBus channels (0 for a VM)
 * @param offers    devices offered (channels the guest could open; a VM's vhost-user devices)
 * @param faults    recent guest faults or crashes, newest last (at most 16)
 * @param faultCount all faults since start
 * @param reason    why the partition is in its state (exit code, missed heartbeats, fault), or ""
 * @param details   kind-specific facts as text (a VM's accelerator and why, its cgroup limits or why they
 *                  are not enforced, restarts, console log)
 */
public record PartitionStatus(String name, PartitionKind kind, PartitionState state, long pid, int vcpus,
                              long memoryBytes, int channels, int offers, long faultCount, List<String> faults,
                              String reason, Map<String, String> details) {
    public PartitionStatus {
        faults = List.copyOf(faults);
        details = Map.copyOf(details);
    }
}
