package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.assertErrors;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, defects 2 and 8: one path, two uses. A socket bound over a disk image cost a user the image,
 * and two disks reaching one file through a symbolic link were two writers; validation refuses both.
 */
class ConfigPathConflictTest {
    @TempDir
    Path dir;

    @Test
    void shouldRejectADiskWhoseFileIsTheManagementSocket() {
        assertErrors("""
            [host]
            data_dir = "/srv/phost"
            management = "unix:/srv/phost/vm.raw"
            [[disk]]
            name = "vm"
            path = "vm.raw"
            format = "raw"
            """, "t.toml:6:1: disk[0].path: disk 'vm' would use /srv/phost/vm.raw, which is already the management "
            + "socket; every disk, socket and token file needs a path of its own");
    }

    @Test
    void shouldRejectAnNbdSocketThatIsTheManagementSocketOrADisk() {
        assertErrors("""
            [host]
            data_dir = "/srv/phost"
            nbd = "unix:/srv/phost/phost.sock"
            [[disk]]
            name = "vm"
            path = "/srv/phost/phost.sock"
            format = "raw"
            nbd_export = true
            """,
            "t.toml:3:1: host.nbd: the NBD socket would use /srv/phost/phost.sock, which is already the management "
                + "socket; every disk, socket and token file needs a path of its own",
            "t.toml:6:1: disk[0].path: disk 'vm' would use /srv/phost/phost.sock, which is already the management "
                + "socket; every disk, socket and token file needs a path of its own");
    }

    @Test
    void shouldRejectTwoDisksThatReachOneFileThroughASymbolicLink() throws Exception {
        Path real = dir.resolve("real.raw");
        Files.write(real, new byte[4096]);
        Files.createSymbolicLink(dir.resolve("alias.raw"), real);
        assertErrors("""
            [host]
            data_dir = "%s"
            [[disk]]
            name = "a"
            path = "real.raw"
            format = "raw"
            [[disk]]
            name = "b"
            path = "alias.raw"
            format = "raw"
            """.formatted(dir), "t.toml:9:1: disk[1].path: disk 'b' uses the same file as disk 'a' ("
            + real.toRealPath() + ")");
    }

    @Test
    void shouldResolveSymbolicLinksInTheMiddleOfAPath() throws Exception {
        Files.createDirectories(dir.resolve("images"));
        Files.createSymbolicLink(dir.resolve("link"), dir.resolve("images"));
        assertEquals(dir.toRealPath().resolve("images/new.vhdx"), DiskBinder.realPath(dir.resolve("link/new.vhdx")));
    }
}
