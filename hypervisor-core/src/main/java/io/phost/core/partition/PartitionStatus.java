package io.phost.core.partition;

import java.util.List;

/**
 * One row of {@code /status} and {@code phost status}.
 *
 * @param pid       the child's pid, or -1 when not running
 * @param channels  open VMBus channels
 * @param offers    devices offered (channels the guest could open)
 * @param faults    recent guest faults, newest last (at most 16)
 * @param faultCount all faults since start
 * @param reason    why the partition is in its state (exit code, missed heartbeats, fault), or ""
 */
public record PartitionStatus(String name, PartitionState state, long pid, int vcpus, long memoryBytes, int channels,
                              int offers, long faultCount, List<String> faults, String reason) {}
