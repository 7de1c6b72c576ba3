package io.phost.vswitch;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * NAT for an internal switch (Hyper-V's NetNat): the partitions on the switch's prefix reach the outside through the
 * host, masqueraded to the host's outgoing address. One nftables table per switch, named after its host TAP
 * ({@code phost_nat_TAP}), holds everything phost adds, so stopping deletes exactly that table:
 * <pre>
 *   table ip phost_nat_TAP
 *     chain postrouting (nat, srcnat):  ip saddr PREFIX ip daddr != PREFIX masquerade
 *     chain forward (filter):           iifname TAP ip saddr != PREFIX drop   (only the prefix is forwarded)
 * </pre>
 * IPv4 forwarding ({@code net.ipv4.ip_forward}) is turned on while any gateway runs, and back off when the last one
 * stops if it was off before. A marker file per table in {@code stateDir} records what was changed, so a run that
 * was killed before it could clean up is cleaned up by the next one ({@link #sweep}). Needs CAP_NET_ADMIN and
 * {@code nft} (Debian package nftables). Another base chain that drops forwarded traffic (a firewall's forward policy)
 * still applies: nftables runs every base chain.
 */
public final class NatGateway implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger("phost.network");
    private static final String MARKER_PREFIX = "nat-";
    /** Per network namespace ("" = phost's own): gateways running in this process, and ip_forward before the first. */
    private static final Map<String, int[]> FORWARDING = new HashMap<>();
    /** "netns/table" of the gateways running in this process (never swept as leftovers). */
    private static final java.util.Set<String> ACTIVE = new java.util.HashSet<>();

    private final String netns;
    private final String table;
    private final Path marker;
    private boolean closed;

    private NatGateway(String netns, String table, Path marker) {
        this.netns = netns;
        this.table = table;
        this.marker = marker;
    }

    /** The nftables table phost uses for the switch whose host TAP is {@code hostTap}. */
    public static String tableName(String hostTap) {
        return "phost_nat_" + hostTap.replaceAll("[^A-Za-z0-9_]", "_");
    }

    /**
     * Masquerades {@code prefix} (IPv4 CIDR, e.g. {@code 10.91.0.0/24}) arriving on {@code hostTap} out of every
     * other interface and enables forwarding; {@code netns} null runs in phost's own namespace (tests use one of
     * theirs). A table of the same name left by an earlier run is replaced.
     */
    public static NatGateway start(String netns, String hostTap, String prefix, Path stateDir) {
        String table = tableName(hostTap);
        String ns = netns == null ? "" : netns;
        Path marker = stateDir == null ? null : stateDir.resolve(MARKER_PREFIX + (ns.isEmpty() ? "" : ns + ".") + table);
        nft(netns, "delete table ip " + table + "\n", true);
        int forwardingBefore;
        synchronized (FORWARDING) {
            int[] f = FORWARDING.get(ns);
            forwardingBefore = f != null ? f[1] : readForwarding(netns);
            writeMarker(marker, ns, table, forwardingBefore);
            nft(netns, """
                table ip %1$s {
                  chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    ip saddr %2$s ip daddr != %2$s masquerade
                  }
                  chain forward {
                    type filter hook forward priority filter; policy accept;
                    iifname "%3$s" ip saddr != %2$s counter drop
                  }
                }
                """.formatted(table, prefix, hostTap), false);
            ACTIVE.add(ns + "/" + table);
            if (f == null) {
                FORWARDING.put(ns, new int[] {1, forwardingBefore});
                if (forwardingBefore == 0) {
                    writeForwarding(netns, 1);
                }
            } else {
                f[0]++;
            }
        }
        LOG.log(System.Logger.Level.INFO, "nat started table=" + table + " prefix=" + prefix + " host_tap=" + hostTap
            + (netns == null ? "" : " netns=" + netns) + " ip_forward_was=" + forwardingBefore);
        return new NatGateway(netns, table, marker);
    }

    /**
     * Removes what a run that ended without cleaning up (SIGKILL, crash) left: the tables its markers in
     * {@code stateDir} name, and ip_forward back to what it was before that run. Returns the tables removed.
     */
    public static List<String> sweep(Path stateDir) {
        List<String> removed = new ArrayList<>();
        if (stateDir == null || !Files.isDirectory(stateDir)) {
            return removed;
        }
        try (var files = Files.list(stateDir)) {
            for (Path m : files.filter(p -> p.getFileName().toString().startsWith(MARKER_PREFIX)).toList()) {
                String[] f = Files.readString(m).strip().split(" ");
                if (f.length != 3) {
                    Files.deleteIfExists(m);
                    continue;
                }
                String netns = f[0].equals("-") ? null : f[0];
                synchronized (FORWARDING) {
                    if (ACTIVE.contains((netns == null ? "" : netns) + "/" + f[1])) {
                        continue; // a gateway of this process: not a leftover
                    }
                    nft(netns, "delete table ip " + f[1] + "\n", true);
                    if (f[2].equals("0") && !FORWARDING.containsKey(netns == null ? "" : netns)) {
                        writeForwarding(netns, 0);
                    }
                }
                Files.deleteIfExists(m);
                removed.add(f[1]);
            }
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "nat leftovers in " + stateDir + " not all removed: " + e.getMessage());
        }
        return removed;
    }

    public String table() {
        return table;
    }

    /** Deletes this gateway's table; the last gateway of its namespace restores ip_forward. Idempotent. */
    @Override
    public void close() {
        synchronized (FORWARDING) {
            if (closed) {
                return;
            }
            closed = true;
            String ns = netns == null ? "" : netns;
            ACTIVE.remove(ns + "/" + table);
            try {
                nft(netns, "delete table ip " + table + "\n", true);
                int[] f = FORWARDING.get(ns);
                if (f != null && --f[0] == 0) {
                    FORWARDING.remove(ns);
                    if (f[1] == 0) {
                        writeForwarding(netns, 0);
                    }
                }
                if (marker != null) {
                    Files.deleteIfExists(marker);
                }
            } catch (IOException | RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "nat table=" + table + " not fully removed: " + e.getMessage());
            }
        }
        LOG.log(System.Logger.Level.INFO, "nat stopped table=" + table);
    }

    /** Forgets this gateway without touching the system, as a killed process would (tests of {@link #sweep}). */
    void abandon() {
        synchronized (FORWARDING) {
            closed = true;
            String ns = netns == null ? "" : netns;
            ACTIVE.remove(ns + "/" + table);
            int[] f = FORWARDING.get(ns);
            if (f != null && --f[0] == 0) {
                FORWARDING.remove(ns);
            }
        }
    }

    private static void writeMarker(Path marker, String ns, String table, int forwardingBefore) {
        if (marker == null) {
            return;
        }
        try {
            Files.createDirectories(marker.getParent());
            Files.writeString(marker, (ns.isEmpty() ? "-" : ns) + " " + table + " " + forwardingBefore + "\n");
        } catch (IOException e) {
            throw new IllegalStateException("nat: cannot record " + marker + ": " + e.getMessage(), e);
        }
    }

    private static int readForwarding(String netns) {
        String v = run(netns, List.of("sysctl", "-n", "net.ipv4.ip_forward"), null, false).strip();
        return v.equals("1") ? 1 : 0;
    }

    private static void writeForwarding(String netns, int value) {
        run(netns, List.of("sysctl", "-q", "-w", "net.ipv4.ip_forward=" + value), null, false);
    }

    /** Runs {@code nft -f -} with {@code script}; a missing table is fine when {@code mayBeAbsent}. */
    private static void nft(String netns, String script, boolean mayBeAbsent) {
        run(netns, List.of("nft", "-f", "-"), script, mayBeAbsent);
    }

    private static String run(String netns, List<String> cmd, String stdin, boolean mayFail) {
        List<String> full = new ArrayList<>();
        if (netns != null) {
            full.addAll(List.of("ip", "netns", "exec", netns));
        }
        full.addAll(cmd);
        try {
            Process p = new ProcessBuilder(full).redirectErrorStream(true).start();
            try (var in = p.getOutputStream()) {
                if (stdin != null) {
                    in.write(stdin.getBytes(StandardCharsets.UTF_8));
                }
            }
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IllegalStateException("`" + String.join(" ", full) + "` did not finish in 30 s");
            }
            if (p.exitValue() != 0 && !mayFail) {
                throw new IllegalStateException("`" + String.join(" ", full) + "` failed (exit " + p.exitValue() + "): "
                    + out.strip());
            }
            return out;
        } catch (IOException e) {
            throw new IllegalStateException("`" + String.join(" ", full) + "`: " + e.getMessage()
                + (cmd.getFirst().equals("nft") ? " (install the nftables package)" : ""), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted running " + String.join(" ", full), e);
        }
    }
}
