package io.phost.core.sys;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The file API of the one native layer: positional I/O on native and heap segments, typed failures. */
class PosixFileTest {
    @TempDir
    Path dir;

    @Test
    void shouldNameOperationErrnoAndOffsetWhenACallFails() throws Exception {
        Path p = dir.resolve("ro.img");
        try (PosixFile f = PosixFile.createNew(p)) {
            f.truncate(16 << 10);
        }
        try (PosixFile ro = PosixFile.open(p, true)) {
            IOException e = assertThrows(IOException.class, () -> ro.write(8192, new byte[512], 0, 512));
            NativeException cause = assertInstanceOf(NativeException.class, e.getCause());
            assertEquals(Errno.EBADF, cause.errno());
            assertEquals(8192, cause.offset());
            assertTrue(cause.operation().startsWith("pwrite") && cause.operation().contains(p.toString()), cause.operation());
            assertTrue(e.getMessage().contains("at offset 8192") && e.getMessage().contains("errno 9"), e.getMessage());
        }
    }

    @Test
    void shouldMoveHeapSegmentsLargerThanOnePinnedChunk() throws Exception {
        byte[] data = new byte[(int) DirectFile.CRITICAL_CHUNK * 3 + 512];
        new Random(13).nextBytes(data);
        try (PosixFile f = PosixFile.createNew(dir.resolve("heap.img")); Arena arena = Arena.ofConfined()) {
            f.writeFully(MemorySegment.ofArray(data), 4096);
            byte[] back = new byte[data.length];
            f.readFully(MemorySegment.ofArray(back), 4096);
            assertArrayEquals(data, back);
            MemorySegment direct = arena.allocate(data.length, 4096);
            f.readFully(direct, 4096);
            assertArrayEquals(data, direct.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            EOFException eof = assertThrows(EOFException.class, () -> f.readFully(direct, 8192));
            assertTrue(eof.getMessage().contains("end of file"), eof.getMessage());
            f.dataSync();
            f.sync();
            assertEquals(2, f.syncCount());
        }
    }

    @Test
    void shouldReportMissingAndExistingFilesAsTheirNioExceptions() throws Exception {
        Path p = dir.resolve("x.img");
        assertThrows(NoSuchFileException.class, () -> PosixFile.open(p, true));
        try (PosixFile f = PosixFile.createNew(p)) {
            assertThrows(FileAlreadyExistsException.class, () -> PosixFile.createNew(p));
            assertTrue(f.tryLock(true));
            try (PosixFile second = PosixFile.open(p, true)) {
                assertTrue(!second.tryLock(false), "a shared lock beside an exclusive one is refused");
            }
        }
    }
}
