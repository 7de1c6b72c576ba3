package io.phost.vhdx.ops;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * Merges a differencing VHDX into its parent so that a kill at any point can be finished by running the
 * merge again. The data is copied once, straight from the child's view into the parent:
 * <pre>
 *   1 journal  CHILD.merge-journal written (tmp + fsync + rename): parent path and VirtualDiskId
 *              ── from here on the merge is committed: a rerun resumes at 2 ──
 *   2 apply    parent opened read-write, child opened read-only reading through it
 *              ({@link VhdxDisk#openChildReadingThrough}); for every block the child says something about,
 *              the child's view → parent (ZERO blocks as zeros); flush
 *   3 finish   child deleted (or re-linked to the parent's new DataWriteGuid with --keep-child), journal
 * </pre>
 * Why a rerun of 2 is sound although the parent's first write gave it a new DataWriteGuid (the child then
 * no longer opens normally; the journal vouches for the linkage): every write of the merge puts into
 * the parent exactly what the child reads there. Sectors the child stores read from the child whatever the
 * parent holds; sectors it does not store read the parent's, which the merge either left alone or rewrote
 * with the value they already had. So the child reads the same through a partly merged parent: 2 can be
 * repeated whole, and the child may read through the parent while it is being written. Journals of the
 * earlier staged format ({@code phost-vhdx-merge 1}: block lists plus CHILD.merge-stage) are still
 * finished from their stage.
 */
final class VhdxMerge {
    private static final String MAGIC = "phost-vhdx-merge 2";
    private static final String STAGED_MAGIC = "phost-vhdx-merge 1";

    private VhdxMerge() {}

    static Path journalOf(Path child) {
        return child.resolveSibling(child.getFileName() + ".merge-journal");
    }

    static Path stageOf(Path child) {
        return child.resolveSibling(child.getFileName() + ".merge-stage");
    }

    /** Merges (or finishes an interrupted merge of) {@code child} into its parent. */
    static DiskOps.CopyResult merge(Path child, boolean keepChild, Progress progress) throws IOException {
        Path journal = journalOf(child);
        Path stage = stageOf(child);
        Journal j;
        if (Files.exists(journal)) {
            j = Journal.read(journal);
            if (!j.staged() && !Files.exists(child)) {
                // Killed in phase 3 between deleting the child and the journal: the parent already holds the
                // merged view (the child goes only after the copy); only the journal is left to remove.
                Files.delete(journal);
                NewImage.syncDirectory(child);
                progress.update(j.size, j.size);
                return new DiskOps.CopyResult(0, j.size);
            }
        } else {
            Files.deleteIfExists(stage); // a leftover of the staged format: no journal means nothing was committed
            j = commit(child);
        }
        long written = j.staged() ? apply(j, stage, progress) : copy(child, j, progress, false);
        if (keepChild) {
            if (Files.exists(child)) {
                VhdxDisk.setParent(child, j.parent, true, true); // its view is unchanged: keep its own guid
            }
        } else {
            Files.deleteIfExists(child);
        }
        Files.delete(journal);
        Files.deleteIfExists(stage);
        NewImage.syncDirectory(child);
        progress.update(j.size, j.size);
        return new DiskOps.CopyResult(written, j.size - written);
    }

    /** Phase 1: the journal naming the child's parent, durable before the parent is touched. */
    static Journal commit(Path child) throws IOException {
        Journal j;
        try (VhdxDisk c = VhdxDisk.open(child, true)) {
            if (c.parent() == null) {
                throw new IllegalArgumentException(child + " is not a differencing image");
            }
            j = new Journal(c.parentChain().getFirst().path().toAbsolutePath(), c.parent().virtualDiskId(),
                c.size(), c.blockSize(), List.of(), List.of(), false);
        }
        j.write(journalOf(child));
        return j;
    }

    /**
     * Phase 2: the child's view of every block it stores (or zeroes) → the parent, then a flush; returns the
     * bytes written. {@code besideReaders}: the parent is also open read-only elsewhere in this process (an
     * online merge under a running chain), so it is opened with a shared flock.
     */
    static long copy(Path child, Journal j, Progress progress, boolean besideReaders) throws IOException {
        if (!Files.exists(child)) {
            return 0; // deleted at finish, which follows the flush of this phase: nothing left to copy
        }
        long written = 0;
        VhdxDisk p = besideReaders ? VhdxDisk.openBesideReaders(j.parent) : VhdxDisk.open(j.parent, false);
        VhdxDisk c;
        try {
            checkParent(j, p);
            // the child reads through the parent being written; after a kill part-way the parent has a new
            // DataWriteGuid, which the journal vouches for (the class comment says why the view is the same)
            c = VhdxDisk.openChildReadingThrough(child, p, true);
        } catch (IOException | RuntimeException | Error e) {
            p.close();
            throw e;
        }
        try (c; p; Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(DiskOps.CHUNK, 4096);
            for (long b = 0; b < c.blockCount(); b++) {
                long start = b * j.blockSize;
                long len = Math.min(j.blockSize, j.size - start);
                switch (c.blockState(b)) {
                    case NOT_PRESENT, UNDEFINED -> {
                        continue;
                    }
                    case ZERO -> p.writeZeroes(start, len);
                    default -> {
                        for (long d = 0; d < len; ) {
                            long n = Math.min(DiskOps.CHUNK, len - d);
                            MemorySegment part = buf.asSlice(0, n);
                            c.read(start + d, part);
                            p.write(start + d, part);
                            d += n;
                        }
                    }
                }
                written += len;
                progress.update(start + len, j.size);
            }
            p.flush();
        }
        return written;
    }

    private static void checkParent(Journal j, VhdxDisk p) {
        if (!p.virtualDiskId().equals(j.parentDiskId)) {
            throw new IllegalStateException("the merge journal names parent " + j.parent + " with VirtualDiskId "
                + j.parentDiskId + ", which that file no longer is; not resuming");
        }
    }

    private static long apply(Journal j, Path stage, Progress progress) throws IOException {
        return apply(j, stage, progress, false);
    }

    /** Phase 2 of a journal in the staged format: stage → parent. */
    static long apply(Journal j, Path stage, Progress progress, boolean besideReaders) throws IOException {
        if (!Files.exists(stage)) {
            throw new IOException("the merge stage " + stage + " is missing; the journal beside it cannot be finished");
        }
        long written = 0;
        try (VirtualDisk p = besideReaders ? VhdxDisk.openBesideReaders(j.parent) : VirtualDisks.open(j.parent, false);
             RawDisk s = RawDisk.open(stage, true);
             Arena arena = Arena.ofConfined()) {
            if (!(p instanceof VhdxDisk x) || !x.virtualDiskId().equals(j.parentDiskId)) {
                throw new IllegalStateException("the merge journal beside " + stage + " names parent " + j.parent
                    + " with VirtualDiskId " + j.parentDiskId + ", which that file no longer is; not resuming");
            }
            MemorySegment buf = arena.allocate(DiskOps.CHUNK, 4096);
            for (long b : j.dataBlocks) {
                long start = b * j.blockSize;
                long len = Math.min(j.blockSize, j.size - start);
                for (long d = 0; d < len; ) {
                    long n = Math.min(DiskOps.CHUNK, len - d);
                    MemorySegment part = buf.asSlice(0, n);
                    s.read(start + d, part);
                    p.write(start + d, part);
                    d += n;
                }
                written += len;
                progress.update(j.size / 2 + (start + len) / 2, j.size);
            }
            for (long b : j.zeroBlocks) {
                long start = b * j.blockSize;
                long len = Math.min(j.blockSize, j.size - start);
                p.writeZeroes(start, len);
                written += len;
            }
            p.flush();
        }
        return written;
    }

    /** What phase 2 needs, durable before the parent is touched; {@code staged}: the earlier format. */
    record Journal(Path parent, UUID parentDiskId, long size, long blockSize, List<Long> dataBlocks,
                   List<Long> zeroBlocks, boolean staged) {
        void write(Path journal) throws IOException {
            StringBuilder b = new StringBuilder(staged ? STAGED_MAGIC : MAGIC).append('\n');
            b.append("parent=").append(parent).append('\n');
            b.append("parentDiskId=").append(parentDiskId).append('\n');
            b.append("size=").append(size).append('\n');
            b.append("blockSize=").append(blockSize).append('\n');
            b.append("data=").append(join(dataBlocks)).append('\n');
            b.append("zero=").append(join(zeroBlocks)).append('\n');
            b.append("end\n");
            Path tmp = journal.resolveSibling(journal.getFileName() + ".tmp");
            Files.writeString(tmp, b, StandardCharsets.UTF_8);
            try (PosixFile f = PosixFile.open(tmp, false)) {
                f.sync();
            }
            Files.move(tmp, journal, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            NewImage.syncDirectory(journal);
        }

        static Journal read(Path journal) throws IOException {
            List<String> lines = Files.readAllLines(journal, StandardCharsets.UTF_8);
            boolean staged = !lines.isEmpty() && lines.getFirst().equals(STAGED_MAGIC);
            if (lines.isEmpty() || !(staged || lines.getFirst().equals(MAGIC)) || !lines.getLast().equals("end")) {
                throw new IOException(journal + " is not a complete phost merge journal; remove it to start over");
            }
            Map<String, String> kv = new LinkedHashMap<>();
            for (String l : lines.subList(1, lines.size() - 1)) {
                int eq = l.indexOf('=');
                if (eq < 0) {
                    throw new IOException(journal + ": bad line \"" + l + "\"");
                }
                kv.put(l.substring(0, eq), l.substring(eq + 1));
            }
            try {
                return new Journal(Path.of(kv.get("parent")), UUID.fromString(kv.get("parentDiskId")),
                    Long.parseLong(kv.get("size")), Long.parseLong(kv.get("blockSize")), split(kv.get("data")),
                    split(kv.get("zero")), staged);
            } catch (RuntimeException e) {
                throw new IOException(journal + ": unreadable merge journal (" + e.getMessage() + ")", e);
            }
        }

        private static String join(List<Long> l) {
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < l.size(); i++) {
                b.append(i == 0 ? "" : ",").append(l.get(i));
            }
            return b.toString();
        }

        private static List<Long> split(String s) {
            List<Long> out = new ArrayList<>();
            if (s != null && !s.isEmpty()) {
                for (String p : s.split(",")) {
                    out.add(Long.parseLong(p));
                }
            }
            return out;
        }
    }
}
