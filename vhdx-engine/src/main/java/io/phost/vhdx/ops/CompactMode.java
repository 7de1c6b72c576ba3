package io.phost.vhdx.ops;

import java.util.Locale;

/**
 * How {@code compact} finds space to release, after Optimize-VHD's modes.
 * <ul>
 *   <li>FULL (Optimize-VHD -Mode Full, Prezeroed): every allocated block is read; blocks and runs that read
 *       as zeros are dropped, as are blocks the guest unmapped;</li>
 *   <li>QUICK (-Mode Quick, Pretrimmed): only what the image's metadata already marks free is dropped
 *       (unallocated, unmapped and zero blocks, unreferenced file space); no data is read to find zeros.
 *       VHD and raw images have no such metadata beyond their holes: QUICK is FULL for them.</li>
 * </ul>
 * Hyper-V's Retrim (trims passed to the host storage without compacting) has no counterpart here.
 */
public enum CompactMode {
    FULL, QUICK;

    /** full | quick, and Hyper-V's prezeroed (= full) and pretrimmed (= quick). */
    public static CompactMode parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "full", "prezeroed" -> FULL;
            case "quick", "pretrimmed" -> QUICK;
            default -> throw new IllegalArgumentException("unknown compact mode \"" + s + "\" (full, quick, prezeroed, pretrimmed)");
        };
    }
}
