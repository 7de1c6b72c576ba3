package io.phost.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.sys.TapDevice;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.vswitch.DropReason;
import io.phost.vswitch.EthernetDescriptor;
import io.phost.vswitch.PacketSocketPort;
import io.phost.vswitch.Port;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.PortKind;
import io.phost.vswitch.SwitchAgent;
import io.phost.vswitch.SwitchType;
import io.phost.vswitch.TapPort;
import io.phost.vswitch.VSwitch;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The paths a user takes first: a partition's synthetic NIC talking to the management OS over an internal
 * switch, and to a LAN over an external switch, both ways, with the kernel's default offloads on the far side.
 * The host and a veth hand the switch CHECKSUM_PARTIAL and 64 KiB GSO frames (virtio-net header NEEDS_CSUM,
 * gso_type TCPV4); a synthetic NIC takes neither, so the switch must complete the checksum and segment.
 * <pre>
 *   internal:  ns phh* [TAP, offloads on, "management OS"] ── HOST port ── switch ── NetVsp ══ VMBus ══ ns php*
 *   external:  ns phl* [veth, default offloads] ── veth ── AF_PACKET uplink ── switch ── NetVsp ══ ns php*
 * </pre>
 * Recipe by hand: {@code ip netns exec phh1 iperf3 -c 10.83.0.1} against {@code iperf3 -s} in the partition.
 * Before software completion every TCP SYN from the host side was dropped as OFFLOAD_UNSUPPORTED.
 * <p>The {@code ...WithOffloads} cases open the NIC as {@code phost guest net} does (per-frame virtio_net_hdr on
 * VMBus, TAP with IFF_VNET_HDR + TUNSETOFFLOAD): the same traffic then crosses as 64 KiB super-frames and the
 * switch segments nothing for the partition. Before the header existed every frame to a partition was cut to
 * 1,500 bytes in software (0.49 Gbit/s host → partition).
 */
class PartitionUplinkTrafficTest {
    private static final long MEM = 32L << 20;
    /** A dropped SYN must fail the test in seconds, not after TCP's two-minute connect timeout. */
    private static final String CONNECT_TIMEOUT = "--connect-timeout=4000";
    private static final long PARTITION_MAC = 0x02_71_00_00_00_01L;
    private Path dir;
    private PartitionHost host;
    private AgentRunner switchRunner;
    private SwitchAgent agent;
    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private final List<String> namespaces = new ArrayList<>();
    private final List<String> links = new ArrayList<>();
    private final List<TapBridge> bridges = new ArrayList<>();
    private final String tag = Long.toString(ProcessHandle.current().pid() % 100000);

