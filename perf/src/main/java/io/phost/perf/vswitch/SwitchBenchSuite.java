package io.phost.perf.vswitch;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.PortKind;
import io.phost.vswitch.SwitchAgent;
import io.phost.vswitch.SwitchType;
import io.phost.vswitch.TapPort;
import io.phost.vswitch.TapReceive;
import io.phost.vswitch.VSwitch;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.agrona.concurrent.AgentRunner;

/**
 * {@code phost bench switch}: (1) 64-byte L2 forwarding between two vNIC ports on one switch core, in Mpps,
 * with bytes allocated per frame; (2) TCP throughput between two network namespaces through phost (TAP
 * ports with virtio-net headers and TSO/checksum offloads) vs through a Linux bridge with veths, same run;
 * (3) ping latency p50/p99 through each; (4) TCP partition ↔ host over an internal switch and a synthetic NIC
 * (VMBus rings, host TAP with TSO/checksum offloads, software segmentation in the switch), both directions,
 * vs the same namespaces joined by a Linux bridge + veths; (5) the same partition ↔ LAN over an external switch
 * whose uplink is a veth with default offloads (AF_PACKET with vnet headers). Every point runs {@link #ROUNDS} rounds, interleaved
 * with the bridge, also with --quick (which shortens each round instead: 0.5 s forwarding, 2 s iperf3, 50 pings,
 * 1 s partition iperf3); the result is the median round with min/median/max of both sides in the series. Parts 2-4 need root, iproute2, iperf3 and ping; without them they are skipped with a
 * log line.
 */
public final class SwitchBenchSuite implements BenchSuite {
    @Override
    public String name() {
        return "switch";
    }

    @Override
    public String description() {
        return "vswitch: 64 B forwarding Mpps per core; TCP and ping latency through phost vs a Linux bridge";
    }

    /** Three rounds of every point, shortened: 89 s measured at load 17 on 2 shared cores (forwarding, netns, partition rigs), plus ~15 s for the netns point's Open vSwitch peer (twelfth session). */
    @Override
    public java.time.Duration quickDuration() {
        return java.time.Duration.ofSeconds(105);
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        boolean quick = ctx.quick();
        List<BenchResult> results = new ArrayList<>();
        int rounds = ROUNDS; // --quick shortens the rounds, never drops them: one round has no spread
        if (point("forward")) {
            ctx.progress(0, 3, "64-byte forwarding");
            BenchResult[] fwd = new BenchResult[rounds];
            for (int r = 0; r < rounds; r++) {
                fwd[r] = forwarding(quick ? 500 : 8_000 / ROUNDS);
            }
            results.add(medianOf(fwd));
        }
        if (!toolsPresent()) {
            ctx.log("skipping namespace benchmarks: needs root, ip netns, /dev/net/tun, iperf3, ping");
            return results;
        }
        // PHOST_BENCH_TCP_SECONDS: iperf3's -t for the netns point (a short quiet slot); default 10, 2 with --quick
        String tcpSeconds = System.getenv("PHOST_BENCH_TCP_SECONDS");
        int seconds = tcpSeconds != null && !tcpSeconds.isBlank() ? Integer.parseInt(tcpSeconds.trim()) : quick ? 2 : 10;
        int pings = quick ? 50 : 500;
        String tag = Long.toString(ProcessHandle.current().pid() % 10000);
        if (point("netns")) {
            results.addAll(netns(ctx, tag, seconds, pings, rounds));
        } else if (point("ping")) {
            results.addAll(netns(ctx, tag, 0, pings, rounds)); // the netns rig's pings alone (a short quiet slot)
        }
        if (point("host")) {
            results.addAll(partitionHost(ctx, tag, quick ? 1 : 8, rounds, false));
        }
        if (point("lan")) {
            results.addAll(partitionHost(ctx, tag, quick ? 1 : 8, rounds, true));
        }
        return results;
    }

    /**
     * The points to run, from {@code PHOST_BENCH_SWITCH_POINTS} (comma-separated: forward, netns, host, lan;
     * unset: all), e.g. {@code PHOST_BENCH_SWITCH_POINTS=host,lan} for the partition TCP points alone; {@code ping}
     * runs the netns point's pings without its TCP.
     */
    private static boolean point(String name) {
        String only = System.getenv("PHOST_BENCH_SWITCH_POINTS");
        return only == null || only.isBlank() || java.util.Arrays.asList(only.split(",")).contains(name);
    }

