package io.phost.appliance.checkpoint;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a start does with the state a crash left (the rows of the table in docs/operations.md that need no
 * running host): a create killed after its child was made and recorded but before the switch (the leaf's
 * first flush then changed its DataWriteGuid) is dropped and the child re-linked so the disk opens with the
 * data; unreferenced images are removed; a leaf the state names but the disk lacks stops the start.
 */
class CheckpointRecoveryTest {
    @TempDir
    Path data;

    @Test
    void shouldDropAPendingCheckpointRelinkItsLeafAndRemoveStrays() throws Exception {
        Path base = data.resolve("d0.vhdx").toAbsolutePath();
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20)).close();
        CheckpointStore store = new CheckpointStore(data, "p");
        CheckpointState s = new CheckpointState("p");
        Path child = store.newImage(s, "d0");
        Files.createDirectories(store.dir());
        try (VhdxDisk leaf = VhdxDisk.open(base, false); Arena arena = Arena.ofConfined()) {
            VhdxDisk.createChildOf(child, leaf); // made before the pause, session not started: linked to the old guid
            CheckpointState.Checkpoint c = new CheckpointState.Checkpoint("a", "2026-12-06T08:00:00Z", null,
                CheckpointService.CRASH_CONSISTENT, Map.of("d0", base.toString()));
            c.pending = true;
            s.checkpoints.add(c);
            s.parents.put(child.toString(), base.toString());
            s.leaves.put("d0", child.toString());
            store.save(s);
            MemorySegment buf = arena.allocate(4096, 4096);
            buf.fill((byte) 7);
            leaf.write(0, buf); // the guest kept writing the old leaf until the crash
            leaf.flush();
        }
        Path stray = store.dir().resolve("d0-99.avhdx");
        Files.writeString(stray, "a child made by a create that crashed before saving");
        Files.writeString(store.dir().resolve("state.json.tmp"), "{half");

        Map<String, Path> leaves = CheckpointRecovery.recover(data, Map.of("p", List.of("d0")));

        assertEquals(Map.of("d0", child), leaves);
        assertFalse(Files.exists(stray));
        assertFalse(Files.exists(store.dir().resolve("state.json.tmp")));
        CheckpointState after = store.load("p");
        assertTrue(after.checkpoints.isEmpty(), "the pending checkpoint is dropped");
        try (VirtualDisk d = VirtualDisks.open(child, false); Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 4096);
            d.read(0, buf);
            assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0), "the leaf reads every write made before the crash");
        }
    }

    /**
     * A delete of a VHD disk's checkpoint killed while it wrote the child's ranges into the parent (no journal: a
     * VHD child stays linked by the parent's unique id, which writes never change): the start copies them again,
     * re-links the leaf to the parent and drops the checkpoint; the leaf reads every value.
     */
    @Test
    void shouldFinishAVhdDeleteKilledWhileWritingTheParent() throws Exception {
        Path base = data.resolve("d0.vhd").toAbsolutePath();
        CheckpointStore store = new CheckpointStore(data, "p");
        CheckpointState s = new CheckpointState("p");
        Path child = store.newImage(s, "d0", DiskFormat.VHD);
        Path leaf = store.newImage(s, "d0", DiskFormat.VHD);
        assertTrue(child.toString().endsWith("d0-1.vhd") && leaf.toString().endsWith("d0-2.vhd"), child + " " + leaf);
        Files.createDirectories(store.dir());
        long mib = 1L << 20;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(mib, 4096);
            try (VirtualDisk d = VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16 * mib))) {
                write(d, 0, 1, buf);
                write(d, 4 * mib, 1, buf);
            }
            try (VirtualDisk d = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
                write(d, 0, 2, buf);
                write(d, 2 * mib, 2, buf);
            }
            VirtualDisks.create(leaf, CreateOptions.differencing(DiskFormat.VHD, child)).close();
            try (VirtualDisk d = VirtualDisks.open(leaf, false)) {
                write(d, 8 * mib, 3, buf);
            }
            try (VirtualDisk d = VirtualDisks.open(base, false)) {
                write(d, 0, 2, buf); // the kill came after the merge's first range reached the parent
            }
        }
        s.checkpoints.add(new CheckpointState.Checkpoint("a", "2026-12-06T08:00:00Z", null, CheckpointService.CRASH_CONSISTENT,
            Map.of("d0", base.toString())));
        s.checkpoints.add(new CheckpointState.Checkpoint("b", "2026-12-06T08:01:00Z", "a", CheckpointService.CRASH_CONSISTENT,
            Map.of("d0", child.toString())));
        s.current = "b";
        s.parents.put(child.toString(), base.toString());
        s.parents.put(leaf.toString(), child.toString());
        s.leaves.put("d0", leaf.toString());
        s.merge = new CheckpointState.Merge("a", Map.of("d0", child.toString()), Map.of("d0", base.toString()));
        store.save(s);

        Map<String, Path> leaves = CheckpointRecovery.recover(data, Map.of("p", List.of("d0")));

        assertEquals(Map.of("d0", leaf), leaves);
        assertFalse(Files.exists(child), "the merged child is gone");
        CheckpointState after = store.load("p");
        assertEquals(List.of("b"), after.checkpoints.stream().map(c -> c.name).toList());
        assertEquals(base.toString(), after.checkpoint("b").images.get("d0"));
        try (VirtualDisk d = VirtualDisks.open(leaf, false); Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096, 4096);
            long[][] want = {{0, 2}, {2 * mib, 2}, {4 * mib, 1}, {8 * mib, 3}, {12 * mib, 0}};
            for (long[] w : want) {
                d.read(w[0], buf);
                assertEquals(w[1], buf.get(ValueLayout.JAVA_BYTE, 0), "byte at " + w[0]);
            }
        }
    }

    private static void write(VirtualDisk d, long offset, int value, MemorySegment buf) throws IOException {
        buf.fill((byte) value);
        d.write(offset, buf);
    }

    @Test
    void shouldStopTheStartWhenTheRecordedLeafIsMissing() throws Exception {
        CheckpointStore store = new CheckpointStore(data, "p");
        CheckpointState s = new CheckpointState("p");
        s.leaves.put("d0", store.dir().resolve("d0-1.avhdx").toAbsolutePath().toString());
        store.save(s);
        IOException e = assertThrows(IOException.class, () -> CheckpointRecovery.recover(data, Map.of("p", List.of("d0"))));
        assertTrue(e.getMessage().contains("disk 'd0'") && e.getMessage().contains("d0-1.avhdx") && e.getMessage().contains("missing"),
            e.getMessage());
    }

    @Test
    void shouldRejectAnUnreadableStateNamingTheFile() throws Exception {
        CheckpointStore store = new CheckpointStore(data, "p");
        Files.createDirectories(store.dir());
        Files.writeString(store.stateFile(), "{\"version\": 2}");
        IOException e = assertThrows(IOException.class, () -> CheckpointRecovery.recover(data, Map.of("p", List.of("d0"))));
        assertTrue(e.getMessage().contains("state.json") && e.getMessage().contains("version 1"), e.getMessage());
    }
}