    @BeforeEach
    void setUp() throws Exception {
        Assumptions.assumeTrue(new java.io.File("/dev/net/tun").canWrite() && ProcessHandle.current().info().user()
            .map("root"::equals).orElse(false), "needs root and /dev/net/tun for namespaces and TAPs");
        assertEquals(0, SyntheticNicTrafficTest.run(5, "iperf3", "--version"), "iperf3 is missing (apt-get install iperf3)");
        assertEquals(0, SyntheticNicTrafficTest.run(5, "ethtool", "--version"), "ethtool is missing (apt-get install ethtool)");
        dir = Files.createTempDirectory("phost-uplink");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults());
    }

    private void startSwitch(SwitchType type) {
        agent = new SwitchAgent(new VSwitch("sw", type));
        switchRunner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(switchRunner);
    }

    @AfterEach
    void tearDown() throws Exception {
        if (switchRunner != null) {
            switchRunner.close(); // first: the switch thread reads the uplink's ring, which close() unmaps
        }
        for (AutoCloseable c : cleanup.reversed()) {
            try {
                c.close();
            } catch (Exception e) {
                // keep cleaning
            }
        }
        if (host != null) {
            host.close();
        }
        for (String l : links) {
            SyntheticNicTrafficTest.run(5, "ip", "link", "del", l);
        }
        for (String ns : namespaces) {
            SyntheticNicTrafficTest.run(5, "ip", "netns", "del", ns);
        }
        if (dir != null) {
            try (var s = Files.walk(dir)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    private String ns(String base) {
        String ns = base + tag;
        SyntheticNicTrafficTest.run(5, "ip", "netns", "del", ns);
        SyntheticNicTrafficTest.must("ip", "netns", "add", ns);
        namespaces.add(ns);
        SyntheticNicTrafficTest.must("ip", "-n", ns, "link", "set", "lo", "up");
        return ns;
    }

    /** One partition with a synthetic NIC whose guest bridges to a TAP in its own namespace; returns the vNIC. */
    private NetVsp partition(String cidr) throws Exception {
        return partition(cidr, false);
    }

    private NetVsp partition(String cidr, boolean offloads) throws Exception {
        return partition(cidr, offloads, PortConfig.vnic(PARTITION_MAC));
    }

    private NetVsp partition(String cidr, boolean offloads, PortConfig config) throws Exception {
        NetVsp vsp = new NetVsp("p", "eth0", config, 1500, agent);
        Partition p = host.create(PartitionSpec.external("p", 1, MEM));
        p.offer(vsp);
        p.start();
        GuestRam ram = GuestRam.create("uplink-p" + tag, MEM);
        cleanup.add(ram);
        VmbusClient client = VmbusClient.attach(host.socketPath(), "p", HexFormat.of().parseHex(p.credentialHex()), ram);
        cleanup.add(client);
        NetVsc vsc = TapBridge.openNic(client, 0, offloads, Duration.ofSeconds(10));
        assertEquals(offloads, vsc.offloadHeader());
        TapDevice tap = TapDevice.open("php" + tag, offloads, offloads ? TapBridge.TAP_OFFLOADS : 0);
        cleanup.add(tap);
        TapBridge bridge = new TapBridge(vsc, tap);
        bridges.add(bridge);
        Thread t = Thread.ofPlatform().name("guest-net-p").daemon().start(bridge);
        cleanup.add(() -> {
            bridge.close();
            t.join(2000);
        });
        String ns = ns("php");
        SyntheticNicTrafficTest.must("ip", "link", "set", tap.name(), "netns", ns);
        SyntheticNicTrafficTest.must("ip", "-n", ns, "link", "set", tap.name(), "address", EthernetDescriptor.formatMac(vsc.mac()));
        SyntheticNicTrafficTest.must("ip", "-n", ns, "link", "set", tap.name(), "mtu", Integer.toString(vsc.mtu()));
        SyntheticNicTrafficTest.must("ip", "-n", ns, "addr", "add", cidr, "dev", tap.name());
        SyntheticNicTrafficTest.must("ip", "-n", ns, "link", "set", tap.name(), "up");
        return vsp;
    }

    @Test
    void shouldCarryPingTcpAndUdpBothWaysBetweenAPartitionAndTheHostOverAnInternalSwitch() throws Exception {
        internal(false);
    }

    @Test
    void shouldCarryHostTrafficToAPartitionUnsegmentedWithOffloads() throws Exception {
        internal(true);
    }

    @Test
    void shouldCarryLanTrafficToAPartitionUnsegmentedWithOffloads() throws Exception {
        external(false, true);
    }

    /**
     * Defect 6: max_bandwidth capped only what a partition sends. {@code max_bandwidth_in} (PortConfig
     * maxBandwidthToPortBps) polices what the switch sends to it: host → partition TCP settles under the cap,
     * the excess is counted as BANDWIDTH, and the other direction is not capped.
     */
    @Test
    void shouldCapTrafficTowardsAPartitionAtItsIngressCap() throws Exception {
        String hostNs = hostTap();
        long cap = 40_000_000;
        NetVsp nic = partition("10.83.0.1/24", true, PortConfig.vnic(PARTITION_MAC).withMaxBandwidthToPort(cap));
        String php = "php" + tag;
        double in = SyntheticNicTrafficTest.number(
            SyntheticNicTrafficTest.iperf(php, "10.83.0.1", hostNs, 4, "-O", "1", CONNECT_TIMEOUT), "sum_received", "bits_per_second");
        double out = SyntheticNicTrafficTest.number(
            SyntheticNicTrafficTest.iperf(hostNs, "10.83.0.100", php, 2, CONNECT_TIMEOUT), "sum_received", "bits_per_second");
        Port port = nic.port();
        System.out.printf("ingress cap %d Mbit/s: host -> partition %.1f Mbit/s, partition -> host %.1f Mbit/s; %s%n",
            cap / 1_000_000, in / 1e6, out / 1e6, port.counters().snapshot());
        assertTrue(in <= cap * 1.15, "towards the partition: " + in / 1e6 + " Mbit/s over a 40 Mbit/s cap");
        assertTrue(in >= cap * 0.25, "towards the partition: " + in / 1e6 + " Mbit/s, far under the cap");
        assertTrue(port.counters().drops(DropReason.BANDWIDTH) > 0, port.counters().snapshot().toString());
        assertTrue(out > cap * 1.5, "from the partition is not capped: " + out / 1e6 + " Mbit/s");
    }

    private String hostTap() throws Exception {
        startSwitch(SwitchType.INTERNAL);
        TapPort hostTap = TapPort.open("phh" + tag, true);
        cleanup.add(hostTap);
        agent.submit(s -> s.addPort("host", PortKind.HOST, PortConfig.uplink(), hostTap, hostTap)).join();
        String hostNs = ns("phh");
        SyntheticNicTrafficTest.must("ip", "link", "set", hostTap.name(), "netns", hostNs);
        SyntheticNicTrafficTest.must("ip", "-n", hostNs, "addr", "add", "10.83.0.100/24", "dev", hostTap.name());
        SyntheticNicTrafficTest.must("ip", "-n", hostNs, "link", "set", hostTap.name(), "up");
        return hostNs;
    }

    private void internal(boolean offloads) throws Exception {
        startSwitch(SwitchType.INTERNAL);
        TapPort hostTap = TapPort.open("phh" + tag, true);
        cleanup.add(hostTap);
        agent.submit(s -> s.addPort("host", PortKind.HOST, PortConfig.uplink(), hostTap, hostTap)).join();
        String hostNs = ns("phh");
        SyntheticNicTrafficTest.must("ip", "link", "set", hostTap.name(), "netns", hostNs);
        SyntheticNicTrafficTest.must("ip", "-n", hostNs, "addr", "add", "10.83.0.100/24", "dev", hostTap.name());
        SyntheticNicTrafficTest.must("ip", "-n", hostNs, "link", "set", hostTap.name(), "up");
        NetVsp nic = partition("10.83.0.1/24", offloads);
        bothWays(nic, hostNs, "10.83.0.100", "10.83.0.1", offloads);
    }

    @Test
    void shouldCarryPingTcpAndUdpBothWaysBetweenAPartitionAndALanOverAnExternalSwitch() throws Exception {
        external(false, false);
    }

    @Test
    void shouldCarryPingTcpAndUdpBothWaysOverAnExternalSwitchWhoseUplinkHasGroOn() throws Exception {
        external(true, false);
    }

    private void external(boolean gro, boolean offloads) throws Exception {
        startSwitch(SwitchType.EXTERNAL);
        String uplink = "phu" + tag;
        String lanEnd = "phl" + tag;
        SyntheticNicTrafficTest.run(5, "ip", "link", "del", uplink);
        SyntheticNicTrafficTest.must("ip", "link", "add", uplink, "type", "veth", "peer", "name", lanEnd);
        links.add(uplink);
        SyntheticNicTrafficTest.must("ip", "link", "set", uplink, "up");
        if (gro) {
            SyntheticNicTrafficTest.must("ethtool", "-K", uplink, "gro", "on");
        }
        PacketSocketPort up = PacketSocketPort.open(uplink);
        cleanup.add(up);
        agent.submit(s -> s.addPort("uplink", PortKind.UPLINK, PortConfig.uplink(), up, up)).join();
        String lan = ns("phl");
        SyntheticNicTrafficTest.must("ip", "link", "set", lanEnd, "netns", lan);
        SyntheticNicTrafficTest.must("ip", "-n", lan, "addr", "add", "10.84.0.100/24", "dev", lanEnd);
        SyntheticNicTrafficTest.must("ip", "-n", lan, "link", "set", lanEnd, "up");
        String features = SyntheticNicTrafficTest.output("ip", "netns", "exec", lan, "ethtool", "-k", lanEnd);
        assertTrue(features.contains("tx-checksumming: on"), "the LAN end keeps its default tx offloads: " + features);
        NetVsp nic = partition("10.84.0.1/24", offloads);
        bothWays(nic, lan, "10.84.0.100", "10.84.0.1", offloads);
    }

    /** An iperf3 UDP run's lost datagrams, and how many of them the receiver's full socket buffer dropped. */
    record UdpLoss(double packets, double lost, long socketDrops) {
        /** Lost on the way (switch, VMBus, TAPs), not by a receiver that got no CPU in time: percent of those sent. */
        double pathPercent() {
            return packets == 0 ? 100 : 100 * Math.max(0, lost - socketDrops) / packets;
        }

        @Override
        public String toString() {
            return String.format("%.0f of %.0f lost (%d by the receiving socket's full buffer; path %.2f%%)",
                lost, packets, socketDrops, pathPercent());
        }
    }

    /**
     * 1 s of 20 Mbit/s UDP to an iperf3 server at {@code serverIp} in {@code serverNs}. On a machine at load ~30 the
     * server can go without a CPU for longer than its socket buffer lasts (208 KiB: ~80 ms at 20 Mbit/s), and the
     * kernel drops there, after the path (a run lost 39.8% that way); those drops are the namespace's UDP
     * RcvbufErrors (/proc/net/snmp is per namespace) and are told apart, so the assertion is on the path alone.
     */
    private static UdpLoss udpLoss(String serverNs, String serverIp, String clientNs) throws Exception {
        long before = udpRcvbufErrors(serverNs);
        String json = SyntheticNicTrafficTest.iperf(serverNs, serverIp, clientNs, 1, "-u", "-b", "20M", "-l", "1400",
            CONNECT_TIMEOUT);
        long socketDrops = udpRcvbufErrors(serverNs) - before;
        return new UdpLoss(SyntheticNicTrafficTest.number(json, "sum", "packets"),
            SyntheticNicTrafficTest.number(json, "sum", "lost_packets"), socketDrops);
    }

    private static long udpRcvbufErrors(String ns) throws Exception {
        List<String> udp = SyntheticNicTrafficTest.output("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").lines()
            .filter(l -> l.startsWith("Udp:")).toList();
        List<String> names = List.of(udp.get(0).split("\\s+"));
        return Long.parseLong(udp.get(1).split("\\s+")[names.indexOf("RcvbufErrors")]);
    }

    private void bothWays(NetVsp nic, String farNs, String farIp, String partitionIp, boolean offloads)
        throws Exception {
        String php = "php" + tag;
        assertEquals(0, SyntheticNicTrafficTest.run(15, "ip", "netns", "exec", farNs, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            partitionIp), "ping far side -> partition");
        assertEquals(0, SyntheticNicTrafficTest.run(15, "ip", "netns", "exec", php, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            farIp), "ping partition -> far side");
        Port port = nic.port();
        // 2 s measured after 1 s left out (-O 1): at load ~30 one lost early segment costs TCP a 1 s retransmission
        // timeout, which made a 2 s run with no omit measure 4.9 Mbit/s once (the GRO run beside it 51 Mbit/s).
        double toPartition = SyntheticNicTrafficTest.number(
            SyntheticNicTrafficTest.iperf(php, partitionIp, farNs, 3, "-O", "1", CONNECT_TIMEOUT), "sum_received", "bits_per_second");
        double fromPartition = SyntheticNicTrafficTest.number(
            SyntheticNicTrafficTest.iperf(farNs, farIp, php, 3, "-O", "1", CONNECT_TIMEOUT), "sum_received", "bits_per_second");
        UdpLoss in = udpLoss(php, partitionIp, farNs);
        UdpLoss out = udpLoss(farNs, farIp, php);
        System.out.printf("partition <-> %s: TCP in %.1f Mbit/s, out %.1f Mbit/s; UDP in %s, out %s; %s;"
            + " TAP write errors %d%n", farNs, toPartition / 1e6, fromPartition / 1e6, in, out,
            port.counters().snapshot(), bridges.getFirst().tapWriteErrors());
        assertTrue(toPartition > 5e6, "TCP far side -> partition: " + toPartition + " " + port.counters().snapshot());
        assertTrue(fromPartition > 5e6, "TCP partition -> far side: " + fromPartition + " " + port.counters().snapshot());
        assertTrue(in.pathPercent() < 25 && out.pathPercent() < 25, "UDP lost on the path in " + in + ", out " + out);
        assertEquals(0, port.counters().drops(DropReason.OFFLOAD_UNSUPPORTED), port.counters().snapshot().toString());
        if (!offloads) {
            assertTrue(port.counters().softwareOffloadFrames() > 1000,
                "the far side's TSO/partial-checksum frames were finished by the switch: " + port.counters().snapshot());
            return;
        }
        assertEquals(io.phost.vswitch.FrameSink.OFFLOAD_TAP, nic.guestOffloads(), "the guest's NDIS_CONFIG caps reached the port");
        assertEquals(0, port.counters().softwareOffloadFrames(),
            "nothing to the partition was segmented or checksummed in software: " + port.counters().snapshot());
        double bytesPerFrame = (double) port.counters().txBytes() / port.counters().txPackets();
        assertTrue(bytesPerFrame > 4000, "super-frames reached the partition whole: " + bytesPerFrame + " B/frame "
            + port.counters().snapshot());
        double bytesPerFrameIn = (double) port.counters().rxBytes() / port.counters().rxPackets();
        System.out.printf("with offloads: %.0f B/frame to the partition, %.0f B/frame from it%n", bytesPerFrame,
            bytesPerFrameIn);
        for (NvspReason r : NvspReason.values()) {
            // INGRESS_FULL: the partition outran the switch thread on this loaded 2-vCPU machine (TCP recovers).
            if (r != NvspReason.INGRESS_FULL) {
                assertEquals(0, nic.drops(r), r.name());
            }
        }
    }
}
