package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.agrona.concurrent.AgentRunner;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link TapReceive}: the sysfs settings land on the TAP phost opens, and TCP between two namespaces through two TAP
 * ports arrives intact and in order (size and SHA of seeded data, busybox nc), GSO offloads on, in every mode.
 */
class TapReceiveTest {
    private Netns net;
    private final List<AgentRunner> runners = new ArrayList<>();
    private final List<AutoCloseable> devices = new ArrayList<>();

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

    @Test
    void shouldParseTheConfigNamesAndRefuseOthersNamingTheValue() {
        for (TapReceive r : TapReceive.values()) {
            assertEquals(r, TapReceive.parse(r.configName()));
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TapReceive.parse("napi"));
        assertTrue(e.getMessage().contains("\"napi\""), e.getMessage());
    }

    @Test
    void shouldMaskEveryCpuIn32BitGroups() {
        assertEquals("1", TapReceive.cpusMask(1));
        assertEquals("3", TapReceive.cpusMask(2));
        assertEquals("ffffffff", TapReceive.cpusMask(32));
        assertEquals("1,ffffffff", TapReceive.cpusMask(33));
        assertEquals("ffffffff,ffffffff", TapReceive.cpusMask(64));
    }

    @ParameterizedTest
    @EnumSource(TapReceive.class)
    void shouldApplyTheModeAndCarryVerifiedTcpBothWays(TapReceive mode) throws Exception {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun and iperf3");
        net = new Netns();
        VSwitch sw = new VSwitch("rx", SwitchType.PRIVATE);
        TapPort a = TapPort.open(net.ifname("ra"), true, mode);
        devices.add(a);
        TapPort b = TapPort.open(net.ifname("rb"), true, mode);
        devices.add(b);
        if (mode == TapReceive.RFS) {
            assertEquals(Integer.toString(TapReceive.RFS_FLOWS),
                Files.readString(Path.of("/sys/class/net", b.name(), "queues/rx-0/rps_flow_cnt")).trim(), "rps_flow_cnt of " + b.name());
        }
        if (mode == TapReceive.RPS || mode == TapReceive.RFS) {
            String mask = Files.readString(Path.of("/sys/class/net", b.name(), "queues/rx-0/rps_cpus")).trim();
            assertEquals(Long.parseLong(TapReceive.allCpusMask().replace(",", ""), 16),
                Long.parseLong(mask.replace(",", ""), 16), "rps_cpus of " + b.name());
        }
        if (mode == TapReceive.NAPI_THREAD) {
            assertEquals("1", Files.readString(Path.of("/sys/class/net", b.name(), "threaded")).trim(), "threaded of " + b.name());
        }
        Port pa = sw.addPort("ra", PortKind.VNIC, PortConfig.vnic(0x02_51_00_00_00_01L), a, a);
        Port pb = sw.addPort("rb", PortKind.VNIC, PortConfig.vnic(0x02_51_00_00_00_02L), b, b);
        String nsA = net.ns("ra");
        String nsB = net.ns("rb");
        place(a, nsA, "02:51:00:00:00:01", "10.93.0.1/24");
        place(b, nsB, "02:51:00:00:00:02", "10.93.0.2/24");
        SwitchAgent agent = new SwitchAgent(sw);
        AgentRunner runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);
        runners.add(runner);
        assertTrue(Netns.ping(nsA, "10.93.0.2", 3), "ping a -> b through " + mode);
        System.out.println(mode + " a->b: " + Netns.assertVerifiedTcp(nsB, "10.93.0.2", nsA, 2 << 20, 60));
        System.out.println(mode + " b->a: " + Netns.assertVerifiedTcp(nsA, "10.93.0.1", nsB, 2 << 20, 60));
        assertTrue(pa.counters().rxPackets() > 0 && pb.counters().rxPackets() > 0, "frames both ways");
    }

    private static void place(TapPort tap, String ns, String mac, String cidr) {
        Netns.must("ip", "link", "set", tap.name(), "netns", ns);
        Netns.must("ip", "-n", ns, "link", "set", tap.name(), "address", mac);
        Netns.must("ip", "-n", ns, "addr", "add", cidr, "dev", tap.name());
        Netns.must("ip", "-n", ns, "link", "set", tap.name(), "up");
    }
}
