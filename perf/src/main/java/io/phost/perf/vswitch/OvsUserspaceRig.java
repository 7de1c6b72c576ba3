package io.phost.perf.vswitch;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Open vSwitch's user-space datapath ({@code datapath_type=netdev}) between two network namespaces: the peer the
 * issue names next to the Linux bridge for the netns point. Its own {@code ovsdb-server} and {@code ovs-vswitchd}
 * run as children of the bench (no systemd, no --detach) with every database, socket, pid and log file in a
 * temporary directory, so the machine's own Open vSwitch (if any) and its interfaces are never touched; {@link
 * #close} deletes the bridge's devices, stops both daemons and removes the directory.
 *
 * <p>Ports ({@code PHOST_BENCH_OVS_PORTS}): {@code tap} (default) are OVS-created TAP devices ({@code type=tap})
 * moved into the namespaces, with {@code userspace-tso-enable=true} so OVS opens them with IFF_VNET_HDR and TSO
 * on, like phost's TAP ports: the fair comparison. {@code system} are veths whose far ends OVS reads with
 * AF_PACKET; OVS 3.1's user-space datapath cannot complete partial checksums there, so the namespace ends get
 * {@code ethtool -K tx off} (no checksum offload, hence no TSO: 1,500 B frames), as OVS's own system-userspace
 * tests do.
 */
final class OvsUserspaceRig implements AutoCloseable {
    /** The Debian package that carries ovsdb-tool, ovsdb-server, ovs-vswitchd and ovs-vsctl. */
    static final String PACKAGE = "openvswitch-switch";
    private static final String SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema";

    private final String tag;
    private final String portType;
    private final Path dir;
    private final List<Process> daemons = new ArrayList<>();
    private final List<String> links = new ArrayList<>();
    private final List<String> namespaces = new ArrayList<>();

    private OvsUserspaceRig(String tag, String portType, Path dir) {
        this.tag = tag;
        this.portType = portType;
        this.dir = dir;
    }

    /** The port type from {@code PHOST_BENCH_OVS_PORTS}: tap (default) or system; anything else is refused. */
    static String portType() {
        String v = System.getenv().getOrDefault("PHOST_BENCH_OVS_PORTS", "tap");
        if (!v.equals("tap") && !v.equals("system")) {
            throw new IllegalArgumentException("PHOST_BENCH_OVS_PORTS=" + v + ": expected tap or system");
        }
        return v;
    }

    /** Fails loudly, naming the Debian package, when a daemon or tool of Open vSwitch is missing. */
    static void requireTools() {
        List<String> missing = new ArrayList<>();
        for (String tool : List.of("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")) {
            if (!onPath(tool)) {
                missing.add(tool);
            }
        }
        if (!missing.isEmpty() || !Files.exists(Path.of(SCHEMA))) {
            throw new IllegalStateException("bench switch: the Open vSwitch peer needs " + String.join(", ", missing)
                + (Files.exists(Path.of(SCHEMA)) ? "" : " " + SCHEMA) + ": apt-get install " + PACKAGE);
        }
    }

    private static boolean onPath(String tool) {
        String path = System.getenv().getOrDefault("PATH", "") + ":/usr/sbin:/sbin";
        return Stream.of(path.split(":")).anyMatch(d -> !d.isEmpty() && Files.isExecutable(Path.of(d, tool)));
    }

    /**
     * Whether OVS's kernel datapath could be used here ({@code openvswitch} module loaded); the bench never loads
     * kernel modules, and says so in its log.
     */
    static boolean kernelDatapathLoaded() {
        return Files.exists(Path.of("/sys/module/openvswitch"));
    }

    /**
     * Starts the daemons, a netdev bridge {@code phov<tag>} and two ports, one in each of namespaces {@code nsA}
     * and {@code nsB} (addresses {@code cidrA}, {@code cidrB}).
     */
    static OvsUserspaceRig start(String tag, String nsA, String cidrA, String nsB, String cidrB) throws Exception {
        requireTools();
        String ports = portType();
        OvsUserspaceRig rig = new OvsUserspaceRig(tag, ports, Files.createTempDirectory("phost-ovs-bench-"));
        try {
            rig.up(nsA, cidrA, nsB, cidrB);
            return rig;
        } catch (Exception | Error e) {
            rig.close();
            throw e;
        }
    }

    /** ovs-vswitchd's pid (its threads' CPU is the switch's cost). */
    long vswitchdPid() {
        return daemons.get(1).pid();
    }

    String bridge() {
        return "phov" + tag;
    }

