package io.phost.perf.vswitch;

import io.phost.perf.Schedstat;
import io.phost.vswitch.Port;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What the netns point's switch thread ({@code vswitch-bench}) cost and waited, summed over the phost rounds, from
 * its schedstat: CPU-seconds per GB it forwarded while iperf3 ran, and during the pings its run-queue delay per
 * timeslice (time woken but waiting for a CPU) and timeslices per ping, with the {@link PingHopProbe}'s hops.
 */
final class SwitchThreadStats implements SwitchBenchSuite.Phases {
    private static final String THREAD = "vswitch-bench";
    private final PingHopProbe probe;
    private Port a;
    private Port b;
    private long[] at;
    private long bytesAt;
    private long tcpCpuNanos;
    private long helperAt;
    private long helperCpuNanos;
    private long tcpBytes;
    private long pingWaitNanos;
    private long pingSlices;
    private long pingRounds;

    SwitchThreadStats(PingHopProbe probe) {
        this.probe = probe;
    }

    PingHopProbe probe() {
        return probe;
    }

    /** The two ports of the current round's switch. */
    void ports(Port a, Port b) {
        this.a = a;
        this.b = b;
    }

    private long forwardedBytes() {
        return a.counters().rxBytes() + b.counters().rxBytes();
    }

    @Override
    public void tcp(boolean start) {
        long[] now = Schedstat.sample(THREAD);
        long helpers = helperCpuNanos();
        if (start) {
            at = now;
            helperAt = helpers;
            bytesAt = forwardedBytes();
        } else {
            tcpCpuNanos += now[0] - at[0];
            helperCpuNanos += helpers - helperAt;
            tcpBytes += forwardedBytes() - bytesAt;
        }
    }

    @Override
    public void ping(boolean start) {
        long[] now = Schedstat.sample(THREAD);
        if (start) {
            at = now;
            probe.armed = true;
        } else {
            probe.armed = false;
            pingWaitNanos += now[1] - at[1];
            pingSlices += now[2] - at[2];
            pingRounds++;
        }
    }

    Map<String, Double> tcpSeries() {
        Map<String, Double> out = new LinkedHashMap<>();
        out.put("switch_cpu_s_per_gb", tcpBytes == 0 ? Double.NaN : tcpCpuNanos / 1e9 / (tcpBytes / 1e9));
        out.put("helper_cpu_s_per_gb", tcpBytes == 0 ? Double.NaN : helperCpuNanos / 1e9 / (tcpBytes / 1e9));
        return out;
    }

    Map<String, Double> pingSeries() {
        Map<String, Double> out = new LinkedHashMap<>(probe.summary());
        out.put("switch_runqueue_wait_us_per_slice", pingSlices == 0 ? Double.NaN : pingWaitNanos / 1e3 / pingSlices);
        double pings = probe.summary().get("hop_samples");
        out.put("switch_slices_per_ping", pings == 0 ? Double.NaN : pingSlices / pings);
        return out;
    }

    /**
     * CPU (ns) of the threads that write for the switch in the non-inline TAP receive modes: a VMQ worker
     * ({@code vmq-*}, this process) and the TAPs' threaded NAPI kernel threads ({@code napi/phbt*}).
     */
    static long helperCpuNanos() {
        long sum = Schedstat.sample("vmq-")[0];
        try (java.nio.file.DirectoryStream<java.nio.file.Path> procs =
                 java.nio.file.Files.newDirectoryStream(java.nio.file.Path.of("/proc"), "[0-9]*")) {
            for (java.nio.file.Path p : procs) {
                try {
                    if (java.nio.file.Files.readString(p.resolve("comm")).startsWith("napi/phbt")) {
                        sum += Long.parseLong(java.nio.file.Files.readString(p.resolve("schedstat")).trim().split("\\s+")[0]);
                    }
                } catch (java.io.IOException | RuntimeException e) {
                    // gone between the listing and the read
                }
            }
        } catch (java.io.IOException e) {
            return sum;
        }
        return sum;
    }

    String summary() {
        return tcpSeries() + " " + pingSeries();
    }
}
