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
 * merge again. Three phases, because an open child holds a shared lock on its parent and the parent needs
 * an exclusive one to be written, and because the parent's first write gives it a new DataWriteGuid (after
 * which the child no longer opens):
 * <pre>
 *   1 stage    child open: its view of every block it says something about → CHILD.merge-stage (sparse raw)
 *   2 journal  CHILD.merge-journal written (tmp + fsync + rename): parent, its VirtualDiskId, block lists
 *              ── from here on the merge is committed: a rerun resumes at 3 without opening the child ──
 *   3 apply    stage → parent (ZERO blocks as zeros), flush; idempotent, so a rerun repeats it whole
 *   4 finish   child deleted (or re-linked to the parent's new DataWriteGuid with --keep-child), then
 *              the journal and the stage
 * </pre>
 * For sectors the child does not store, its view is the parent's own data, so rewriting them changes
 * nothing. A kill in phase 1 leaves the chain untouched (a stale stage without a journal is discarded).
 */
final class VhdxMerge {
    private static final String MAGIC = "phost-vhdx-merge 1";

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
        } else {
            Files.deleteIfExists(stage); // a phase-1 leftover of ours: no journal means nothing was committed
            j = stage(child, stage, progress);
            j.write(journal);
        }
        long written = apply(j, stage, progress);
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

    static Journal stage(Path child, Path stage, Progress progress) throws IOException {
        try (VhdxDisk c = VhdxDisk.open(child, true)) {
            if (c.parent() == null) {
                throw new IllegalArgumentException(child + " is not a differencing image");
            }
            Journal j = new Journal(c.parentChain().getFirst().path().toAbsolutePath(), c.parent().virtualDiskId(),
                c.size(), c.blockSize(), new ArrayList<>(), new ArrayList<>());
            boolean ok = false;
            try (RawDisk s = RawDisk.create(stage, (j.size + 511) & -512L, false); Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(DiskOps.CHUNK, 4096);
                for (long b = 0; b < c.blockCount(); b++) {
                    long start = b * j.blockSize;
                    long len = Math.min(j.blockSize, j.size - start);
                    switch (c.blockState(b)) {
                        case NOT_PRESENT, UNDEFINED -> {
                            continue;
                        }
                        case ZERO -> j.zeroBlocks.add(b);
                        default -> {
                            j.dataBlocks.add(b);
                            for (long d = 0; d < len; ) {
                                long n = Math.min(DiskOps.CHUNK, len - d);
                                MemorySegment part = buf.asSlice(0, n);
                                c.read(start + d, part);
                                s.write(start + d, part);
                                d += n;
                            }
                        }
                    }
                    progress.update((start + len) / 2, j.size);
                }
                s.flush();
                ok = true;
            } finally {
                if (!ok) {
                    Files.deleteIfExists(stage);
                }
            }
            return j;
        }
    }

    private static long apply(Journal j, Path stage, Progress progress) throws IOException {
        return apply(j, stage, progress, false);
    }

    /** Phase 3; {@code besideReaders}: the parent is open read-only in this process (an online merge). */
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

    /** What phase 3 needs, durable before the parent is touched. */
    record Journal(Path parent, UUID parentDiskId, long size, long blockSize, List<Long> dataBlocks,
                   List<Long> zeroBlocks) {
        void write(Path journal) throws IOException {
            StringBuilder b = new StringBuilder(MAGIC).append('\n');
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
            if (lines.isEmpty() || !lines.getFirst().equals(MAGIC) || !lines.getLast().equals("end")) {
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
                    split(kv.get("zero")));
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
