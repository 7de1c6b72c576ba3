package io.phost.vhdx.ops;

import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Optimize-VHD's compact of a dynamic VHDX in place, keeping the file (its inode, VirtualDiskId and
 * DataWriteGuid: children stay linked):
 * <pre>
 *   1. FULL only: blocks that read as zeros become ZERO (no file space)
 *   2. repeat: free 1 MiB-aligned slots below the last block ← the last blocks (copy, then flush)
 *   3. close: the log is emptied, then the file is cut after the last block
 *   4. retrim: zero pages left inside blocks are punched
 * </pre>
 * Every BAT change goes through the log, and a batch of moves copies into slots that were free before
 * the batch (never into a place a moved block left in the same batch), so a kill at any point leaves an
 * image that reads the same, at worst with blocks at both places or the file not yet cut.
 */
final class VhdxCompactInPlace {
    /** Moves per flush: bounds how much copying a kill can waste. */
    private static final int BATCH = 64;

    private VhdxCompactInPlace() {}

    static void compact(VhdxDisk d, CompactMode mode, Progress progress) throws IOException {
        d.startLayoutSession();
        if (mode == CompactMode.FULL) {
            zeroBlocksOfZeros(d, progress);
            d.flush();
        }
        while (moveBatch(d) > 0) {
            d.flush();
        }
        d.cutAfterLastUsedOnClose();
    }

    private static void zeroBlocksOfZeros(VhdxDisk d, Progress progress) throws IOException {
        long bs = d.blockSize();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.min(bs, 1 << 20), 4096);
            MemorySegment zeros = a.allocate(buf.byteSize(), 4096);
            for (long b = 0; b < d.blockCount(); b++) {
                if (d.blockState(b) != VhdxDisk.BlockState.FULLY_PRESENT) {
                    continue;
                }
                long off = b * bs;
                long n = Math.min(bs, d.size() - off);
                boolean zero = true;
                for (long o = 0; o < n && zero; o += buf.byteSize()) {
                    long len = Math.min(buf.byteSize(), n - o);
                    d.read(off + o, buf.asSlice(0, len));
                    zero = MemorySegment.mismatch(buf, 0, len, zeros, 0, len) == -1;
                }
                if (zero && n == bs) {
                    d.writeZeroes(off, bs); // a whole block: state ZERO, its file space released
                }
                progress.update(b + 1, d.blockCount());
            }
        }
    }

    /** One batch: the last blocks into the first free slots before them. Returns how many moved. */
    private static int moveBatch(VhdxDisk d) throws IOException {
        long bs = d.blockSize();
        List<long[]> used = d.fileRangesInUse();
        used.sort(Comparator.comparingLong(r -> r[0]));
        List<long[]> blocks = new ArrayList<>(); // {fileOffset, block}
        for (long b = 0; b < d.blockCount(); b++) {
            VhdxDisk.BlockState st = d.blockState(b);
            if (st == VhdxDisk.BlockState.FULLY_PRESENT || st == VhdxDisk.BlockState.PARTIALLY_PRESENT) {
                blocks.add(new long[] {d.blockFileOffset(b), b});
            }
        }
        blocks.sort(Comparator.comparingLong((long[] x) -> x[0]).reversed());
        List<Long> slots = new ArrayList<>();
        long at = 0;
        for (long[] r : used) {
            for (long s = roundUp(at, 1 << 20); s + bs <= r[0] && slots.size() < BATCH; s += bs) {
                slots.add(s);
            }
            at = Math.max(at, r[1]);
        }
        int moved = 0;
        for (int i = 0; i < Math.min(slots.size(), blocks.size()); i++) {
            if (slots.get(i) >= blocks.get(i)[0]) {
                break;
            }
            d.moveBlock(blocks.get(i)[1], slots.get(i));
            moved++;
        }
        return moved;
    }

    private static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }
}
