package io.phost.appliance.config;

import java.util.List;
import java.util.Set;

/**
 * {@code [partition.workload]}: a built-in guest workload, run inside the partition as
 * {@code phost guest KIND ARGS...}.
 *
 * @param kind one of {@link #KINDS}
 * @param args passed through to the workload's command line
 */
public record Workload(String kind, List<String> args) {
    /** The built-in workloads: storage I/O, network traffic, both at once, and doing nothing. */
    public static final Set<String> KINDS = Set.of("io", "net", "mixed", "idle");

    /** What a partition without command or workload runs. */
    public static final Workload IDLE = new Workload("idle", List.of());

    public Workload {
        args = List.copyOf(args);
    }
}