    /**
     * The TAP receive modes the netns point runs, from {@code PHOST_BENCH_TAP_RX} (comma-separated: inline, rps, rfs,
     * napi-thread ({@link TapReceive}), vmq (a VMQ worker thread writes into both TAPs); unset: inline). Every mode
     * runs in every round, interleaved with the bridge; the first is the compared point, the others get entries
     * of their own named with the mode.
     */
    static List<String> tapModes() {
        String v = System.getenv("PHOST_BENCH_TAP_RX");
        if (v == null || v.isBlank()) {
            return List.of("inline");
        }
        List<String> modes = List.of(v.split(","));
        for (String m : modes) {
            if (!m.equals("vmq")) {
                TapReceive.parse(m); // a clear error before any round runs
            }
        }
        return modes;
    }

    /**
     * The switch agent's {@code [host] polling} modes the netns point runs, from {@code PHOST_BENCH_SWITCH_POLLING}
     * (comma-separated: adaptive, latency, efficiency; unset: adaptive, the default). Like the TAP receive modes,
     * every mode runs in every round; the first is the compared point.
     */
    static List<String> pollingModes() {
        String v = System.getenv("PHOST_BENCH_SWITCH_POLLING");
        List<String> modes = v == null || v.isBlank() ? List.of("adaptive") : List.of(v.split(","));
        for (String m : modes) {
            io.phost.core.vmbus.PollingMode.valueOf(m.toUpperCase(java.util.Locale.ROOT)); // a clear error before any round
        }
        return modes;
    }

    /** One phost configuration of the netns point: a TAP receive mode and the agent's polling mode. */
    record Variant(String tapMode, String polling, String suffix) {}

    static List<Variant> variants() {
        List<String> taps = tapModes();
        List<String> polls = pollingModes();
        List<Variant> out = new ArrayList<>();
        for (String tap : taps) {
            for (String poll : polls) {
                List<String> parts = new ArrayList<>();
                if (!tap.equals(taps.getFirst())) {
                    parts.add("tap rx " + tap);
                }
                if (!poll.equals(polls.getFirst())) {
                    parts.add("polling " + poll);
                }
                out.add(new Variant(tap, poll, parts.isEmpty() ? "" : " [" + String.join(", ", parts) + "]"));
            }
        }
        return out;
    }

    /**
     * Whether the netns point runs Open vSwitch's user-space datapath as a second peer ({@code PHOST_BENCH_OVS}: on
     * by default, {@code off} to skip it in a short slot). When on and Open vSwitch is missing the bench fails,
     * naming the package.
     */
    static boolean ovsPeer() {
        return !"off".equals(System.getenv("PHOST_BENCH_OVS"));
    }

    static final String BRIDGE = "linux bridge + veth";

    static String ovsName() {
        return "ovs userspace (netdev) + " + OvsUserspaceRig.portType();
    }

