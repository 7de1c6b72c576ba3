package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.assertErrors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.vhdx.DiskFormat;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code [[disk]] format = "rbd"} with {@code [disk.rbd]}: defaults, and the mistakes it is checked for, with positions. */
class RbdConfigTest {
    private static final String HOST = """
        [host]
        data_dir = "/srv/phost"

        """; // lines 1-3

    @Test
    void shouldBindAnRbdDiskWithItsDefaults() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[disk]]
            name = "db"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "db-1"
            [disk.create]
            size = "8GiB"

            [[disk]]
            name = "ro"
            format = "rbd"
            read_only = true
            [disk.rbd]
            pool = "vms"
            namespace = "tenant-a"
            image = "base"
            cluster_config = "/etc/ceph/prod.conf"
            client = "phost"
            keyring = "/etc/ceph/ceph.client.phost.keyring"
            break_lock = true
            connect_timeout = 3
            """);
        DiskConfig db = c.disk("db").orElseThrow();
        assertEquals(DiskFormat.RBD, db.format());
        assertEquals(8L << 30, db.create().size());
        assertEquals(new DiskConfig.Rbd("rbd", "db-1", null, null, "admin", null, false, 10), db.rbd());
        DiskConfig ro = c.disk("ro").orElseThrow();
        assertTrue(ro.readOnly());
        assertEquals("vms/tenant-a/base", ro.rbd().spec());
        assertEquals(Path.of("/etc/ceph/prod.conf"), ro.rbd().clusterConfig());
        assertEquals("phost", ro.rbd().client());
        assertTrue(ro.rbd().breakLock());
        assertEquals(3, ro.rbd().connectTimeoutSeconds());
        assertNull(c.disk("db").orElseThrow().parent());
        assertFalse(db.vhostUser());
    }

    @Test
    void shouldRefuseAnRbdDiskWithoutItsTableOrWithAPath() {
        assertErrors(HOST + """
            [[disk]]
            name = "db"
            format = "rbd"
            path = "db.raw"
            """,
            "t.toml:4:1: disk[0].rbd: an rbd disk needs a [disk.rbd] table with pool and image",
            "t.toml:7:1: disk[0].path: an rbd disk lives in Ceph ([disk.rbd] pool and image); remove path");
    }

    @Test
    void shouldRefuseBadCephNamesAndRelativePathsAtTheirKeys() {
        assertErrors(HOST + """
            [[disk]]
            name = "db"
            format = "rbd"
            [disk.rbd]
            pool = "a/b"
            image = ""
            cluster_config = "ceph.conf"
            connect_timeout = 0
            """,
            "t.toml:8:1: disk[0].rbd.pool: \"a/b\" is not a Ceph pool name (1..255 characters without '/', '@', whitespace or control characters)",
            "t.toml:9:1: disk[0].rbd.image: \"\" is not a Ceph image name (1..255 characters without '/', '@', whitespace or control characters)",
            "t.toml:10:1: disk[0].rbd.cluster_config: cluster_config must be an absolute path to a ceph.conf",
            "t.toml:11:1: disk[0].rbd.connect_timeout: 0 is out of range (1..300)");
    }

    @Test
    void shouldRefuseRbdSettingsOnAFileDiskAndFileSettingsOnAnRbdDisk() {
        assertErrors(HOST + """
            [[disk]]
            name = "f"
            path = "f.raw"
            format = "raw"
            [disk.rbd]
            pool = "rbd"
            image = "x"

            [[disk]]
            name = "db"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "db"
            [disk.create]
            type = "differencing"
            block_size = "4MiB"
            """,
            "t.toml:8:1: disk[0].rbd: [disk.rbd] is only for format = \"rbd\"",
            "t.toml:19:1: disk[1].create.type: an rbd disk cannot be differencing (use an RBD clone in Ceph)",
            "t.toml:20:1: disk[1].create.block_size: an rbd disk takes its object size from Ceph; remove block_size");
    }

    @Test
    void shouldRefuseIoUringOnAnRbdDisk() {
        assertErrors(HOST + """
            [[disk]]
            name = "db"
            format = "rbd"
            io_engine = "io_uring"
            [disk.rbd]
            pool = "rbd"
            image = "db"
            """,
            "t.toml:7:1: disk[0].io_engine: an rbd disk has no file for io_uring and must not block its queue (inline); use auto (librbd's own asynchronous I/O) or threads");
    }

    @Test
    void shouldRefuseTwoDisksOnOneImage() {
        assertErrors(HOST + """
            [[disk]]
            name = "a"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "same"

            [[disk]]
            name = "b"
            format = "rbd"
            [disk.rbd]
            pool = "rbd"
            image = "same"
            """,
            "t.toml:11:1: disk[1].path: disk 'b' uses the same file as disk 'a'");
    }
}
