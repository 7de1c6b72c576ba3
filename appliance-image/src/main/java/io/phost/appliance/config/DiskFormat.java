package io.phost.appliance.config;

/** {@code disk.format}: how the bytes of a virtual disk are stored. */
public enum DiskFormat {
    /** Hyper-V's VHDX (fixed, dynamic or differencing). */
    VHDX,
    /** Legacy VHD (fixed, dynamic or differencing; at most 2040 GiB). */
    VHD,
    /** A flat image file; a "dynamic" raw file is a sparse file. */
    RAW,
    /** A host block device handed through as is. */
    PASSTHROUGH,
    /** A Ceph RBD image ({@code [disk.rbd]}), through librbd. */
    RBD
}