    /**
     * TCP netns ↔ netns and ping through phost TAP ports vs a Linux bridge and Open vSwitch's user-space datapath,
     * {@code rounds} rounds interleaved ABBA (odd rounds run the sides in reverse order, so a load trend hits all
     * sides alike).
     */
    private static List<BenchResult> netns(BenchContext ctx, String tag, int seconds, int pings, int rounds)
        throws Exception {
        List<BenchResult> results = new ArrayList<>();
        List<Variant> variants = variants();
        boolean ovs = ovsPeer();
        if (ovs) {
            OvsUserspaceRig.requireTools();
            OvsUserspaceRig.portType();
            ctx.log("open vswitch: user-space datapath (datapath_type=netdev), " + OvsUserspaceRig.portType()
                + " ports; kernel datapath " + (OvsUserspaceRig.kernelDatapathLoaded() ? "module loaded (not used)"
                : "not available (module openvswitch not loaded; the bench loads no kernel modules)"));
        }
        double[][][] phostByMode = new double[variants.size()][8][rounds];
        double[][] bridge = new double[8][rounds];
        double[][] ovsSide = new double[9][rounds]; // measure()'s 8 values + ovs-vswitchd CPU-s per GB
        SwitchThreadStats[] statsByMode = new SwitchThreadStats[variants.size()];
        for (int m = 0; m < variants.size(); m++) {
            statsByMode[m] = new SwitchThreadStats(new PingHopProbe());
        }
        List<Integer> sides = new ArrayList<>(); // 0..n-1 phost variants, -1 bridge, -2 ovs
        for (int v = 0; v < variants.size(); v++) {
            sides.add(v);
        }
        if (ovs) {
            sides.add(-2);
        }
        sides.add(-1);
        for (int r = 0; r < rounds; r++) {
            List<Integer> order = r % 2 == 0 ? sides : sides.reversed();
            for (int side : order) {
                if (side >= 0) {
                    Variant v = variants.get(side);
                    ctx.progress(1, 3, "TCP + ping through phost (tap rx " + v.tapMode() + ", polling " + v.polling()
                        + "), round " + (r + 1) + " of " + rounds);
                    double[] p = throughPhost(tag, seconds, pings, statsByMode[side], v);
                    ctx.log("round " + (r + 1) + " phost " + v.tapMode() + "/" + v.polling() + ": " + Arrays.toString(p));
                    for (int m = 0; m < 8; m++) {
                        phostByMode[side][m][r] = p[m];
                    }
                } else if (side == -2) {
                    ctx.progress(2, 3, "TCP + ping through Open vSwitch (userspace), round " + (r + 1) + " of " + rounds);
                    double[] o = throughOvs(tag, seconds, pings);
                    ctx.log("round " + (r + 1) + " ovs: " + Arrays.toString(o));
                    for (int m = 0; m < 9; m++) {
                        ovsSide[m][r] = o[m];
                    }
                } else {
                    ctx.progress(2, 3, "TCP + ping through a Linux bridge, round " + (r + 1) + " of " + rounds);
                    double[] b = throughBridge(tag, seconds, pings);
                    ctx.log("round " + (r + 1) + " bridge: " + Arrays.toString(b));
                    for (int m = 0; m < 8; m++) {
                        bridge[m][r] = b[m];
                    }
                }
            }
        }
        ctx.progress(3, 3, "done");
        for (int mode = 0; mode < variants.size(); mode++) {
            double[][] phost = phostByMode[mode];
            SwitchThreadStats stats = statsByMode[mode];
            String suffix = variants.get(mode).suffix();
            ctx.log("switch thread, all rounds" + suffix + ": " + stats.summary());
            if (seconds > 0) {
                results.add(roundsResult(BenchResult.vsPeer("tcp-throughput netns->netns" + suffix, median(phost[0]) / 1e9,
                    "Gbit/s", BRIDGE, median(bridge[0]) / 1e9), phost[0], bridge[0], 1e9, "Gbit/s"));
                if (ovs) {
                    results.add(roundsResult(BenchResult.vsPeer("tcp-throughput netns->netns vs ovs" + suffix,
                        median(phost[0]) / 1e9, "Gbit/s", ovsName(), median(ovsSide[0]) / 1e9), phost[0], ovsSide[0], 1e9,
                        "Gbit/s"));
                }
            }
            results.add(roundsResult(BenchResult.vsPeerLowerIsBetter("ping-latency p50" + suffix, median(phost[1]), "us",
                BRIDGE, median(bridge[1])), phost[1], bridge[1], 1, "us"));
            results.add(roundsResult(BenchResult.vsPeerLowerIsBetter("ping-latency p99" + suffix, median(phost[2]), "us",
                BRIDGE, median(bridge[2])), phost[2], bridge[2], 1, "us"));
            if (ovs) {
                results.add(roundsResult(BenchResult.vsPeerLowerIsBetter("ping-latency p50 vs ovs" + suffix,
                    median(phost[1]), "us", ovsName(), median(ovsSide[1])), phost[1], ovsSide[1], 1, "us"));
                results.add(roundsResult(BenchResult.vsPeerLowerIsBetter("ping-latency p99 vs ovs" + suffix,
                    median(phost[2]), "us", ovsName(), median(ovsSide[2])), phost[2], ovsSide[2], 1, "us"));
            }
            Map<String, Double> hops = stats.pingSeries();
            results.add(BenchResult.alone("ping hop to-switch p50 (phost)" + suffix, hops.get("hop_to_switch_p50_us"), "us")
                .withSeries(hops));
            if (seconds == 0) { // pings alone
                continue;
            }
            // Diagnostics of the phost rounds (own entries: their series mix units, so reports do not chart them)
            Map<String, Double> tcpSeries = stats.tcpSeries();
            double switchPerGb = tcpSeries.get("switch_cpu_s_per_gb");
            double helperPerGb = tcpSeries.get("helper_cpu_s_per_gb");
            results.add(BenchResult.alone("switch thread CPU per GB, tcp netns->netns" + suffix, switchPerGb, "CPU-s/GB"));
            // Where a 2-vCPU machine's cycles go per GB on each path: iperf3's client and server (each with the
            // kernel work done in its context: copies, TCP, the bridge's forwarding in softirq) plus, for phost, the
            // switch thread and its helper threads (VMQ worker, threaded NAPI). With both CPUs busy, throughput is
            // bounded by 2 CPUs / total. Softirq work RPS sends to an idle CPU is counted nowhere.
            Map<String, Double> cpu = new java.util.LinkedHashMap<>();
            cpu.put("phost_iperf3_cpu_s_per_gb", median(phost[3]));
            cpu.put("phost_switch_cpu_s_per_gb", switchPerGb);
            cpu.put("phost_helper_cpu_s_per_gb", helperPerGb);
            cpu.put("phost_total_cpu_s_per_gb", median(phost[3]) + switchPerGb + helperPerGb);
            cpu.put("bridge_iperf3_cpu_s_per_gb", median(bridge[3]));
            // The whole machine's busy CPU (/proc/stat: user, nice, system, irq, softirq) per GB while iperf3 ran:
            // counts softirq work wherever it lands (RPS), and everything else running, so it means something only
            // on a quiet machine.
            cpu.put("phost_machine_cpu_s_per_gb", median(phost[4]));
            cpu.put("bridge_machine_cpu_s_per_gb", median(bridge[4]));
            // TCP retransmissions the sender counted (a frame lost on the way, e.g. a full TAP queue, shows here)
            cpu.put("phost_tcp_retransmits", median(phost[5]));
            // The pipeline's stages one by one (the busiest bounds a quiet run): iperf3 client, server, switch
            cpu.put("phost_client_cpu_s_per_gb", median(phost[6]));
            cpu.put("phost_server_cpu_s_per_gb", median(phost[7]));
            cpu.put("bridge_client_cpu_s_per_gb", median(bridge[6]));
            cpu.put("bridge_server_cpu_s_per_gb", median(bridge[7]));
            cpu.put("bridge_tcp_retransmits", median(bridge[5]));
            if (ovs) {
                cpu.put("ovs_iperf3_cpu_s_per_gb", median(ovsSide[3]));
                cpu.put("ovs_vswitchd_cpu_s_per_gb", median(ovsSide[8]));
                cpu.put("ovs_machine_cpu_s_per_gb", median(ovsSide[4]));
                cpu.put("ovs_client_cpu_s_per_gb", median(ovsSide[6]));
                cpu.put("ovs_server_cpu_s_per_gb", median(ovsSide[7]));
                cpu.put("ovs_tcp_retransmits", median(ovsSide[5]));
            }
            results.add(BenchResult.alone("CPU per GB all threads, tcp netns->netns (phost)" + suffix,
                median(phost[3]) + switchPerGb + helperPerGb, "CPU-s/GB").withSeries(cpu));
            // The whole machine's CPU-s per GB of each side, min/median/max over the rounds (quiet slots only)
            Map<String, Double> machine = new java.util.LinkedHashMap<>();
            putMinMedianMax(machine, "phost", phost[4]);
            putMinMedianMax(machine, "bridge", bridge[4]);
            if (ovs) {
                putMinMedianMax(machine, "ovs", ovsSide[4]);
            }
            results.add(BenchResult.alone("machine CPU per GB, tcp netns->netns (phost)" + suffix, median(phost[4]),
                "CPU-s/GB").withSeries(machine));
        }
        return results;
    }