    private void up(String nsA, String cidrA, String nsB, String cidrB) throws Exception {
        Path db = dir.resolve("conf.db");
        String remote = "unix:" + dir.resolve("db.sock");
        ovs("ovsdb-tool", "create", db.toString(), SCHEMA);
        daemons.add(daemon("ovsdb-server", db.toString(), "--remote=p" + remote, "--pidfile=" + dir.resolve("ovsdb-server.pid"),
            "--unixctl=" + dir.resolve("ovsdb-server.ctl"), "--log-file=" + dir.resolve("ovsdb-server.log"), "--no-chdir"));
        awaitFile(dir.resolve("db.sock"), "ovsdb-server");
        vsctl("--no-wait", "init");
        // Read once at start-up: TAP ports then get IFF_VNET_HDR and TSO (phost's TAP ports have both)
        vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=" + portType.equals("tap"));
        daemons.add(daemon("ovs-vswitchd", remote, "--pidfile=" + dir.resolve("ovs-vswitchd.pid"),
            "--unixctl=" + dir.resolve("ovs-vswitchd.ctl"), "--log-file=" + dir.resolve("ovs-vswitchd.log"), "--no-chdir"));
        links.add(bridge()); // the bridge's internal port is a TAP OVS makes persistent
        vsctl("add-br", bridge(), "--", "set", "bridge", bridge(), "datapath_type=netdev");
        String[][] sides = {{nsA, "a", cidrA}, {nsB, "b", cidrB}};
        for (String[] side : sides) {
            String guest = "phog" + side[1] + tag;
            namespaces.add(side[0]);
            SwitchBenchSuite.run(5, "ip", "netns", "del", side[0]);
            SwitchBenchSuite.must("ip", "netns", "add", side[0]);
            SwitchBenchSuite.must("ip", "-n", side[0], "link", "set", "lo", "up");
            if (portType.equals("tap")) {
                links.add(guest);
                vsctl("add-port", bridge(), guest, "--", "set", "Interface", guest, "type=tap");
                // OVS keeps the TAP's fd; in the namespace the device is the guest's NIC
                SwitchBenchSuite.must("ip", "link", "set", guest, "netns", side[0]);
            } else {
                String host = "phoh" + side[1] + tag;
                links.add(host);
                SwitchBenchSuite.must("ip", "link", "add", host, "type", "veth", "peer", "name", guest);
                SwitchBenchSuite.must("ip", "link", "set", guest, "netns", side[0]);
                SwitchBenchSuite.must("ip", "link", "set", host, "up");
                vsctl("add-port", bridge(), host);
                SwitchBenchSuite.must("ip", "netns", "exec", side[0], "ethtool", "-K", guest, "tx", "off");
            }
            SwitchBenchSuite.must("ip", "-n", side[0], "addr", "add", side[2], "dev", guest);
            SwitchBenchSuite.must("ip", "-n", side[0], "link", "set", guest, "up");
        }
    }

    private Process daemon(String... cmd) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
            .redirectOutput(dir.resolve(cmd[0] + ".out").toFile());
        env(pb.environment());
        return pb.start();
    }

    /** Every OVS path default (run dir, db dir, logs, config) points into the rig's own directory. */
    private void env(Map<String, String> env) {
        for (String k : List.of("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR")) {
            env.put(k, dir.toString());
        }
    }

    private void vsctl(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("ovs-vsctl", "--db=unix:" + dir.resolve("db.sock"), "--timeout=20"));
        cmd.addAll(List.of(args));
        ovs(cmd.toArray(String[]::new));
    }

    private void ovs(String... cmd) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        env(pb.environment());
        Process p = pb.start();
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IllegalStateException(String.join(" ", cmd) + ": timed out" + logTail());
        }
        if (p.exitValue() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + ": " + new String(p.getInputStream().readAllBytes())
                + logTail());
        }
    }

    private void awaitFile(Path file, String who) throws Exception {
        for (int i = 0; i < 200 && !Files.exists(file); i++) {
            if (!daemons.getLast().isAlive()) {
                throw new IllegalStateException(who + " exited with " + daemons.getLast().exitValue() + logTail());
            }
            Thread.sleep(25);
        }
        if (!Files.exists(file)) {
            throw new IllegalStateException(who + " did not create " + file + " within 5 s" + logTail());
        }
    }

    /** The end of both daemons' logs, for an error message. */
    private String logTail() {
        StringBuilder out = new StringBuilder();
        for (String log : List.of("ovsdb-server.log", "ovs-vswitchd.log", "ovsdb-server.out", "ovs-vswitchd.out")) {
            try {
                List<String> lines = Files.readAllLines(dir.resolve(log));
                out.append("\n").append(log).append(":\n")
                    .append(String.join("\n", lines.subList(Math.max(0, lines.size() - 8), lines.size())));
            } catch (IOException ignored) {
                // not written yet
            }
        }
        return out.toString();
    }

    @Override
    public void close() {
        if (daemons.size() > 1 && daemons.get(1).isAlive()) {
            try {
                vsctl("--if-exists", "del-br", bridge());
            } catch (Exception ignored) {
                // the devices are deleted below either way
            }
        }
        for (Process p : daemons.reversed()) {
            p.destroy();
            try {
                if (!p.waitFor(5, TimeUnit.SECONDS)) {
                    p.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                p.destroyForcibly();
            }
        }
        for (String link : links) { // TAPs OVS made persistent, the veths' host ends
            SwitchBenchSuite.run(5, "ip", "link", "del", link);
        }
        for (String ns : namespaces) {
            SwitchBenchSuite.run(5, "ip", "netns", "del", ns);
        }
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException ignored) {
            // a temp dir left behind is harmless
        }
    }
}
