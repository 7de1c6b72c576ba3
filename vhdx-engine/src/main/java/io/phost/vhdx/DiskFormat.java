package io.phost.vhdx;

import java.util.Locale;

/** The image formats the engine reads and writes; the name is what users type ({@code --format vhd}). */
public enum DiskFormat {
    VHDX, VHD, RAW;

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static DiskFormat parse(String s) {
        return valueOf(s.trim().toUpperCase(Locale.ROOT));
    }
}
