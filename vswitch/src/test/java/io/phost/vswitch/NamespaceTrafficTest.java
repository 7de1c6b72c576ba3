package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Real traffic through the switch: network namespaces created and removed by the test, TAP ports moved into
 * them (the stand-in for partitions until VMBus NICs exist), veth pairs as external uplinks, ping and
 * iperf3 with bounded durations. Needs root, /dev/net/tun, iproute2, ping, iperf3.
 * Recipe by hand: {@code ip netns add A; ip link set TAP netns A; ip -n A addr add 10.77.0.1/24 dev TAP}.
 */
class NamespaceTrafficTest {
    private Netns net;
    private final List<AgentRunner> runners = new ArrayList<>();
    private final List<AutoCloseable> devices = new ArrayList<>();

    @BeforeEach
    void setUp() {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun and iperf3");
        net = new Netns();
    }

    @AfterEach
    void tearDown() throws Exception {
        for (AgentRunner r : runners) {
            r.close();
        }
        for (AutoCloseable d : devices) {
            d.close();
        }
        if (net != null) {
            net.close();
        }
    }

    private SwitchAgent start(VSwitch sw) {
        SwitchAgent agent = new SwitchAgent(sw);
        AgentRunner runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);
        runners.add(runner);
        return agent;
    }

    /** A TAP port on {@code sw} whose device lives in a fresh namespace with {@code cidr}. */
    private Port tapPort(VSwitch sw, String base, PortKind kind, PortConfig config, String cidr, boolean offloads) {
        TapPort tap = TapPort.open(net.ifname(base), offloads);
        devices.add(tap);
        Port p = sw.addPort(base, kind, config, tap, tap);
        String ns = net.ns(base);
        net.place(tap.name(), ns, cidr);
        return p;
    }

    private static long mac(int i) {
        return 0x02_50_00_00_00_00L + i;
    }

    private static String ns(Netns net, String base) {
        return "ph" + base + net.tag;
    }

    private static void setMac(Netns net, String base, long mac) {
        Netns.must("ip", "-n", ns(net, base), "link", "set", net.ifname(base), "address", EthernetDescriptor.formatMac(mac));
    }

    @Test
    void shouldCarryPingAndIperfBetweenNamespacesAndMirrorTheTrafficOnAnInternalSwitch() {
        VSwitch sw = new VSwitch("int", SwitchType.INTERNAL);
        // The management OS's vNIC: a HOST port; its TAP sits in a namespace standing in for the host stack.
        tapPort(sw, "h", PortKind.HOST, PortConfig.uplink(), "10.77.0.1/24", true);
        Port a = tapPort(sw, "a", PortKind.VNIC, PortConfig.vnic(mac(1)).withMirror(MirrorMode.SOURCE), "10.77.0.2/24", true);
        setMac(net, "a", mac(1));
        Port m = tapPort(sw, "m", PortKind.VNIC, PortConfig.vnic(mac(3)).withMirror(MirrorMode.DESTINATION), "10.77.0.3/24", true);
        setMac(net, "m", mac(3));
        start(sw);

        assertTrue(Netns.ping(ns(net, "a"), "10.77.0.1", 3), "ping vNIC -> management OS");
        String tcp = Netns.iperf(ns(net, "h"), "10.77.0.1", ns(net, "a"), 2);
        double tcpBps = Netns.json(tcp, "sum_received", "bits_per_second");
        assertTrue(tcpBps > 50e6, "TCP through the switch: " + tcpBps);
        String udp = Netns.iperf(ns(net, "h"), "10.77.0.1", ns(net, "a"), 2, "-u", "-b", "50M");
        double lost = Netns.json(udp, "sum", "lost_percent");
        assertTrue(lost < 5, "UDP loss " + lost + "%");
        assertTrue(m.counters().mirroredPackets() > 100, "mirror copies: " + m.counters().mirroredPackets());
        assertEquals(0, a.counters().drops(DropReason.MAC_SPOOF));
        String stats = Netns.must("ip", "-n", ns(net, "m"), "-s", "link", "show", net.ifname("m"));
        assertTrue(stats.contains("RX:"), stats);
    }

    @Test
    void shouldHoldTheMaximumBandwidthWithinFivePercent() {
        VSwitch sw = new VSwitch("bw", SwitchType.PRIVATE);
        long limit = 80_000_000;
        tapPort(sw, "a", PortKind.VNIC, PortConfig.vnic(mac(1)).withLimits(0, limit, 1, 64), "10.78.0.1/24", true);
        setMac(net, "a", mac(1));
        tapPort(sw, "b", PortKind.VNIC, PortConfig.vnic(mac(2)), "10.78.0.2/24", true);
        setMac(net, "b", mac(2));
        start(sw);
        assertTrue(Netns.ping(ns(net, "a"), "10.78.0.2", 2));
        String tcp = Netns.iperf(ns(net, "b"), "10.78.0.2", ns(net, "a"), 3, "-O", "1");
        double bps = Netns.json(tcp, "sum_received", "bits_per_second");
        assertTrue(Math.abs(bps - limit) <= 0.05 * limit, "limited to " + limit + " but measured " + bps);
    }

    @Test
    void shouldIsolateVlansAndCarryThemTaggedOverATrunkBetweenTwoExternalSwitches() {
        String t1 = net.ifname("t1");
        String t2 = net.ifname("t2");
        net.veth(t1, t2);
        Netns.must("ip", "link", "set", t1, "up");
        Netns.must("ip", "link", "set", t2, "up");
        VSwitch sw1 = new VSwitch("ext1", SwitchType.EXTERNAL);
        VSwitch sw2 = new VSwitch("ext2", SwitchType.EXTERNAL);
        PacketSocketPort u1 = PacketSocketPort.open(t1);
        devices.add(u1);
        PacketSocketPort u2 = PacketSocketPort.open(t2);
        devices.add(u2);
        Port up1 = sw1.addPort("uplink", PortKind.UPLINK, PortConfig.uplink().withTrunk(0, 10, 20), u1, u1);
        sw2.addPort("uplink", PortKind.UPLINK, PortConfig.uplink().withTrunk(0, 10, 20), u2, u2);
        tapPort(sw1, "a", PortKind.VNIC, PortConfig.vnic(mac(1)).withAccessVlan(10), "10.79.0.1/24", false);
        setMac(net, "a", mac(1));
        tapPort(sw2, "b", PortKind.VNIC, PortConfig.vnic(mac(2)).withAccessVlan(10), "10.79.0.2/24", false);
        setMac(net, "b", mac(2));
        Port c = tapPort(sw2, "c", PortKind.VNIC, PortConfig.vnic(mac(3)).withAccessVlan(20), "10.79.0.3/24", false);
        setMac(net, "c", mac(3));
        start(sw1);
        start(sw2);

        assertTrue(Netns.ping(ns(net, "a"), "10.79.0.2", 3), "VLAN 10 across the trunk");
        assertFalse(Netns.ping(ns(net, "a"), "10.79.0.3", 2), "VLAN 10 must not reach VLAN 20");
        assertTrue(up1.counters().txPackets() >= 3);
        assertEquals(0, c.counters().rxPackets() - c.counters().rxPackets()); // c may send ARP, never receives 10
        String tcp = Netns.iperf(ns(net, "b"), "10.79.0.2", ns(net, "a"), 2);
        assertTrue(Netns.json(tcp, "sum_received", "bits_per_second") > 10e6, tcp);
    }

    @Test
    void shouldBridgeANamespaceBehindAVethUplinkOnAnExternalSwitch() {
        String sw0 = net.ifname("u0");
        String peer = net.ifname("u1");
        net.veth(sw0, peer);
        Netns.must("ip", "link", "set", sw0, "up");
        String lan = net.ns("lan");
        net.place(peer, lan, "10.80.0.9/24");
        VSwitch sw = new VSwitch("ext", SwitchType.EXTERNAL);
        PacketSocketPort uplink = PacketSocketPort.open(sw0);
        devices.add(uplink);
        Port up = sw.addPort("uplink", PortKind.UPLINK, PortConfig.uplink(), uplink, uplink);
        tapPort(sw, "a", PortKind.VNIC, PortConfig.vnic(mac(1)), "10.80.0.1/24", true);
        setMac(net, "a", mac(1));
        start(sw);
        assertTrue(Netns.ping(ns(net, "a"), "10.80.0.9", 3), "vNIC -> LAN host through AF_PACKET");
        String tcp = Netns.iperf(lan, "10.80.0.9", ns(net, "a"), 2);
        assertTrue(Netns.json(tcp, "sum_received", "bits_per_second") > 50e6, tcp);
        String back = Netns.iperf(ns(net, "a"), "10.80.0.1", lan, 2);
        assertTrue(Netns.json(back, "sum_received", "bits_per_second") > 50e6, back);
        assertEquals(0, up.counters().drops(DropReason.LOOP));
    }
}
