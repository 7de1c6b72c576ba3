package io.phost.storage.scsi;

import static io.phost.storage.scsi.ScsiHarness.rw10;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.phost.vhdx.RawDisk;
import io.phost.storage.nbd.NbdServer;
import io.phost.storage.nbd.NbdTestClient;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, defect 10: a full host file system reaches the guest as "no space", not as a medium error
 * (SCSI DATA PROTECT / SPACE ALLOCATION FAILED, which Linux turns into ENOSPC; NBD ENOSPC), and is counted.
 * Recipe: a 1 MiB tmpfs (needs root to mount) holding a 16 MiB sparse raw file; writes past 1 MiB fail.
 */
class DiskFullTest {
    @TempDir
    Path dir;
    Path mnt;
    boolean mounted;

    @BeforeEach
    void mountTinyTmpfs() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
        mnt = Files.createDirectory(dir.resolve("full"));
        Process p = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString())
            .redirectErrorStream(true).start();
        assertTrue(p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0,
            "mount tmpfs: " + new String(p.getInputStream().readAllBytes()));
        mounted = true;
    }

    @AfterEach
    void unmount() throws Exception {
        if (mounted) {
            new ProcessBuilder("umount", "-l", mnt.toString()).start().waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void shouldAnswerScsiWritesOnAFullFileSystemWithSpaceAllocationFailed() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            ScsiTarget target = new ScsiTarget();
            target.add(0, new ScsiLun("full-disk", disk));
            try (ScsiHarness h = new ScsiHarness(target)) {
                MemorySegment buf = h.buffer(256 << 10);
                buf.fill((byte) 0x5a);
                ScsiRequest last = null;
                for (int i = 0; i < 16; i++) { // 4 MiB into a 1 MiB file system
                    last = h.run(0, rw10(0x2A, i * 512L, 512), ScsiRequest.DIR_OUT, buf);
                    if (last.status() != Scsi.STATUS_GOOD) {
                        break;
                    }
                }
                assertEquals(Scsi.STATUS_CHECK_CONDITION, last.status());
                assertEquals(Scsi.KEY_DATA_PROTECT, last.senseKey());
                assertEquals(Scsi.ASC_SPACE_ALLOCATION_FAILED, last.ascq(), Integer.toHexString(last.ascq()));
                assertTrue(target.lun(0).stats().noSpaceErrors() >= 1);
                assertEquals(Scsi.STATUS_GOOD, h.run(0, rw10(0x28, 0, 8), ScsiRequest.DIR_IN, h.buffer(4096)).status(),
                    "reads still work");
            }
        }
    }

    @Test
    void shouldAnswerNbdWritesOnAFullFileSystemWithEnospc() throws Exception {
        Path file = mnt.resolve("n.raw");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            NbdServer.Export export = new NbdServer.Export("n", disk, false);
            try (NbdServer server = NbdServer.unix(dir.resolve("nbd.sock"), List.of(export))) {
                int error = 0;
                for (int i = 0; i < 16 && error == 0; i++) {
                    error = NbdTestClient.write(dir.resolve("nbd.sock"), "n", i * (256L << 10), 256 << 10);
                }
                assertEquals(28, error, "NBD_ENOSPC, not EIO");
                assertTrue(export.stats().noSpaceErrors() >= 1, "counted for /status");
                assertTrue(server.problem() == null, "a full disk does not make the export unhealthy");
            }
        }
    }
}
