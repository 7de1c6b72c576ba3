package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;

/**
 * Optimize-VHD's compact of a dynamic or differencing VHD in place, keeping the file (its inode) and its
 * footer byte for byte (unique id and timestamp: what a child checks and records), so children stay linked:
 * <pre>
 *   1. release: blocks whose data reads as zeros (dynamic) or whose bitmap is empty (differencing) leave the BAT
 *   2. repeat: free slots below the last blocks ← the last blocks (copy, fdatasync, then the BAT, fdatasync)
 *   3. the footer is written after the last block, fdatasync, then the file is cut after it
 * </pre>
 * Why a kill at any point leaves an image that reads the same: a BAT entry only ever changes between two
 * places holding the same bytes (or from a block of zeros / of nothing to "unallocated"), a block is copied
 * and made durable before its entry points at it, a batch copies only into space that was free before it,
 * and the footer stays the file's last sector at every moment (the new one is written before the cut). A
 * kill leaves at worst unreferenced space, which the next compact reclaims. The image must not be open
 * elsewhere: the exclusive flock is taken, as retrim does.
 */
final class VhdCompactInPlace {
    private static final ValueLayout.OfInt U32 = VhdFooter.U32;
    private static final long PAGE = 4096;
    /** Moves per fdatasync pair: bounds how much copying a kill can waste. */
    private static final int BATCH = 64;
    private static final int ENTRIES_PER_SECTOR = VhdDisk.SECTOR / 4;

    private final PosixFile f;
    private final Arena arena;
    private final VhdOpen.Parsed p;
    private final int[] bat;
    private final long bitmapBytes;
    private final long blockBytes;
    private final boolean differencing;
    private final MemorySegment buf;
    private final MemorySegment zeros;
    private int released;

    private VhdCompactInPlace(PosixFile f, Arena arena, VhdOpen.Parsed p) {
        this.f = f;
        this.arena = arena;
        this.p = p;
        this.bat = p.bat();
        this.bitmapBytes = VhdDisk.bitmapBytesFor(p.header().blockSize());
        this.blockBytes = bitmapBytes + p.header().blockSize();
        this.differencing = p.footer().diskType() == VhdFooter.TYPE_DIFFERENCING;
        this.buf = arena.allocate(blockBytes, PAGE);
        this.zeros = arena.allocate(blockBytes, PAGE);
    }

    /** Compacts the dynamic or differencing VHD at {@code path}; returns how many blocks were released. */
    static int compact(Path path) throws IOException {
        try (PosixFile f = PosixFile.open(path, false); Arena arena = Arena.ofConfined()) {
            if (!f.tryLock(true)) {
                throw new IOException(path + " is in use (open by another phost process); not compacting it");
            }
            VhdOpen.Parsed p = VhdOpen.parse(f, arena);
            if (p.header() == null) {
                throw new IllegalArgumentException(path + " is a fixed VHD: nothing to compact");
            }
            if (p.footerFromCopy()) {
                throw new VhdFormatException(Reason.BAD_FOOTER_CHECKSUM, p.footerOffset(),
                    "the footer is damaged; run check --repair first");
            }
            VhdCompactInPlace c = new VhdCompactInPlace(f, arena, p);
            c.releaseEmptyBlocks();
            while (c.moveBatch() > 0) {
                // each batch made durable before the next looks for free space
            }
            c.cutAfterLastBlock();
            return c.released;
        }
    }

    private void releaseEmptyBlocks() throws IOException {
        boolean[] dirty = new boolean[sectorsOfBat()];
        for (int b = 0; b < bat.length; b++) {
            long at = offsetOf(b);
            if (at < 0) {
                continue;
            }
            f.readFully(buf, at);
            boolean empty = differencing
                ? buf.asSlice(0, bitmapBytes).mismatch(zeros.asSlice(0, bitmapBytes)) == -1
                : buf.asSlice(bitmapBytes).mismatch(zeros.asSlice(bitmapBytes)) == -1;
            if (empty) {
                bat[b] = -1;
                dirty[b / ENTRIES_PER_SECTOR] = true;
                released++;
            }
        }
        writeBat(dirty);
    }

    /** One batch: the last blocks into the lowest free slots below them. Returns how many moved. */
    private int moveBatch() throws IOException {
        List<long[]> blocks = new ArrayList<>(); // {fileOffset, block}
        for (int b = 0; b < bat.length; b++) {
            if (offsetOf(b) >= 0) {
                blocks.add(new long[] {offsetOf(b), b});
            }
        }
        blocks.sort(Comparator.comparingLong((long[] x) -> x[0]).reversed());
        List<Long> slots = freeSlots(Math.min(BATCH, blocks.size()));
        int moves = 0;
        while (moves < slots.size() && slots.get(moves) < blocks.get(moves)[0]) {
            moves++;
        }
        if (moves == 0) {
            return 0;
        }
        for (int i = 0; i < moves; i++) {
            copyBlock(blocks.get(i)[0], slots.get(i));
        }
        f.dataSync(); // the copies are durable before any entry points at them
        boolean[] dirty = new boolean[sectorsOfBat()];
        for (int i = 0; i < moves; i++) {
            int b = (int) blocks.get(i)[1];
            bat[b] = (int) (slots.get(i) / VhdDisk.SECTOR);
            dirty[b / ENTRIES_PER_SECTOR] = true;
        }
        writeBat(dirty);
        return moves;
    }

