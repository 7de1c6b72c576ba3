package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.assertErrors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code [[disk]] vhost_user}: its default, its socket path and the mistakes it is checked for, with positions. */
class VhostUserConfigTest {
    private static final String DISK = """
        [host]
        data_dir = "/srv/phost"

        [[disk]]
        name = "vm-os"
        path = "vm-os.raw"
        format = "raw"
        vhost_user = true
        """; // lines 1-8

    @Test
    void shouldPlaceTheSocketUnderTheDataDirAndDefaultToOff() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", DISK + """

            [[disk]]
            name = "plain"
            path = "plain.raw"
            format = "raw"
            """);
        DiskConfig d = c.disk("vm-os").orElseThrow();
        assertTrue(d.vhostUser());
        assertFalse(c.disk("plain").orElseThrow().vhostUser());
        assertEquals(Path.of("/srv/phost/vhost/vm-os.sock"), DiskConfig.vhostUserSocket(c.host().dataDir(), d.name()));
    }

    @Test
    void shouldRefuseAWritableVhostUserDiskThatIsAlsoAttachedToAPartition() {
        assertErrors(DISK + """

            [[partition]]
            name = "p"

            [[partition.disk]]
            disk = "vm-os"
            """, "t.toml:14:1: partition[0].disk[0].disk: disk 'vm-os' is exported writable over vhost-user (a VM's "
            + "disk); only read_only disks can also be attached to a partition");
    }

    @Test
    void shouldRefuseASocketPathLongerThanAUnixSocketAllows() {
        String longName = "d".repeat(64);
        String dataDir = "/srv/" + "p".repeat(40);
        assertErrors(DISK.replace("vm-os\"", longName + "\"").replace("/srv/phost", dataDir), "t.toml:8:1: disk[0].vhost_user: the socket path "
            + dataDir + "/vhost/" + longName + ".sock is longer than 107 bytes (a Unix socket limit); use a shorter data_dir or disk name");
    }
}
