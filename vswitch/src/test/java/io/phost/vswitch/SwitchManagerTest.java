package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The appliance-facing API: several switches, their devices, VMQ on real TAP ports, counters and metrics. */
class SwitchManagerTest {
    @Test
    void shouldRunSeveralSwitchesWithTheirDevicesAndReportCounters() throws Exception {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun");
        try (Netns net = new Netns(); SwitchManager mgr = new SwitchManager()) {
            String uplink = net.ifname("mu");
            net.veth(uplink, net.ifname("mv"));
            Netns.must("ip", "link", "set", uplink, "up");
            String hostTap = net.ifname("mh");
            ManagedSwitch internal = mgr.create(SwitchSpec.internal("lab", hostTap));
            ManagedSwitch external = mgr.create(new SwitchSpec("wan", SwitchType.EXTERNAL, uplink, false, true,
                BandwidthMode.WEIGHT, 0, null, null));
            ManagedSwitch priv = mgr.create(new SwitchSpec("backend", SwitchType.PRIVATE, null, false, false,
                BandwidthMode.NONE, 2, null, null));
            assertTrue(Netns.run(5, "ip", "link", "show", hostTap).exitCode() == 0, "management-OS TAP exists");
            internal.capUplink(80_000_000); // uplink_bandwidth: the host TAP's capacity, divided by weight
            Port hostPort = internal.vswitch().ports().stream().filter(p -> p.kind() == PortKind.HOST).findFirst().orElseThrow();
            assertEquals(80_000_000, hostPort.config().maxBandwidthToPortBps());
            assertEquals(10_000_000, hostPort.toPort.bytesPerSecond());
            external.capUplink(8_000_000);
            Port up = external.vswitch().ports().stream().filter(p -> p.kind() == PortKind.UPLINK).findFirst().orElseThrow();
            assertEquals(1_000_000, up.toPort.bytesPerSecond());
            assertThrows(IllegalStateException.class, () -> priv.capUplink(8_000_000));
            assertNull(external.sriov());
            assertTrue(external.iovStatus().contains("not an SR-IOV capable device"), external.iovStatus());
            assertThrows(IllegalArgumentException.class, () -> mgr.create(SwitchSpec.privateSwitch("lab")));
            // Absolute mode runs (reservations are weights, PortConfig.absoluteWeight): a port keeps its weight.
            try (ManagedSwitch abs = ManagedSwitch.create(new SwitchSpec("abs", SwitchType.PRIVATE, null, false, false,
                BandwidthMode.ABSOLUTE, 0, null, null))) {
                assertEquals(300, abs.effective(PortConfig.vnic(1).withLimits(0, 0, PortConfig.absoluteWeight(300_000_000), 64))
                    .minBandwidthWeight());
            }

            // Two namespaces on the private switch through VMQ workers (vmq_weight > 0 and = 0).
            Port a = priv.attachTap("a", PortConfig.vnic(0x02_73_00_00_00_01L).withLimits(0, 0, 50, 64), net.ifname("qa"), false);
            priv.attachTap("b", PortConfig.vnic(0x02_73_00_00_00_02L).withOffloadWeights(0, 0), net.ifname("qb"), false);
            assertEquals(1, a.config().minBandwidthWeight(), "bandwidth mode NONE forces weight 1");
            String nsA = net.ns("qa");
            String nsB = net.ns("qb");
            net.place(net.ifname("qa"), nsA, "10.84.0.1/24");
            net.place(net.ifname("qb"), nsB, "10.84.0.2/24");
            Netns.must("ip", "-n", nsA, "link", "set", net.ifname("qa"), "address", "02:73:00:00:00:01");
            Netns.must("ip", "-n", nsB, "link", "set", net.ifname("qb"), "address", "02:73:00:00:00:02");
            assertTrue(Netns.ping(nsA, "10.84.0.2", 3), "ping through VMQ queues");
            assertTrue(a.counters().txPackets() >= 3);
            assertTrue(mgr.counters().get("backend").get("a").get("rx_packets") >= 3);
            String metrics = mgr.metrics();
            assertEquals(0L, mgr.counters().get("wan").get("uplink:" + uplink).get("uplink_rx_drops"),
                "an uplink reports what its socket lost: " + mgr.counters().get("wan"));
            assertTrue(metrics.contains("phost_vswitch_uplink_rx_drops{switch=\"wan\",port=\"uplink:" + uplink + "\"} 0"), metrics);
            assertTrue(metrics.contains("phost_vswitch_rx_packets{switch=\"backend\",port=\"a\"}"), metrics);
            for (DropReason r : DropReason.values()) { // every reason has a series, zero or not
                assertTrue(metrics.contains("phost_vswitch_drop_" + r.name().toLowerCase(java.util.Locale.ROOT)
                    + "{switch=\"backend\",port=\"a\"} "), r + " missing: " + metrics);
            }
            assertEquals(3, mgr.all().size());
            mgr.remove("lab");
            assertTrue(Netns.run(5, "ip", "link", "show", hostTap).exitCode() != 0, "TAP gone with its switch");
            assertEquals(internal.spec().name(), "lab");
        }
    }

    /**
     * Long switch names used to be cut to 15 bytes ({@code internal-1}, {@code internal-2} → {@code phost-internal-})
     * and the second switch failed with EBUSY; a second phost on the machine with the same config failed the same
     * way. Derived names are unique per switch, and a name held by another process falls back to a per-process one.
     */
    @Test
    void shouldGiveEveryHostTapAUniqueNameForLongSwitchNamesAndASecondHost() {
        Assumptions.assumeTrue(Netns.available(), "needs root, ip netns, /dev/net/tun");
        String base = "in" + ProcessHandle.current().pid() % 100000 + "-lab-";
        try (ManagedSwitch one = ManagedSwitch.create(SwitchSpec.internal(base + "1", null));
             ManagedSwitch two = ManagedSwitch.create(SwitchSpec.internal(base + "2", null));
             ManagedSwitch otherHost = ManagedSwitch.create(SwitchSpec.internal(base + "1", null))) {
            java.util.Set<String> names = java.util.Set.of(one.hostTap(), two.hostTap(), otherHost.hostTap());
            assertEquals(3, names.size(), names.toString());
            for (String n : names) {
                assertTrue(n.length() <= 15, n);
                assertEquals(0, Netns.run(5, "ip", "link", "show", n).exitCode(), n + " exists");
            }
            assertEquals(one.spec().hostTapName(), one.hostTap());
            assertEquals(otherHost.spec().hostTapFallbackName(ProcessHandle.current().pid()), otherHost.hostTap());
        }
    }
}