    /**
     * Up to {@code max} block-sized slots in the space no structure or block uses, lowest first, each placed
     * so its data area starts on a 4 KiB boundary (as the blocks we allocate).
     */
    private List<Long> freeSlots(int max) throws IOException {
        List<long[]> used = usedRanges();
        used.sort(Comparator.comparingLong(r -> r[0]));
        List<Long> slots = new ArrayList<>();
        long at = 0;
        for (long[] r : used) {
            for (long s = slotAtOrAfter(at); s + blockBytes <= r[0] && slots.size() < max; s = slotAtOrAfter(s + blockBytes)) {
                slots.add(s);
            }
            at = Math.max(at, r[1]);
        }
        return slots;
    }

    private long slotAtOrAfter(long at) {
        long s = ((at + bitmapBytes + PAGE - 1) & -PAGE) - bitmapBytes;
        return s < at ? s + PAGE : s;
    }

    /** Structures, locator data and blocks, unsorted; the footer's sector closes the list. */
    private List<long[]> usedRanges() {
        VhdDynamicHeader h = p.header();
        List<long[]> used = new ArrayList<>();
        used.add(new long[] {0, VhdFooter.LENGTH});
        long headerAt = p.footer().dataOffset();
        used.add(new long[] {headerAt, headerAt + VhdDynamicHeader.LENGTH});
        used.add(new long[] {h.tableOffset(), h.tableOffset() + ((h.maxTableEntries() * 4 + VhdDisk.SECTOR - 1) & -VhdDisk.SECTOR)});
        for (int i = 0; i < VhdDynamicHeader.LOCATOR_COUNT; i++) {
            if (h.locatorCode(i) != 0 && (h.locatorSpace(i) != 0 || h.locatorLength(i) != 0)) {
                long loc = h.locatorDataOffset(i);
                used.add(new long[] {loc, loc + Math.max(h.locatorSpace(i) * VhdDisk.SECTOR, h.locatorLength(i))});
            }
        }
        for (int b = 0; b < bat.length; b++) {
            long s = offsetOf(b);
            if (s >= 0) {
                used.add(new long[] {s, s + blockBytes});
            }
        }
        used.add(new long[] {p.footerOffset(), p.footerOffset() + VhdFooter.LENGTH});
        return used;
    }

    /**
     * Copies a block (bitmap and data) into a free slot. The slot is punched first so that only the data's
     * non-zero pages need writing: the moved block takes no more file space than it did (the file system
     * without hole punching gets every page written).
     */
    private void copyBlock(long from, long to) throws IOException {
        f.readFully(buf, from);
        if (!f.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, to, blockBytes)) {
            f.writeFully(buf, to);
            return;
        }
        f.writeFully(buf.asSlice(0, bitmapBytes), to);
        for (long o = bitmapBytes; o < blockBytes; o += PAGE) {
            long n = Math.min(PAGE, blockBytes - o);
            if (buf.asSlice(o, n).mismatch(zeros.asSlice(0, n)) != -1) {
                f.writeFully(buf.asSlice(o, n), to + o);
            }
        }
    }

    /**
     * The footer (unchanged: the same bytes) right after the last structure or block, made durable, then the
     * file cut after it. A kill in between leaves the old footer last: still the same image.
     */
    private void cutAfterLastBlock() throws IOException {
        long end = 0;
        for (long[] r : usedRanges()) {
            if (r[0] != p.footerOffset()) {
                end = Math.max(end, r[1]);
            }
        }
        end = (end + VhdDisk.SECTOR - 1) & -(long) VhdDisk.SECTOR;
        if (end >= p.footerOffset()) {
            return;
        }
        f.writeFully(p.footer().segment(), end);
        f.dataSync();
        f.truncate(end + VhdFooter.LENGTH);
        f.dataSync();
    }

    private int sectorsOfBat() {
        return (bat.length + ENTRIES_PER_SECTOR - 1) / ENTRIES_PER_SECTOR;
    }

    /** Writes the BAT sectors marked dirty from the in-memory table, then fdatasyncs. */
    private void writeBat(boolean[] dirty) throws IOException {
        MemorySegment sector = arena.allocate(VhdDisk.SECTOR, 8);
        boolean any = false;
        for (int s = 0; s < dirty.length; s++) {
            if (!dirty[s]) {
                continue;
            }
            int first = s * ENTRIES_PER_SECTOR;
            int n = Math.min(ENTRIES_PER_SECTOR, bat.length - first);
            for (int i = 0; i < n; i++) {
                sector.set(U32, 4L * i, bat[first + i]);
            }
            f.writeFully(sector.asSlice(0, 4L * n), p.header().tableOffset() + 4L * first);
            any = true;
        }
        if (any) {
            f.dataSync();
        }
    }

    private long offsetOf(int b) {
        return bat[b] == -1 ? -1 : Integer.toUnsignedLong(bat[b]) * VhdDisk.SECTOR;
    }
}