    private static void putMinMedianMax(Map<String, Double> series, String side, double[] rounds) {
        double[] s = rounds.clone();
        Arrays.sort(s);
        series.put(side + "_min", s[0]);
        series.put(side + "_median", s[s.length / 2]);
        series.put(side + "_max", s[s.length - 1]);
    }

    /** The netns point through Open vSwitch's user-space datapath: measure()'s values plus ovs-vswitchd's CPU-s per GB. */
    private static double[] throughOvs(String tag, int seconds, int pings) throws Exception {
        String nsA = "phoA" + tag;
        String nsB = "phoB" + tag;
        try (OvsUserspaceRig rig = OvsUserspaceRig.start(tag, nsA, "10.92.0.1/24", nsB, "10.92.0.2/24")) {
            ProcessCpu vswitchd = new ProcessCpu(rig.vswitchdPid());
            double[] m = measure(nsA, nsB, "10.92.0.2", seconds, pings, vswitchd);
            double[] out = Arrays.copyOf(m, 9);
            // iperf3 runs seconds + 1 (the omitted first second) at about the measured rate
            out[8] = vswitchd.tcpCpuSeconds / (m[0] / 8 / 1e9 * (seconds + 1));
            return out;
        }
    }

    /** A process's CPU (all its threads, /proc/PID/stat utime + stime) over the TCP phase. */
    static final class ProcessCpu implements Phases {
        private final long pid;
        private long at;
        double tcpCpuSeconds = Double.NaN;

        ProcessCpu(long pid) {
            this.pid = pid;
        }

