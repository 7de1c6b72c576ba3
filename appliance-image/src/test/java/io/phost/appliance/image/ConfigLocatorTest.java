package io.phost.appliance.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigLocatorTest {
    @TempDir
    Path dir;
    Path cmdline;
    Path byLabel;
    Path mounts;
    Path dev;

    @BeforeEach
    void fixture() throws Exception {
        cmdline = dir.resolve("cmdline");
        byLabel = Files.createDirectories(dir.resolve("by-label"));
        mounts = dir.resolve("mounts");
        dev = Files.createFile(dir.resolve("sdb1"));
        Files.writeString(cmdline, "console=ttyS0,115200 quiet\n");
        Files.writeString(mounts, "/dev/vda3 /data ext4 rw 0 0\n");
    }

    private ConfigLocator locator() {
        return new ConfigLocator(cmdline, byLabel, mounts);
    }

    @Test
    void shouldPreferTheKernelArgument() throws Exception {
        Files.writeString(cmdline, "console=ttyS0 phost.config=/data/a.toml quiet phost.config=/data/b.toml\n");
        Files.createSymbolicLink(byLabel.resolve("APPLCFG"), dev);
        Files.writeString(mounts, dev + " /config vfat ro 0 0\n");
        ConfigLocator.Located l = locator().locate(Path.of("/etc/phost/appliance.toml"));
        assertEquals(Path.of("/data/b.toml"), l.path());
        assertEquals(ConfigLocator.Source.KERNEL_ARGUMENT, l.source());
    }

    @Test
    void shouldUseTheMountedConfigPartitionNext() throws Exception {
        Files.createSymbolicLink(byLabel.resolve("APPLCFG"), dev);
        Files.writeString(mounts, "/dev/vda3 /data ext4 rw 0 0\n" + dev.toRealPath() + " /config vfat ro 0 0\n");
        ConfigLocator.Located l = locator().locate(Path.of("/etc/phost/appliance.toml"));
        assertEquals(Path.of("/config/appliance.toml"), l.path());
        assertEquals(ConfigLocator.Source.CONFIG_PARTITION, l.source());
    }

    @Test
    void shouldFallBackToTheCommandLinePathWhenTheLabelIsNotMounted() throws Exception {
        Files.createSymbolicLink(byLabel.resolve("APPLCFG"), dev);
        ConfigLocator.Located l = locator().locate(Path.of("/etc/phost/appliance.toml"));
        assertEquals(ConfigLocator.Source.COMMAND_LINE, l.source());
        assertNull(locator().locate(null));
    }
}
