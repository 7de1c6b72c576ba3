package io.phost.vhdx;

import java.util.Locale;

/**
 * How the bytes of a virtual disk are stored, the one format enum of config, CLI and engine; the name is
 * what users type ({@code --format vhd}, {@code format = "vhdx"}).
 */
public enum DiskFormat {
    /** Hyper-V's VHDX (fixed, dynamic or differencing). */
    VHDX,
    /** Legacy VHD (fixed, dynamic or differencing; at most 2040 GiB). */
    VHD,
    /** A flat image file; a "dynamic" raw file is a sparse file. */
    RAW,
    /** A host block device handed through as is ({@link RawDisk#openDevice}); never created or converted. */
    PASSTHROUGH,
    /** A Ceph RBD image, opened through librbd by the storage core; the image tools do not take it. */
    RBD;

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static DiskFormat parse(String s) {
        return valueOf(s.trim().toUpperCase(Locale.ROOT));
    }
}
