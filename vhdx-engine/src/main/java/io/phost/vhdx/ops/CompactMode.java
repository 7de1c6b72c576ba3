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
 *   <li>RETRIM (-Mode Retrim): nothing is compacted; the file space the image does not use (and zero pages
 *       inside its blocks) is punched out of the file, the image's allocation unchanged ({@link ImageRetrim}).</li>
 * </ul>
 */
public enum CompactMode {
    FULL, QUICK, RETRIM;

    /** full | quick | retrim, and Hyper-V's prezeroed (= full) and pretrimmed (= quick). */
    public static CompactMode parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "full", "prezeroed" -> FULL;
            case "quick", "pretrimmed" -> QUICK;
            case "retrim" -> RETRIM;
            default -> throw new IllegalArgumentException("unknown compact mode \"" + s + "\" (full, quick, retrim, prezeroed, pretrimmed)");
        };
    }
}
