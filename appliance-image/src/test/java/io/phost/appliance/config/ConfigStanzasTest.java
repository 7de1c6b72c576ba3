package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The tables a partition move hands to the peer and drops here, cut from the text as written. */
class ConfigStanzasTest {
    private static final String TEXT = """
        [host]
        name = "a"
        data_dir = "/var/lib/phost-stanzas-test"

        [[peer]]
        name = "b"
        management = "unix:/run/b.sock"

        # the web server's disk
        [[disk]]
        name = "web-disk"
        format = "rbd"
        [disk.rbd]
        pool = "rbd"
        image = "web"
        cluster_config = "/etc/ceph/ceph.conf"
        [disk.create]
        size = "16MiB"

        [[disk]]
        name = "shared"
        format = "rbd"
        read_only = true
        rbd = { pool = "rbd", image = "shared", cluster_config = "/etc/ceph/ceph.conf" }

        [[switch]]
        name = "lan"
        type = "private"

        [[partition]]
        name = "other"
        memory = "32MiB"
        workload = { kind = "idle" }
        disk = [{ disk = "shared" }]

        [[partition]]
        name = "web"
        memory = "64MiB"
        command = ["/bin/sh", "-c", \"""
        [[partition]]
        name = "not-a-table"
        \"""]
        [[partition.disk]]
        disk = "web-disk"
        [[partition.disk]]
        disk = "shared"
        lun = 1
        [[partition.nic]]
        switch = "lan"
        mac = "02:00:00:00:00:01"
        """;

    @Test
    void shouldCutAPartitionsTableWithItsSubTablesAndItsDisksTables() throws Exception {
        String s = ConfigStanzas.of(TEXT, "web", List.of("web-disk", "shared"));
        assertTrue(s.startsWith("# the web server's disk\n[[disk]]\nname = \"web-disk\""), s);
        assertTrue(s.contains("[disk.create]\nsize = \"16MiB\"\n\n[[disk]]\nname = \"shared\""), s);
        assertTrue(s.contains("mac = \"02:00:00:00:00:01\""), s);
        assertTrue(s.contains("name = \"not-a-table\""), "a multi-line string is part of its table: " + s);
        assertFalse(s.contains("[[switch]]") || s.contains("name = \"other\"") || s.contains("[host]"), s);
        assertEquals(List.of("web-disk", "shared"), List.copyOf(ConfigStanzas.disks(s).keySet()));
        assertEquals(List.of("web"), ConfigStanzas.partitions(s));
        assertEquals(List.of("other", "web"), ConfigStanzas.partitions(TEXT));
        // The cut tables on top of a config without them make a valid config with the same partition.
        String rest = ConfigStanzas.without(TEXT, "web", List.of("web-disk"));
        ApplianceConfig without = ConfigLoader.parse("rest.toml", rest);
        assertTrue(without.partition("web").isEmpty() && without.disk("web-disk").isEmpty(), rest);
        assertTrue(without.partition("other").isPresent() && without.disk("shared").isPresent(), rest);
        ApplianceConfig back = ConfigLoader.parse("back.toml",
            rest + "\n" + ConfigStanzas.without(s, "", List.of("shared")));
        ApplianceConfig original = ConfigLoader.parse("t.toml", TEXT);
        assertEquals(original.partition("web"), back.partition("web"));
        assertEquals(original.disk("web-disk"), back.disk("web-disk"));
    }

    @Test
    void shouldCutTheQosPoliciesItsDisksNameWithoutDroppingThemHere() throws Exception {
        String text = TEXT.replace("format = \"rbd\"\n[disk.rbd]", "format = \"rbd\"\nqos_policy = \"gold\"\n[disk.rbd]")
            + "\n[[qos_policy]]\nname = \"gold\"\nmax_iops = 500\n\n[[qos_policy]]\nname = \"silver\"\nmax_iops = 100\n";
        String s = ConfigStanzas.of(text, "web", List.of("web-disk", "shared"), List.of("gold"));
        assertEquals(List.of("gold"), List.copyOf(ConfigStanzas.policies(s).keySet()));
        assertTrue(ConfigStanzas.policies(s).get("gold").contains("max_iops = 500"), s);
        assertFalse(s.contains("silver"), s);
        // A peer without gold takes it with the disk; one with the same gold keeps its own (the table is cut).
        // (switches are not handed over: the peer has its own lan)
        String peer = "[host]\nname = \"b\"\ndata_dir = \"/var/lib/phost-stanzas-test-b\"\n\n"
            + "[[switch]]\nname = \"lan\"\ntype = \"private\"\n\n";
        ApplianceConfig taken = ConfigLoader.parse("b.toml", peer + s);
        assertEquals(ConfigLoader.parse("a.toml", text).qosPolicy("gold"), taken.qosPolicy("gold"));
        assertEquals("gold", taken.disk("web-disk").orElseThrow().qosPolicy());
        String kept = ConfigStanzas.withoutPolicies(s, List.of("gold"));
        assertTrue(ConfigStanzas.policies(kept).isEmpty() && kept.contains("name = \"web-disk\""), kept);
        ConfigLoader.parse("b2.toml", peer + "[[qos_policy]]\nname = \"gold\"\nmax_iops = 500\n\n" + kept);
    }

    @Test
    void shouldFindNothingForAnUnknownPartition() {
        assertEquals("", ConfigStanzas.of(TEXT, "nope", List.of()));
        assertEquals(TEXT, ConfigStanzas.without(TEXT, "nope", List.of()));
        assertEquals(Map.of(), ConfigStanzas.disks("[host]\nname = \"x\"\n"));
    }
}
