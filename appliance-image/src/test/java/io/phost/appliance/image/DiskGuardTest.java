package io.phost.appliance.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DiskGuardTest {
    @TempDir
    Path dir;

    private DiskGuard guard(String mounts) throws Exception {
        Path f = dir.resolve("mounts");
        Files.writeString(f, mounts);
        return new DiskGuard(f);
    }

    private static final String MOUNTS = """
        /dev/nvme0n1p2 / ext4 rw,relatime 0 0
        proc /proc proc rw 0 0
        /dev/nvme0n1p1 /boot/efi vfat rw 0 0
        /dev/sdb1 /media/USB\\040STICK vfat rw 0 0
        tmpfs /run tmpfs rw 0 0
        """;

    @Test
    void shouldRefuseTheDiskHoldingTheRootFileSystem() throws Exception {
        String why = guard(MOUNTS).refusal(Path.of("/dev/nvme0n1"));
        assertTrue(why.contains("root file system"), why);
    }

    @Test
    void shouldRefuseADiskWithAMountedPartitionAndNameTheMountPoint() throws Exception {
        String why = guard(MOUNTS).refusal(Path.of("/dev/sdb"));
        assertTrue(why.contains("/dev/sdb1 on /media/USB STICK"), why);
    }

    @Test
    void shouldRefuseAMountedPartitionItself() throws Exception {
        assertTrue(guard(MOUNTS).refusal(Path.of("/dev/nvme0n1p1")).contains("root file system"));
    }

    @Test
    void shouldAllowAnUnmountedDiskAndImageFiles() throws Exception {
        DiskGuard g = guard(MOUNTS);
        assertNull(g.refusal(Path.of("/dev/sdc")));
        assertNull(g.refusal(Path.of("/dev/nvme1n1")));
        assertNull(g.refusal(dir.resolve("phost-test.img")));
    }

    @Test
    void shouldMapPartitionsToTheirWholeDisk() {
        assertEquals("/dev/sda", DiskGuard.wholeDisk("/dev/sda1"));
        assertEquals("/dev/vda", DiskGuard.wholeDisk("/dev/vda"));
        assertEquals("/dev/nvme0n1", DiskGuard.wholeDisk("/dev/nvme0n1p12"));
        assertEquals("/dev/nvme0n1", DiskGuard.wholeDisk("/dev/nvme0n1"));
        assertEquals("/dev/mmcblk0", DiskGuard.wholeDisk("/dev/mmcblk0p1"));
        assertEquals("/dev/loop3", DiskGuard.wholeDisk("/dev/loop3"));
    }
}
