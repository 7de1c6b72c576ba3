package io.phost.vhdx;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 16, defect 8: a raw file has one writer or any number of readers, as VHDX images do. */
class RawDiskLockTest {
    @TempDir
    Path dir;

    @Test
    void shouldRefuseASecondWriterEvenThroughASymbolicLink() throws Exception {
        Path file = dir.resolve("d.raw");
        RawDisk.createSparse(file, 1 << 20);
        Path alias = Files.createSymbolicLink(dir.resolve("alias.raw"), file);
        try (RawDisk first = RawDisk.openFile(file, false, true)) {
            IOException e = assertThrows(IOException.class, () -> RawDisk.openFile(alias, false, true));
            assertTrue(e.getMessage().contains("is in use") && e.getMessage().contains("alias.raw"), e.getMessage());
            assertThrows(IOException.class, () -> RawDisk.openFile(file, true, false), "no reader beside a writer");
        }
        try (RawDisk again = RawDisk.openFile(alias, false, true)) {
            assertTrue(again.size() > 0, "the lock goes with the close");
        }
    }

    @Test
    void shouldLetReadersShareAndKeepWritersOut() throws Exception {
        Path file = dir.resolve("golden.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (RawDisk a = RawDisk.openFile(file, true, false); RawDisk b = RawDisk.openFile(file, true, true)) {
            IOException e = assertThrows(IOException.class, () -> RawDisk.openFile(file, false, true));
            assertTrue(e.getMessage().contains("open read-write elsewhere") || e.getMessage().contains("open elsewhere"),
                e.getMessage());
        }
    }
}
