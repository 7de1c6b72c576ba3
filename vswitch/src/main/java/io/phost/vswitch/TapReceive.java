package io.phost.vswitch;

import io.phost.core.sys.TapDevice;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where the kernel runs the receiving stack (IP, TCP, the socket wake-up) of the frames the switch writes into a
 * TAP port. tun runs it inside the writer's {@code write(2)}: on the switch's thread, where it was 20 % of that
 * thread on the netns path (perf, tenth session). The other modes move it to another CPU:
 * <ul>
 *   <li>{@link #INLINE}: the default, in the switch's {@code write(2)};
 *   <li>{@link #RPS}: Receive Packet Steering over every CPU ({@code queues/rx-0/rps_cpus}): the frame is queued
 *       to the backlog of the CPU its flow hashes to, and that CPU's softirq runs the stack;
 *   <li>{@link #RFS}: RPS plus Receive Flow Steering ({@code queues/rx-0/rps_flow_cnt} = {@link #RFS_FLOWS}): the
 *       frame goes to the CPU where the flow's receiving socket was last read, not to a hashed one. RFS also needs
 *       the machine-wide {@code net.core.rps_sock_flow_entries} above 0, which phost does not set (an
 *       administrator's choice); without it this is {@link #RPS};
 *   <li>{@link #NAPI_THREAD}: the TAP is opened with {@code IFF_NAPI} and its NAPI instance made threaded
 *       ({@code /sys/class/net/NAME/threaded}): {@code write(2)} queues the frame and wakes a kernel thread
 *       ({@code napi/NAME-ID}) that runs the stack, which the scheduler places on whichever CPU is free.
 * </ul>
 * Both sysfs settings are made while the device is in phost's network namespace (before a move) and follow it.
 */
public enum TapReceive {
    INLINE,
    RPS,
    RFS,
    NAPI_THREAD;

    /** Flow-table entries of the TAP's receive queue in {@link #RFS} mode (the kernel rounds up to a power of 2). */
    static final int RFS_FLOWS = 4096;

    /** Extra {@code TUNSETIFF} flags this mode needs. */
    int tunFlags() {
        return this == NAPI_THREAD ? TapDevice.IFF_NAPI : 0;
    }

    /** Applies the mode's sysfs setting to TAP {@code name} (in phost's namespace); a clear error if refused. */
    void apply(String name) {
        switch (this) {
            case INLINE -> { }
            case RPS -> write(Path.of("/sys/class/net", name, "queues/rx-0/rps_cpus"), allCpusMask());
            case RFS -> {
                write(Path.of("/sys/class/net", name, "queues/rx-0/rps_cpus"), allCpusMask());
                write(Path.of("/sys/class/net", name, "queues/rx-0/rps_flow_cnt"), Integer.toString(RFS_FLOWS));
            }
            case NAPI_THREAD -> write(Path.of("/sys/class/net", name, "threaded"), "1");
        }
    }

    /** Parses a mode's name: inline, rps, rfs, napi-thread. */
    public static TapReceive parse(String value) {
        return switch (value) {
            case "inline" -> INLINE;
            case "rps" -> RPS;
            case "rfs" -> RFS;
            case "napi-thread" -> NAPI_THREAD;
            default -> throw new IllegalArgumentException("tap receive mode must be inline, rps, rfs or napi-thread, not \""
                + value + "\"");
        };
    }

    public String configName() {
        return name().toLowerCase(java.util.Locale.ROOT).replace('_', '-');
    }

    /** The rps_cpus mask of every possible CPU: comma-separated 32-bit hex groups, most significant first. */
    static String allCpusMask() {
        return cpusMask(Runtime.getRuntime().availableProcessors());
    }

    /** The rps_cpus mask of CPUs 0 .. {@code cpus - 1}. */
    static String cpusMask(int cpus) {
        StringBuilder out = new StringBuilder();
        for (int group = (cpus - 1) / 32; group >= 0; group--) {
            int inGroup = Math.min(32, cpus - group * 32);
            long mask = inGroup == 32 ? 0xffff_ffffL : (1L << inGroup) - 1;
            if (!out.isEmpty()) {
                out.append(',');
            }
            out.append(Long.toHexString(mask));
        }
        return out.toString();
    }

    private static void write(Path path, String value) {
        try {
            Files.writeString(path, value);
        } catch (IOException e) {
            throw new IllegalStateException("cannot set " + path + " to " + value + ": " + e.getMessage(), e);
        }
    }
}
