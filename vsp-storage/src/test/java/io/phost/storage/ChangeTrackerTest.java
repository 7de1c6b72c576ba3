package io.phost.storage;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The bitmap file's crash consistency: valid only after a clean close; a cut splits generations. */
class ChangeTrackerTest {
    private static final long SIZE = 16L << 20;
    private static final int G = ChangeTracker.GRANULARITY;

    @TempDir
    Path dir;

    @Test
    void shouldKeepTheBitsAcrossACleanCloseAndCountBlocksOnce() throws Exception {
        Path f = dir.resolve("d.rct");
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            assertEquals(ChangeTracker.Reason.NEW, t.invalidReason());
            t.cut(); // the first backup point: from here the bitmap is valid
            t.mark(G - 512, 1024); // straddles blocks 0 and 1
            t.mark(5L * G, 4096);
            t.mark(5L * G + 8192, 4096); // same block again
            assertEquals(3L * G, t.dirtyBytes());
        }
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            assertEquals(ChangeTracker.Reason.NONE, t.invalidReason());
            assertEquals(1, t.generation());
            ChangeTracker.Cut c = t.cut();
            assertFalse(c.full());
            assertEquals(0b100011L, c.words()[0]);
            assertEquals(0, t.dirtyBytes(), "a new generation starts empty");
            assertEquals(2, t.generation());
        }
    }

    @Test
    void shouldInvalidateAfterAStopWithoutTheCleanClose() throws Exception {
        Path f = dir.resolve("d.rct");
        ChangeTracker t = ChangeTracker.open(f, SIZE);
        t.cut();
        t.mark(0, 4096);
        t.persistIfChanged(); // what a guest FLUSH does: the bit is durable, the file still says OPEN
        Path copy = dir.resolve("killed.rct");
        Files.copy(f, copy); // the file as a SIGKILL right now would leave it
        t.close();
        try (ChangeTracker again = ChangeTracker.open(copy, SIZE)) {
            assertEquals(ChangeTracker.Reason.UNCLEAN_STOP, again.invalidReason());
            ChangeTracker.Cut c = again.cut();
            assertTrue(c.full(), "the next backup copies everything");
            assertEquals(SIZE, c.dirtyBytes());
            assertEquals(ChangeTracker.Reason.NONE, again.invalidReason(), "valid again from this backup point");
        }
    }

    @Test
    void shouldRejectACorruptFileAndAWrongSize() throws Exception {
        Path f = dir.resolve("d.rct");
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            t.cut();
            t.mark(0, 1);
        }
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(new byte[] {(byte) 0xFF}), 64); // one bit flipped: the CRC no longer matches
        }
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            assertEquals(ChangeTracker.Reason.CORRUPT, t.invalidReason());
        }
        try (ChangeTracker t = ChangeTracker.open(f, SIZE * 2)) {
            assertEquals(ChangeTracker.Reason.CORRUPT, t.invalidReason(), "a disk of another size");
            t.cut(); // a full backup point
        }
        try (ChangeTracker t = ChangeTracker.open(f, SIZE * 2)) {
            assertEquals(ChangeTracker.Reason.NONE, t.invalidReason(), "rewritten whole for the new size");
        }
    }

    @Test
    void shouldGiveAnAbandonedCutBackAndRememberAnInvalidation() throws Exception {
        Path f = dir.resolve("d.rct");
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            t.cut();
            t.mark(3L * G, 1);
            ChangeTracker.Cut c = t.cut();
            t.mark(7L * G, 1);
            t.restore(c);
            assertEquals(2L * G, t.dirtyBytes());
            t.invalidate(ChangeTracker.Reason.REVERTED);
        }
        try (ChangeTracker t = ChangeTracker.open(f, SIZE)) {
            assertEquals(ChangeTracker.Reason.REVERTED, t.invalidReason(), "stored across a clean stop");
        }
    }
}
