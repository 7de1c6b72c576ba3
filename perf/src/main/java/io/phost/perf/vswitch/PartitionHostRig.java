package io.phost.perf.vswitch;

import static io.phost.perf.vswitch.SwitchBenchSuite.must;
import static io.phost.perf.vswitch.SwitchBenchSuite.run;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.sys.TapDevice;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.network.NetVsc;
import io.phost.network.NetVsp;
import io.phost.network.TapBridge;
import io.phost.vswitch.EthernetDescriptor;
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

/**
 * The partition ↔ host path of {@code phost bench switch}: an internal switch whose management-OS TAP (offloads
 * on, as the host has it) sits in namespace {@code phbh*}, and one partition whose synthetic NIC (NetVsp ⇄ VMBus
 * rings ⇄ NetVsc, in this process as an external partition) is bridged to a TAP in namespace {@code phbp*}.
 * Host → partition traffic arrives as TSO/partial-checksum frames; the NIC is opened as {@code phost guest net}
 * opens it (per-frame virtio_net_hdr on VMBus, TAP with IFF_VNET_HDR + TUNSETOFFLOAD), so they cross whole.
 * With {@code lan}, the switch is external instead: its uplink is an AF_PACKET socket on a veth whose far end (default
 * offloads on: partial checksums and GSO towards the switch) sits in the "LAN" namespace, at the same address.
 */
final class PartitionHostRig implements AutoCloseable {
    private static final long MEM = 32L << 20;
    static final String HOST_IP = "10.92.0.100";
    static final String PARTITION_IP = "10.92.0.1";
    final String hostNs;
    final String partitionNs;
    private final List<AutoCloseable> cleanup = new ArrayList<>();
    private final Path dir;
    private final PartitionHost host;
    private final AgentRunner runner;

    PartitionHostRig(String tag) throws Exception {
        this(tag, false);
    }

    PartitionHostRig(String tag, boolean lan) throws Exception {
        hostNs = "phbh" + tag;
        partitionNs = "phbp" + tag;
        dir = Files.createTempDirectory("phost-bench-net");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults());
        SwitchAgent agent = new SwitchAgent(new VSwitch(lan ? "bench-external" : "bench-internal",
            lan ? SwitchType.EXTERNAL : SwitchType.INTERNAL));
        runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);
        try {
            if (lan) {
                String uplink = "phbu" + tag;
                run(5, "ip", "link", "del", uplink);
                must("ip", "link", "add", uplink, "type", "veth", "peer", "name", "phbl" + tag);
                cleanup.add(() -> run(5, "ip", "link", "del", uplink));
                must("ip", "link", "set", uplink, "up");
                io.phost.vswitch.PacketSocketPort up = io.phost.vswitch.PacketSocketPort.open(uplink);
                cleanup.add(up);
                agent.submit(s -> s.addPort("uplink", PortKind.UPLINK, PortConfig.uplink(), up, up)).join();
                namespace(hostNs, "phbl" + tag, HOST_IP + "/24", null);
            } else {
                TapPort hostTap = TapPort.open("phbht" + tag, true);
                cleanup.add(hostTap);
                agent.submit(s -> s.addPort("host", PortKind.HOST, PortConfig.uplink(), hostTap, hostTap)).join();
                namespace(hostNs, hostTap.name(), HOST_IP + "/24", null);
            }
            long mac = 0x02_62_00_00_00_01L;
            NetVsp vsp = new NetVsp("bench", "eth0", PortConfig.vnic(mac), 1500, agent);
            Partition p = host.create(PartitionSpec.external("bench", 1, MEM));
            p.offer(vsp);
            p.start();
            GuestRam ram = GuestRam.create("bench-net" + tag, MEM);
            cleanup.add(ram);
            VmbusClient client = VmbusClient.attach(host.socketPath(), "bench", HexFormat.of().parseHex(p.credentialHex()), ram);
            cleanup.add(client);
            NetVsc vsc = TapBridge.openNic(client, 0, true, Duration.ofSeconds(10));
            TapDevice tap = TapDevice.open("phbpt" + tag, true, TapBridge.TAP_OFFLOADS);
            cleanup.add(tap);
            TapBridge bridge = new TapBridge(vsc, tap);
            Thread t = Thread.ofPlatform().name("guest-net-bench").daemon().start(bridge);
            cleanup.add(() -> {
                bridge.close();
                t.join(2000);
            });
            namespace(partitionNs, tap.name(), PARTITION_IP + "/24", EthernetDescriptor.formatMac(vsc.mac()));
        } catch (Exception | Error e) {
            close();
            throw e;
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

    @Override
    public void close() {
        runner.close(); // first: the switch thread reads the TAPs closed below
        for (AutoCloseable c : cleanup.reversed()) {
            try {
                c.close();
            } catch (Exception e) {
                // keep cleaning
            }
        }
        host.close();
        run(5, "ip", "netns", "del", hostNs);
        run(5, "ip", "netns", "del", partitionNs);
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (Exception e) {
            // a temp dir left behind is harmless
        }
    }
}
