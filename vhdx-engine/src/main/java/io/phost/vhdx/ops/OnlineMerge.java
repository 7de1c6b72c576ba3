package io.phost.vhdx.ops;

import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhd.VhdMaintenance;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The journalled VHDX merge ({@code VhdxMerge}) in steps, for a caller that keeps a chain through the
 * child open and running meanwhile (deleting a checkpoint of a running partition). The running chain
 * {@code leaf → … → child → parent} reads every range the merge writes from the child, which shadows it,
 * so the parent can be written while that chain stays open; the caller re-links the child's own child to
 * the parent (under a short I/O pause) before calling {@link #finish}.
 * <pre>
 *   prepare   the journal (tmp + fsync + rename): committed
 *   apply     child's view → parent, copied once (shared flock: this process's readers stay open), flush;
 *             idempotent
 *   ...       caller: re-link the child's children to the parent, record it durably
 *   finish    delete child, journal (and a stage of the earlier staged format)
 * </pre>
 * A kill before the journal exists leaves the chain untouched ({@link #discardUncommitted} removes a stage
 * an earlier version may have left); a kill after it is finished by running {@link #apply} again
 * ({@link #committed} says which).
 * <p>A differencing VHD needs no stage or journal: its link to the parent is the parent's unique id, which
 * writes never change, so the child keeps opening on a half-written parent and {@link #apply} (copy every
 * range the child stores into the parent, flush) can simply run again after a kill.
 */
public final class OnlineMerge {
    private OnlineMerge() {
    }

    /** True when a merge of {@code child} has its journal: it must be finished, not rolled back. */
    public static boolean committed(Path child) {
        return Files.exists(VhdxMerge.journalOf(child));
    }

    /** Removes a stage an earlier version left when killed before its journal (the chain was never touched). */
    public static void discardUncommitted(Path child) throws IOException {
        if (!committed(child)) {
            Files.deleteIfExists(VhdxMerge.stageOf(child));
        }
    }

    /** Writes the journal; nothing to do when it exists. */
    public static void prepare(Path child, Progress progress) throws IOException {
        DiskFormat f = VirtualDisks.detect(child);
        if (f == DiskFormat.VHD) {
            requireDifferencingVhd(child);
            return;
        }
        if (f != DiskFormat.VHDX) {
            throw new IllegalArgumentException(child + ": an online merge needs a differencing VHDX or VHD");
        }
        if (committed(child)) {
            return;
        }
        Files.deleteIfExists(VhdxMerge.stageOf(child));
        VhdxMerge.commit(child);
    }

    /** Writes the child's view into the parent and flushes it; returns the bytes written. Repeatable. */
    public static long apply(Path child, Progress progress) throws IOException {
        if (isVhd(child)) {
            return DiskOps.mergeVhd(child, progress).bytesWritten(); // no flock on VHDs: the running chain's readers stay
        }
        Path journal = VhdxMerge.journalOf(child);
        if (!Files.exists(journal)) {
            throw new IllegalStateException("no merge journal beside " + child + ": prepare first");
        }
        VhdxMerge.Journal j = VhdxMerge.Journal.read(journal);
        return j.staged() ? VhdxMerge.apply(j, VhdxMerge.stageOf(child), progress, true)
            : VhdxMerge.copy(child, j, progress, true);
    }

    /** The parent the journal names (where {@link #apply} writes). */
    public static Path parentOf(Path child) throws IOException {
        return VhdxMerge.Journal.read(VhdxMerge.journalOf(child)).parent();
    }

    /**
     * Re-links {@code grandchild} (an image whose parent is the merged child; closed) to {@code parent}: its
     * view is unchanged (the parent now reads what the child did), so it keeps its own DataWriteGuid.
     */
    public static void relink(Path grandchild, Path parent) throws IOException {
        if (isVhd(grandchild)) {
            VhdMaintenance.setParent(grandchild, parent, true); // the parent's unique id is not the child's: forced
            return;
        }
        io.phost.vhdx.vhdx.VhdxDisk.setParent(grandchild, parent, true, true);
    }

    private static boolean isVhd(Path image) throws IOException {
        return Files.exists(image) && VirtualDisks.detect(image) == DiskFormat.VHD;
    }

    private static void requireDifferencingVhd(Path child) throws IOException {
        try (VhdDisk c = VhdDisk.open(child, true)) {
            if (c.parent() == null) {
                throw new IllegalArgumentException(child + ": an online merge needs a differencing VHD");
            }
        }
    }

    /** Deletes the merged child, then the journal and the stage. */
    public static void finish(Path child) throws IOException {
        Files.deleteIfExists(child);
        Files.deleteIfExists(VhdxMerge.journalOf(child));
        Files.deleteIfExists(VhdxMerge.stageOf(child));
        NewImage.syncDirectory(child);
    }
}
