package io.phost.storage.backend;

/** A disk whose bytes live at the same offsets in one file or block device: engines may use the fd directly. */
public interface FdBacked {
    /** The open fd; valid until the disk is closed. */
    int fd();

    /** True when the fd was opened with O_DIRECT (buffers and offsets must be aligned to {@link #directAlignment()}). */
    boolean direct();

    /** Alignment O_DIRECT needs (the logical block size), or 1. */
    int directAlignment();
}