        @Override
        public void tcp(boolean start) {
            long now = ticks();
            if (start) {
                at = now;
            } else {
                tcpCpuSeconds = (now - at) / 100.0; // USER_HZ
            }
        }

        private long ticks() {
            try {
                String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/" + pid + "/stat"));
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                return Long.parseLong(f[11]) + Long.parseLong(f[12]); // utime, stime (fields 14, 15)
            } catch (IOException | RuntimeException e) {
                return 0;
            }
        }
    }

    /** Interleaved rounds of every point and its bridge peer, in a full run and with --quick. */
    static final int ROUNDS = 3;

    /**
     * TCP host → partition and partition → host over a synthetic NIC vs bridge + veth, {@code rounds} rounds; with
     * {@code lan} the "host" is a LAN namespace behind an external switch's veth uplink.
     */
    static List<BenchResult> partitionHost(BenchContext ctx, String tag, int seconds, int rounds, boolean lan)
        throws Exception {
        double[][] phost = new double[2][rounds];
        double[][] bridge = new double[2][rounds];
        for (int round = 0; round < rounds; round++) {
            ctx.progress(round, rounds, "TCP partition <-> " + (lan ? "LAN" : "host") + ", round " + (round + 1));
            try (PartitionHostRig rig = new PartitionHostRig(tag, lan)) {
                phost[0][round] = tcp(rig.hostNs, rig.partitionNs, PartitionHostRig.PARTITION_IP, seconds);
                phost[1][round] = tcp(rig.partitionNs, rig.hostNs, PartitionHostRig.HOST_IP, seconds);
            }
            String[] b = bridgeUp(tag);
            try {
                bridge[0][round] = tcp(b[0], b[1], "10.91.0.2", seconds);
                bridge[1][round] = tcp(b[1], b[0], "10.91.0.1", seconds);
            } finally {
                bridgeDown(tag);
            }
        }
        List<BenchResult> out = new ArrayList<>();
        String[] names = lan ? new String[] {"tcp lan->partition (synthetic NIC, external)", "tcp partition->lan (synthetic NIC, external)"}
            : new String[] {"tcp host->partition (synthetic NIC)", "tcp partition->host (synthetic NIC)"};
        for (int d = 0; d < 2; d++) {
            out.add(roundsResult(BenchResult.vsPeer(names[d], median(phost[d]) / 1e9, "Gbit/s", "linux bridge + veth",
                median(bridge[d]) / 1e9), phost[d], bridge[d], 1e9, "Gbit/s"));
        }
        return out;
    }

    /** A Linux bridge with two veths into namespaces phrA/phrB (10.91.0.1, .2); returns the namespaces. */
    private static String[] bridgeUp(String tag) throws Exception {
        String nsA = "phrA" + tag;
        String nsB = "phrB" + tag;
        String br = "phbr" + tag;
        must("ip", "link", "add", br, "type", "bridge");
        must("ip", "link", "set", br, "up");
        for (String[] side : new String[][] {{nsA, "a", "10.91.0.1/24"}, {nsB, "b", "10.91.0.2/24"}}) {
            String host = "phrh" + side[1] + tag;
            String guest = "phrg" + side[1] + tag;
            must("ip", "link", "add", host, "type", "veth", "peer", "name", guest);
            must("ip", "link", "set", host, "master", br);
            must("ip", "link", "set", host, "up");
            namespace(side[0], guest, side[2], null);
        }
        return new String[] {nsA, nsB};
    }

    private static void bridgeDown(String tag) {
        run(5, "ip", "link", "del", "phrha" + tag);
        run(5, "ip", "link", "del", "phrhb" + tag);
        run(5, "ip", "link", "del", "phbr" + tag);
        run(5, "ip", "netns", "del", "phrA" + tag);
        run(5, "ip", "netns", "del", "phrB" + tag);
    }

    /** iperf3 TCP from {@code clientNs} to a one-shot server at {@code serverIp} in {@code serverNs}; bits/s. */
    static double tcp(String clientNs, String serverNs, String serverIp, int seconds) throws Exception {
        for (int i = 0; i < 50 && run(5, "ip", "netns", "exec", clientNs, "ping", "-c", "1", "-W", "1", serverIp).exitCode != 0; i++) {
            Thread.sleep(100);
        }
        Process server = new ProcessBuilder("ip", "netns", "exec", serverNs, "iperf3", "-s", "-1", "-B", serverIp)
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try {
            for (int attempt = 0; attempt < 50; attempt++) {
                Result r = run(seconds + 20, "ip", "netns", "exec", clientNs, "iperf3", "-c", serverIp, "-t",
                    Integer.toString(seconds), "-O", "1", "-J", "--connect-timeout", "5000");
                if (r.output.contains("Connection refused")) {
                    Thread.sleep(100);
                    continue;
                }
                return number(r.output, "sum_received", "bits_per_second");
            }
            return Double.NaN;
        } finally {
            server.destroy();
            server.waitFor(5, TimeUnit.SECONDS);
            server.destroyForcibly();
        }
    }

