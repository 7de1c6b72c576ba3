package io.phost.vhdx;

import java.util.Locale;

/** How an image stores its blocks. Raw images are FIXED (preallocated) or DYNAMIC (sparse file). */
public enum DiskType {
    FIXED, DYNAMIC, DIFFERENCING;

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static DiskType parse(String s) {
        return valueOf(s.trim().toUpperCase(Locale.ROOT));
    }
}
