package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * NAT for an internal switch, with real TCP: a vNIC namespace ("partition", 10.93.0.2, default route via the host
 * 10.93.0.1) on an internal switch whose host TAP sits in a namespace standing in for the host; the host has a veth to
 * an "outside" namespace (198.51.100.2) that has no route back to 10.93.0.0/24, so a TCP connection from the partition
 * can only work masqueraded by the host. The gateway's table lives in the host namespace; stopping removes exactly it
 * and restores ip_forward; a killed run's leftovers are swept. Needs root, nft, iperf3.
 */
class NatGatewayTest {
    private Netns net;
    private AgentRunner runner;
    private TapPort host;
    private TapPort vnic;
    private Path state;

    @BeforeEach
    void setUp() throws Exception {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun and iperf3");
        Assumptions.assumeTrue(Netns.run(5, "nft", "--version").exitCode() == 0, "needs nft (nftables)");
        net = new Netns();
        state = Files.createTempDirectory("n12nat");
    }

    @AfterEach
    void tearDown() throws Exception {
        if (runner != null) {
            runner.close();
        }
        for (TapPort t : new TapPort[] {host, vnic}) {
            if (t != null) {
                t.close();
            }
        }
        if (net != null) {
            net.close();
        }
        if (state != null) {
            try (var s = Files.list(state)) {
                for (Path p : s.toList()) {
                    Files.delete(p);
                }
            }
            Files.delete(state);
        }
    }

    @Test
    void shouldMasqueradeThePartitionsTcpOutOfTheHostAndRemoveExactlyItsTableOnStop() throws Exception {
        VSwitch sw = new VSwitch("nat", SwitchType.INTERNAL);
        host = TapPort.open(net.ifname("n12h"), true);
        vnic = TapPort.open(net.ifname("n12a"), true);
        sw.addPort("host", PortKind.HOST, PortConfig.uplink(), host, host);
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(0x02_93_00_00_00_02L), vnic, vnic);
        String gw = net.ns("n12g");
        String part = net.ns("n12p");
        String out = net.ns("n12o");
        net.place(host.name(), gw, "10.93.0.1/24");
        Netns.must("ip", "link", "set", vnic.name(), "netns", part);
        Netns.must("ip", "-n", part, "link", "set", vnic.name(), "address", "02:93:00:00:00:02");
        Netns.must("ip", "-n", part, "addr", "add", "10.93.0.2/24", "dev", vnic.name());
        Netns.must("ip", "-n", part, "link", "set", vnic.name(), "up");
        Netns.must("ip", "-n", part, "route", "add", "default", "via", "10.93.0.1");
        net.veth(net.ifname("n12x"), net.ifname("n12y"));
        net.place(net.ifname("n12x"), gw, "198.51.100.1/24");
        net.place(net.ifname("n12y"), out, "198.51.100.2/24");
        SwitchAgent agent = new SwitchAgent(sw);
        runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);

        assertTrue(Netns.ping(part, "10.93.0.1", 2), "the partition reaches the host over the switch");
        assertEquals("0", forwarding(gw), "a fresh namespace does not forward");
        assertFalse(tcpConnects(part, out), "without NAT the outside is unreachable from the partition");

        String table = NatGateway.tableName(host.name());
        try (NatGateway nat = NatGateway.start(gw, host.name(), "10.93.0.0/24", state)) {
            assertEquals("1", forwarding(gw));
            // TCP partition -> outside through the host's NAT: 1 MiB arrives whole (no speed floor: CI is loaded).
            System.out.println("TCP through NAT: " + Netns.assertVerifiedTcp(out, "198.51.100.2", part, 1 << 20, 120));
            String rules = Netns.must("ip", "netns", "exec", gw, "nft", "list", "table", "ip", table);
            assertTrue(rules.contains("masquerade") && rules.contains("10.93.0.0/24"), rules);
            assertEquals(List.of(), NatGateway.sweep(state), "a running gateway is not a leftover");
            assertEquals(nat.table(), table);
        }
        assertFalse(Netns.must("ip", "netns", "exec", gw, "nft", "list", "tables").contains(table), "table removed");
        assertEquals("0", forwarding(gw), "ip_forward restored");
        assertFalse(tcpConnects(part, out), "after stop the outside is unreachable again");
        try (var files = Files.list(state)) {
            assertEquals(0, files.count(), "no marker left after a clean stop");
        }

        // A run killed before it could clean up leaves its table, ip_forward on and its marker: the next run sweeps them.
        NatGateway killed = NatGateway.start(gw, host.name(), "10.93.0.0/24", state);
        Path marker;
        try (var files = Files.list(state)) {
            marker = files.findFirst().orElseThrow();
        }
        String left = Files.exists(marker) ? readQuietly(marker) : "";
        killed.abandon(); // what the killed process knew dies with it
        assertEquals(List.of(table), NatGateway.sweep(state), "marker " + left);
        assertFalse(Netns.must("ip", "netns", "exec", gw, "nft", "list", "tables").contains(table), "leftover removed");
        assertEquals("0", forwarding(gw), "leftover ip_forward restored");
    }

    private static String readQuietly(Path p) {
        try {
            return Files.readString(p);
        } catch (java.io.IOException e) {
            return e.toString();
        }
    }

    private static String forwarding(String ns) {
        return Netns.must("ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward").strip();
    }

    /** True when a TCP connection from {@code from} to port 5299 on the outside namespace is accepted. */
    private static boolean tcpConnects(String from, String outside) {
        Process server = Netns.start(outside, "iperf3", "-s", "-1", "-B", "198.51.100.2", "-p", "5299");
        try {
            Thread.sleep(300);
            return Netns.exec(from, 10, "iperf3", "-c", "198.51.100.2", "-p", "5299", "-t", "1", "--connect-timeout",
                "1500").exitCode() == 0;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        } finally {
            server.destroyForcibly();
        }
    }
}