    /** Forwards 64-byte frames both ways for {@code millis} after a warm-up; returns Mpps and B/frame. */
    private static double median(double[] v) {
        double[] s = v.clone();
        java.util.Arrays.sort(s);
        return s[s.length / 2];
    }

    /** {@code result} with the rounds' min/median/max of both sides in the series (values divided by {@code scale}). */
    public static BenchResult roundsResult(BenchResult result, double[] ours, double[] peer, double scale, String unit) {
        double[] a = ours.clone();
        double[] b = peer.clone();
        java.util.Arrays.sort(a);
        java.util.Arrays.sort(b);
        Map<String, Double> series = new java.util.LinkedHashMap<>();
        series.put("phost_min", a[0] / scale);
        series.put("phost_median", a[a.length / 2] / scale);
        series.put("phost_max", a[a.length - 1] / scale);
        series.put("peer_min", b[0] / scale);
        series.put("peer_median", b[b.length / 2] / scale);
        series.put("peer_max", b[b.length - 1] / scale);
        series.put("rounds", (double) a.length);
        return result.withSeries(unit, series);
    }

    /** The median round of the forwarding point, with min/median/max Mpps and the rounds' allocation in the series. */
    public static BenchResult medianOf(BenchResult[] rounds) {
        BenchResult[] s = rounds.clone();
        java.util.Arrays.sort(s, java.util.Comparator.comparingDouble(BenchResult::value));
        BenchResult mid = s[s.length / 2];
        Map<String, Double> series = new java.util.LinkedHashMap<>(mid.series());
        series.put("min", s[0].value());
        series.put("median", mid.value());
        series.put("max", s[s.length - 1].value());
        series.put("rounds", (double) s.length);
        return mid.withSeries(series);
    }

    static BenchResult forwarding(long millis) {
        ForwardingRig rig = new ForwardingRig();
        long warmEnd = System.nanoTime() + millis / 4 * 1_000_000L;
        while (System.nanoTime() < warmEnd) {
            rig.forward(1024);
        }
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long tid = Thread.currentThread().threadId();
        long alloc0 = mx.getThreadAllocatedBytes(tid);
        long frames0 = rig.delivered();
        long t0 = System.nanoTime();
        long end = t0 + millis * 1_000_000L;
        long now;
        do {
            rig.forward(4096);
            now = System.nanoTime();
        } while (now < end);
        long frames = rig.delivered() - frames0;
        long alloc = mx.getThreadAllocatedBytes(tid) - alloc0;
        double mpps = frames / ((now - t0) / 1e3);
        return BenchResult.alone("l2-forward 64B 2 ports 1 core", mpps, "Mpps")
            .withSeries(Map.of("bytes_allocated_per_frame", (double) alloc / frames, "frames", (double) frames));
    }

    private static double[] throughPhost(String tag, int seconds, int pings, SwitchThreadStats stats, Variant variant)
        throws Exception {
        String mode = variant.tapMode();
        PingHopProbe probe = stats.probe();
        boolean vmqMode = mode.equals("vmq");
        TapReceive receive = vmqMode ? TapReceive.INLINE : TapReceive.parse(mode);
        io.phost.vswitch.Vmq vmq = vmqMode ? new io.phost.vswitch.Vmq(1) : null;
        String nsA = "phbA" + tag;
        String nsB = "phbB" + tag;
        VSwitch sw = new VSwitch("bench", SwitchType.PRIVATE);
        TapPort a = null;
        TapPort b = null;
        AgentRunner runner = null;
        try {
            a = TapPort.open("phbta" + tag, true, receive);
            b = TapPort.open("phbtb" + tag, true, receive);
            PingHopProbe.Port pa = probe.wrap(a);
            PingHopProbe.Port pb = probe.wrap(b);
            io.phost.vswitch.FrameSink sa = vmq == null ? pa : vmq.attach("a", 1, pa);
            io.phost.vswitch.FrameSink sb = vmq == null ? pb : vmq.attach("b", 1, pb);
            stats.ports(sw.addPort("a", PortKind.VNIC, PortConfig.vnic(0x02_60_00_00_00_01L), sa, pa),
                sw.addPort("b", PortKind.VNIC, PortConfig.vnic(0x02_60_00_00_00_02L), sb, pb));
            if (vmq != null) {
                vmq.start();
            }
            namespace(nsA, a.name(), "10.90.0.1/24", "02:60:00:00:00:01");
            namespace(nsB, b.name(), "10.90.0.2/24", "02:60:00:00:00:02");
            // [host] polling for the switch agent (PHOST_BENCH_SWITCH_POLLING)
            SwitchAgent agent = new SwitchAgent(sw, io.phost.core.vmbus.PollingMode.valueOf(
                variant.polling().toUpperCase(java.util.Locale.ROOT)));
            runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
            AgentRunner.startOnThread(runner);
            return measure(nsA, nsB, "10.90.0.2", seconds, pings, stats);
        } finally {
            if (runner != null) {
                runner.close();
            }
            if (vmq != null) {
                vmq.close();
            }
            if (a != null) {
                a.close();
            }
            if (b != null) {
                b.close();
            }
            run(5, "ip", "netns", "del", nsA);
            run(5, "ip", "netns", "del", nsB);
        }
    }

