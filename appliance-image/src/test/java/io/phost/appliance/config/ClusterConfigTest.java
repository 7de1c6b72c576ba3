package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.assertErrors;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** {@code [[peer]]} and {@code [[partition]] ha}: binding, and the mistakes they are checked for, with positions. */
class ClusterConfigTest {
    private static final String HEAD = """
        [host]
        name = "a"
        data_dir = "/srv/phost"

        [[disk]]
        name = "db"
        format = "rbd"
        [disk.rbd]
        pool = "rbd"
        image = "db"

        [[disk]]
        name = "local"
        path = "local.raw"
        format = "raw"

        """; // lines 1-16

    @Test
    void shouldBindPeersAndHaPartitions() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HEAD + """
            [[peer]]
            name = "b"
            management = "tcp://10.0.0.2:8443"
            token_file = "/etc/phost/b.token"
            lease = 7

            [[peer]]
            name = "c"
            management = "unix:/run/c/phost.sock"

            [[partition]]
            name = "p"
            ha = true
            disk = [{ disk = "db" }]

            [[partition]]
            name = "v"
            kind = "vm"
            firmware = "bios"
            ha = true
            """);
        assertEquals(List.of(new ClusterConfig.Peer("b", "tcp://10.0.0.2:8443", Path.of("/etc/phost/b.token"), 7),
            new ClusterConfig.Peer("c", "unix:/run/c/phost.sock", null, 5)), c.cluster().peers());
        assertEquals(Set.of("p", "v"), c.cluster().haPartitions()); // a VM restarts on a peer too
        assertEquals(true, c.cluster().clustered());
    }

    @Test
    void shouldRefuseBadPeersAtTheirKeys() {
        assertErrors(HEAD + """
            [[peer]]
            name = "a"
            management = "tcp://10.0.0.2:8443"

            [[peer]]
            name = "b"
            management = "http://b"
            token_file = "b.token"
            lease = 1
            """,
            "t.toml:18:1: peer[0].name: peer 'a' has this host's own name ([host] name)",
            "t.toml:19:1: peer[0].management: a tcp peer needs token_file (its management token)",
            "t.toml:23:1: peer[1].management: 'http://b' is not \"unix:/absolute/path\" or \"tcp://HOST:PORT\"",
            "t.toml:24:1: peer[1].token_file: token_file must be an absolute path",
            "t.toml:25:1: peer[1].lease: 1 is out of range (2..300)");
        assertErrors(HEAD + """
            [[peer]]
            name = "b"
            management = "unix:/run/b.sock"

            [[peer]]
            name = "b"
            management = "unix:/run/b2.sock"
            """,
            "t.toml:22:1: peer[1].name: duplicate peer name 'b' (first defined at line 18)");
    }

    @Test
    void shouldRefuseHaForALocalDiskOrWithoutPeers() {
        assertErrors(HEAD + """
            [[partition]]
            name = "p"
            ha = true
            disk = [{ disk = "local" }]
            """,
            "t.toml:19:1: partition[0].ha: ha = true needs a [[peer]] to restart the partition on");
        assertErrors(HEAD + """
            [[peer]]
            name = "b"
            management = "unix:/run/b.sock"

            [[partition]]
            name = "p"
            ha = true
            [[partition.disk]]
            disk = "local"
            """,
            "t.toml:25:1: partition[0].disk[0].disk: ha partition 'p' uses disk 'local', which is local to this host "
                + "(format raw); another host can only take over writable rbd disks");
    }
}
