package io.phost.vhdx.vhdx;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.ops.OnlineMerge;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A child made from an open read-write parent (a checkpoint prepared before its I/O pause): it opens when
 * the parent's DataWriteGuid did not change, and after a re-link when the parent's first write of its
 * session changed it; it reads the parent's data either way.
 */
class CreateChildOfTest {
    @TempDir
    Path dir;

    @Test
    void shouldLinkToTheOpenParentAndNeedARelinkAfterItsFirstWrite() throws Exception {
        Path base = dir.resolve("base.vhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20)).close();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 4096);
            // Session already started (written and flushed before): the guid is stable, the child opens as made.
            Path a = dir.resolve("a.avhdx");
            try (VhdxDisk parent = VhdxDisk.open(base, false)) {
                buf.fill((byte) 1);
                parent.write(0, buf);
                parent.flush();
                java.util.UUID guid = parent.dataWriteGuid();
                VhdxDisk.createChildOf(a, parent);
                parent.write(4096, buf);
                parent.flush();
                assertEquals(guid, parent.dataWriteGuid(), "one session, one DataWriteGuid");
            }
            try (VirtualDisk d = VirtualDisks.open(a, true)) {
                d.read(4096, buf);
                assertEquals(1, buf.get(ValueLayout.JAVA_BYTE, 0));
            }
            // Fresh open: the first write starts a session with a new guid, so the child must be re-linked.
            Path b = dir.resolve("b.avhdx");
            try (VhdxDisk parent = VhdxDisk.open(base, false)) {
                VhdxDisk.createChildOf(b, parent);
                buf.fill((byte) 2);
                parent.write(8192, buf);
            }
            VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VirtualDisks.open(b, true));
            // With the session started first, the child made next stays linked through later writes.
            Path c = dir.resolve("c.avhdx");
            Path base2 = dir.resolve("base2.vhdx");
            VirtualDisks.create(base2, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20)).close();
            try (VhdxDisk parent = VhdxDisk.open(base2, false)) {
                parent.startWriteSession();
                VhdxDisk.createChildOf(c, parent);
                buf.fill((byte) 3);
                parent.write(12288, buf);
            }
            try (VirtualDisk d = VirtualDisks.open(c, true)) {
                d.read(12288, buf);
                assertEquals(3, buf.get(ValueLayout.JAVA_BYTE, 0));
            }
            assertEquals(VhdxFormatException.Reason.PARENT_LINKAGE_MISMATCH, e.reason());
            OnlineMerge.relink(b, base);
            try (VirtualDisk d = VirtualDisks.open(b, false)) {
                d.read(8192, buf);
                assertEquals(2, buf.get(ValueLayout.JAVA_BYTE, 0));
            }
        }
    }

    /**
     * A checkpoint's switch opens the child on the running leaf itself: the leaf's data shows through, its
     * file is clean on disk (log empty, readable elsewhere: its flock is shared now) while the child runs,
     * and closing the child closes the leaf's view and its chain once, releasing every lock.
     */
    @Test
    void shouldOpenTheChildOnTheOpenLeafWithoutReopeningTheChain() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path leafPath = dir.resolve("leaf.avhdx");
        Path child = dir.resolve("child.avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20)).close();
        VirtualDisks.create(leafPath, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 4096);
            VhdxDisk leaf = VhdxDisk.open(leafPath, false);
            leaf.startWriteSession();
            VhdxDisk.createChildOf(child, leaf);
            buf.fill((byte) 7);
            leaf.write(4096, buf); // after the child was made: still one session, the child stays linked
            leaf.flush();
            VhdxDisk running = VhdxDisk.openChildOn(child, leaf);
            try {
                assertThrows(IllegalStateException.class, () -> leaf.write(0, buf), "the leaf object is closed");
                running.read(4096, buf);
                assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
                buf.fill((byte) 9);
                running.write(0, buf);
                running.flush();
                try (VhdxDisk other = VhdxDisk.open(leafPath, true)) { // shared flock, log empty
                    assertEquals(VhdxDisk.LogState.CLEAN, other.logState());
                    other.read(4096, buf);
                    assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
                }
                assertThrows(java.io.IOException.class, () -> VhdxDisk.open(leafPath, false), "read-only parent of a running child");
            } finally {
                running.close();
            }
            try (VhdxDisk again = VhdxDisk.open(leafPath, false)) { // every lock released
                again.read(0, buf);
                assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 0));
            }
            try (VirtualDisk d = VirtualDisks.open(child, true)) {
                d.read(0, buf);
                assertEquals(9, buf.get(ValueLayout.JAVA_BYTE, 0));
                d.read(4096, buf);
                assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
            }
            // A child linked elsewhere: refused, the leaf closed (once) so it reopens from its file.
            VhdxDisk leaf2 = VhdxDisk.open(leafPath, false);
            Path stranger = dir.resolve("stranger.avhdx");
            VirtualDisks.create(stranger, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
            assertThrows(VhdxFormatException.class, () -> VhdxDisk.openChildOn(stranger, leaf2));
            VhdxDisk.open(leafPath, false).close();
        }
    }

    /**
     * The checkpoint switch ends the flushed leaf's session with two fdatasyncs: the last commit's in-place
     * metadata, then the first header copy (log empty), which also covers the data; the second copy is written
     * without its own. A crash that loses that second copy leaves the synced one current: a clean image with
     * every flushed write.
     */
    @Test
    void shouldEndTheLeafsSessionWithTwoFdatasyncsAndSurviveLosingTheUnsyncedHeaderCopy() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path leafPath = dir.resolve("leaf.avhdx");
        Path child = dir.resolve("child.avhdx");
        Path lost = dir.resolve("lost.avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20)).close();
        VirtualDisks.create(leafPath, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 4096);
            VhdxDisk leaf = VhdxDisk.open(leafPath, false);
            leaf.startWriteSession();
            VhdxDisk.createChildOf(child, leaf);
            buf.fill((byte) 7);
            leaf.write(4096, buf);
            leaf.flush(); // as the switch does before the pause ends the session: its in-place BAT write is unsynced
            byte[] before = java.nio.file.Files.readAllBytes(leafPath);
            long syncs = leaf.fileSyncs();
            VhdxDisk running = VhdxDisk.openChildOn(child, leaf);
            try {
                assertEquals(2, leaf.fileSyncs() - syncs, "in-place metadata, then the first header copy");
                byte[] now = java.nio.file.Files.readAllBytes(leafPath);
                int h1 = (int) VhdxHeaderDescriptor.headerFileOffset(0);
                int h2 = (int) VhdxHeaderDescriptor.headerFileOffset(1);
                int newer = Le.i64(now, h1 + 8) > Le.i64(now, h2 + 8) ? h1 : h2;
                System.arraycopy(before, newer, now, newer, 4096); // the unsynced copy never reached the disk
                java.nio.file.Files.write(lost, now);
            } finally {
                running.close();
            }
        }
        try (VhdxDisk d = VhdxDisk.open(lost, true); Arena arena = Arena.ofConfined()) {
            assertEquals(VhdxDisk.LogState.CLEAN, d.logState(), "the synced copy is current and says the log is empty");
            MemorySegment buf = arena.allocate(4096, 4096);
            d.read(4096, buf);
            assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
            d.read(0, buf);
            assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 0));
        }
        assertTrue(VhdxCheck.check(lost).clean()); // qemu-img cannot open differencing VHDX: no second opinion
    }
}