    private static double[] throughBridge(String tag, int seconds, int pings) throws Exception {
        String nsA = "phrA" + tag;
        String nsB = "phrB" + tag;
        String br = "phbr" + tag;
        try {
            must("ip", "link", "add", br, "type", "bridge");
            must("ip", "link", "set", br, "up");
            for (String[] side : new String[][] {{nsA, "a", "10.91.0.1/24"}, {nsB, "b", "10.91.0.2/24"}}) {
                String host = "phrh" + side[1] + tag;
                String guest = "phrg" + side[1] + tag;
                must("ip", "link", "add", host, "type", "veth", "peer", "name", guest);
                must("ip", "link", "set", host, "master", br);
                must("ip", "link", "set", host, "up");
                namespace(side[0], guest, side[2], null);
            }
            return measure(nsA, nsB, "10.91.0.2", seconds, pings, Phases.NONE);
        } finally {
            run(5, "ip", "link", "del", "phrha" + tag);
            run(5, "ip", "link", "del", "phrhb" + tag);
            run(5, "ip", "link", "del", br);
            run(5, "ip", "netns", "del", nsA);
            run(5, "ip", "netns", "del", nsB);
        }
    }

    static void namespace(String ns, String ifname, String cidr, String mac) {
        run(5, "ip", "netns", "del", ns);
        must("ip", "netns", "add", ns);
        must("ip", "-n", ns, "link", "set", "lo", "up");
        must("ip", "link", "set", ifname, "netns", ns);
        if (mac != null) {
            must("ip", "-n", ns, "link", "set", ifname, "address", mac);
        }
        must("ip", "-n", ns, "addr", "add", cidr, "dev", ifname);
        must("ip", "-n", ns, "link", "set", ifname, "up");
    }

    /** Told when the TCP and ping phases of a round start and end (to sample the switch thread around them). */
    interface Phases {
        Phases NONE = new Phases() {};

        default void tcp(boolean start) {}

        default void ping(boolean start) {}
    }

