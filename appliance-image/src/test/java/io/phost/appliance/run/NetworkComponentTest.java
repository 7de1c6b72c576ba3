package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ConfigException;
import io.phost.appliance.config.ConfigLoader;

import io.phost.appliance.config.NicConfig;
import io.phost.vswitch.MirrorMode;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.VlanMode;
import java.util.List;
import org.junit.jupiter.api.Test;

/** appliance.toml NIC keys reach the switch port's policy (before: mirroring, storm and MAC limits were Java-only). */
class NetworkComponentTest {
    /**
     * Issue 12: {@code host_address} puts the address on the internal switch's host TAP and brings it up, and the
     * address goes with the TAP; one that cannot be set fails the start naming the switch (a config is loud).
     */
    @Test
    void shouldGiveTheHostTapItsHostAddressAndFailLoudlyWhenItCannot() throws Exception {
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> NetworkComponent.addHostAddress("lan", "phnosuchtap0", "10.91.157.1/24"));
        assertTrue(e.getMessage().startsWith("switch lan: host_address 10.91.157.1/24 on phnosuchtap0: `ip addr add"),
            e.getMessage());
        org.junit.jupiter.api.Assumptions.assumeTrue(Privileges.current().root()
            && java.nio.file.Files.exists(java.nio.file.Path.of("/dev/net/tun")), "a host TAP needs root");
        String name = "ha" + ProcessHandle.current().pid() % 100000;
        var cfg = ConfigLoader.parse("t.toml", """
            [host]
            data_dir = "/tmp/phost-host-address-test"
            [[switch]]
            name = "%s"
            type = "internal"
            host_address = "10.91.157.1/24"
            """.formatted(name));
        String tap;
        try (NetworkComponent c = NetworkComponent.start(cfg)) {
            tap = c.switchNamed(name).hostTap();
            String addr = ip("-o", "addr", "show", "dev", tap);
            assertTrue(addr.contains("inet 10.91.157.1/24"), addr);
            assertTrue(ip("-o", "link", "show", "dev", tap).contains(",UP"), "brought up");
            assertTrue(c.status().toString().contains("host_address=10.91.157.1/24"), c.status().toString());
        }
        assertTrue(!ip("-o", "addr", "show").contains("10.91.157.1/24"), "gone with the TAP");
    }

    private static String ip(String... args) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(List.of("ip"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        p.waitFor();
        return out;
    }

    @Test
    void shouldCarryMirroringStormLimitAndMacLimitIntoThePortConfig() {
        NicConfig n = new NicConfig("s", "02:50:48:00:00:07", 10, List.of(), null, true, true, false, 1000, 5, 0, 0,
            9000, NicConfig.Mirroring.SOURCE, 2500, 16);
        PortConfig c = NetworkComponent.portConfig(n);
        assertEquals(MirrorMode.SOURCE, c.mirror());
        assertEquals(2500, c.stormLimitPps());
        assertEquals(16, c.maxMacAddresses());
        assertEquals(8000, c.maxBandwidthBps());
        assertEquals(5, c.minBandwidthWeight());
        assertEquals(VlanMode.ACCESS, c.vlanMode());
        assertEquals(10, c.accessVlan());
        assertEquals(0x02_50_48_00_00_07L, c.mac());
    }

    private static final String NIC = """
        [host]
        data_dir = "/srv/phost"
        [[switch]]
        name = "s"
        type = "private"
        [[partition]]
        name = "p"
        [[partition.nic]]
        switch = "s"
        """;

    /** acl, ip_addresses and max_bandwidth_in reach the port; a bad rule is refused with its position. */
    @Test
    void shouldCarryAclsIpGuardAndIngressCapIntoThePortAndRefuseABadRule() throws Exception {
        NicConfig n = ConfigLoader.parse("nic.toml", NIC + """
            acl = ["deny both 10.0.0.0/8", "allow inbound 02:50:48:00:00:09", "allow outbound any tcp:443 stateful"]
            ip_addresses = ["10.1.2.3", "fd00:10::5"]
            max_bandwidth_in = "1MB/s"
            """).partitions().getFirst().nics().getFirst();
        PortConfig c = NetworkComponent.portConfig(n);
        assertEquals("[deny both 10.0.0.0/8, allow inbound 02:50:48:00:00:09, allow outbound any tcp:443 stateful]", java.util.Arrays.toString(c.acls()));
        assertEquals(0x0a_01_02_03, c.ipAddresses()[0]);
        assertEquals(1, c.ipAddresses().length);
        assertArrayEquals(new long[] {0xfd00_0010_0000_0000L, 5}, c.ipv6Addresses());
        assertEquals(8_000_000, c.maxBandwidthToPortBps());
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigLoader.parse("bad.toml", NIC + """
            acl = ["deny sideways 10.0.0.0/8", "deny outbound any tcp stateful"]
            ip_addresses = ["10.1.2", "ff02::1", "fd00::1::2"]
            """));
        assertTrue(e.getMessage().contains("bad.toml:10:") && e.getMessage().contains("'sideways' is not inbound")
            && e.getMessage().contains("stateful needs an allow rule for tcp or udp"),
            e.getMessage());
        assertTrue(e.getMessage().contains("bad.toml:11:") && e.getMessage().contains("'10.1.2' is not a unicast IPv4"),
            e.getMessage());
        assertTrue(e.getMessage().contains("'ff02::1' is not a unicast IPv4 address (a.b.c.d), a unicast IPv6 address (fd00::5), \"dhcp\" nor \"dhcp6\"")
            && e.getMessage().contains("'fd00::1::2' is not"), e.getMessage());
    }
}
