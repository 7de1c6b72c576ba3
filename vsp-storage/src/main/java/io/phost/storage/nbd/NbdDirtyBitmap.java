package io.phost.storage.nbd;

import io.phost.storage.ChangeTracker;

import java.nio.ByteBuffer;

/**
 * The {@code qemu:dirty-bitmap:NAME} metadata context of an export (as qemu-nbd's {@code -B NAME} serves a
 * persistent bitmap): BLOCK_STATUS answers with extents whose flags are 1 (dirty: written since the last
 * backup point) or 0 (clean), so {@code nbdinfo --map=qemu:dirty-bitmap:NAME} lists what an incremental
 * backup copies. Read-only, built once per backup from a {@link ChangeTracker.Cut}; a full cut reports
 * the whole disk dirty.
 */
public final class NbdDirtyBitmap {
    static final String PREFIX = "qemu:dirty-bitmap:";
    static final int CONTEXT_ID = 2;
    private static final int SHIFT = Integer.numberOfTrailingZeros(ChangeTracker.GRANULARITY);

    private final String name;
    private final ChangeTracker.Cut cut;

    public NbdDirtyBitmap(String name, ChangeTracker.Cut cut) {
        this.name = name;
        this.cut = cut;
    }

    /** The full context name, {@code qemu:dirty-bitmap:NAME}. */
    public String context() {
        return PREFIX + name;
    }

    private boolean dirty(long block) {
        return cut.full() || (cut.words()[(int) (block >>> 6)] & (1L << block)) != 0;
    }

    /**
     * Puts up to {@code max} {@code u32 length | u32 flags} extents describing {@code [offset, offset+len)}
     * (within the disk) into {@code out}; runs of equal state merge; no allocation.
     */
    void extents(long offset, long len, int max, ByteBuffer out) {
        long end = offset + len;
        long at = offset;
        for (int n = 0; at < end && n < max; n++) {
            boolean d = dirty(at >>> SHIFT);
            long run = ((at >>> SHIFT) + 1) << SHIFT;
            while (run < end && dirty(run >>> SHIFT) == d && run - at < (1L << 31)) {
                run += ChangeTracker.GRANULARITY;
            }
            run = Math.min(run, end);
            out.putInt((int) (run - at)).putInt(d ? 1 : 0);
            at = run;
        }
    }
}