    /**
     * Returns {TCP bits/s, ping p50 us, ping p99 us, iperf3 client + server CPU-s per GB, the machine's busy CPU-s
     * per GB, TCP retransmissions, client's and server's CPU-s per GB} from nsA to serverIp in nsB (iperf3's CPU from its own {@code cpu_utilization_percent}: each process's
     * CPU over the test's wall time).
     */
    private static double[] measure(String nsA, String nsB, String serverIp, int seconds, int pings, Phases phases)
        throws Exception {
        // Wait for the path (ARP, DAD) before timing anything.
        for (int i = 0; i < 50 && run(5, "ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", serverIp).exitCode != 0; i++) {
            Thread.sleep(100);
        }
        double bps = Double.NaN;
        double cpuPerGb = Double.NaN;
        Process server = seconds == 0 ? null // pings alone
            : new ProcessBuilder("ip", "netns", "exec", nsB, "iperf3", "-s", "-1", "-B", serverIp)
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        double machinePerGb = Double.NaN;
        double retransmits = Double.NaN;
        double clientPerGb = Double.NaN;
        double serverPerGb = Double.NaN;
        try {
            for (int attempt = 0; server != null && attempt < 50; attempt++) {
                phases.tcp(true);
                long[] busy0 = machineBusy();
                Result r = run(seconds + 20, "ip", "netns", "exec", nsA, "iperf3", "-c", serverIp, "-t",
                    Integer.toString(seconds), "-O", "1", "-J");
                long[] busy1 = machineBusy();
                phases.tcp(false);
                if (r.output.contains("Connection refused")) {
                    Thread.sleep(100);
                    continue;
                }
                bps = number(r.output, "sum_received", "bits_per_second");
                double cpus = (number(r.output, "cpu_utilization_percent", "host_total")
                    + number(r.output, "cpu_utilization_percent", "remote_total")) / 100;
                cpuPerGb = cpus / (bps / 8 / 1e9);
                clientPerGb = number(r.output, "cpu_utilization_percent", "host_total") / 100 / (bps / 8 / 1e9);
                serverPerGb = number(r.output, "cpu_utilization_percent", "remote_total") / 100 / (bps / 8 / 1e9);
                // iperf3 runs seconds + 1 (the omitted first second) at about the measured rate
                retransmits = number(r.output, "sum_sent", "retransmits");
                machinePerGb = (busy1[0] - busy0[0]) / (double) busy1[1] / (bps / 8 / 1e9 * (seconds + 1));
                break;
            }
        } finally {
            if (server != null) {
                server.destroy();
                server.waitFor(5, TimeUnit.SECONDS);
                server.destroyForcibly();
            }
        }
        String interval = System.getenv().getOrDefault("PHOST_BENCH_PING_INTERVAL", "0.01"); // seconds between pings
        // Uncounted pings first: after the TCP phase (or a fresh rig) the first ones measure the wake-up of idle
        // threads and cold code, not the path (lat12's quiet slot: the peer hop 63-66 us cold vs 27-37 us warm).
        int warmUp = pingWarmUp(pings);
        if (warmUp > 0) {
            run(warmUp / 50 + 20, "ip", "netns", "exec", nsA, "ping", "-c", Integer.toString(warmUp), "-i", interval, serverIp);
        }
        phases.ping(true);
        Result ping = run(pings / 50 + 20, "ip", "netns", "exec", nsA, "ping", "-c", Integer.toString(pings),
            "-i", interval, serverIp);
        phases.ping(false);
        Matcher m = Pattern.compile("time=([0-9.]+) ms").matcher(ping.output);
        List<Double> rtts = new ArrayList<>();
        while (m.find()) {
            rtts.add(Double.parseDouble(m.group(1)) * 1000);
        }
        double[] sorted = rtts.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(sorted);
        return new double[] {bps, percentile(sorted, 0.5), percentile(sorted, 0.99), cpuPerGb, machinePerGb, retransmits,
            clientPerGb, serverPerGb};
    }

    /** Uncounted pings before the counted ones: {@code PHOST_BENCH_PING_WARMUP}, default a fifth of them (at least 20). */
    static int pingWarmUp(int pings) {
        String v = System.getenv("PHOST_BENCH_PING_WARMUP");
        return v == null || v.isBlank() ? Math.max(20, pings / 5) : Integer.parseInt(v.trim());
    }

    /** {busy ticks of all CPUs (user, nice, system, irq, softirq), ticks per second} from /proc/stat's cpu line. */
    private static long[] machineBusy() {
        try {
            String line = java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/stat")).get(0);
            String[] f = line.trim().split("\\s+");
            long busy = Long.parseLong(f[1]) + Long.parseLong(f[2]) + Long.parseLong(f[3]) + Long.parseLong(f[6])
                + Long.parseLong(f[7]);
            return new long[] {busy, 100}; // USER_HZ
        } catch (IOException | RuntimeException e) {
            return new long[] {0, 100};
        }
    }

    private static double percentile(double[] sorted, double p) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        return sorted[Math.min(sorted.length - 1, (int) Math.ceil(p * sorted.length) - 1)];
    }

    private static double number(String json, String section, String key) {
        int s = json.lastIndexOf("\"" + section + "\"");
        if (s < 0) {
            return Double.NaN;
        }
        Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*([0-9.eE+-]+)").matcher(json);
        return m.find(s) ? Double.parseDouble(m.group(1)) : Double.NaN;
    }

    private static boolean toolsPresent() {
        return new java.io.File("/dev/net/tun").exists() && run(5, "ip", "netns", "list").exitCode == 0
            && run(5, "iperf3", "--version").exitCode == 0 && run(5, "ping", "-V").exitCode == 0;
    }

    record Result(int exitCode, String output) {}

    static Result run(int timeoutSeconds, String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return new Result(-1, "timed out");
            }
            return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            return new Result(-1, e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Result(-1, "interrupted");
        }
    }

    static void must(String... cmd) {
        Result r = run(30, cmd);
        if (r.exitCode != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + ": " + r.output);
        }
    }
}
