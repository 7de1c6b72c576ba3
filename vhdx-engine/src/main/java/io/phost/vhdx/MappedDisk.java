package io.phost.vhdx;

import java.io.IOException;

/**
 * A {@link VirtualDisk} whose steady-state I/O is a plain {@code pread}/{@code pwrite} of one contiguous
 * range of its image file, so a caller may do that I/O itself (e.g. with io_uring) and skip the disk's own
 * {@code read}/{@code write} for it.
 *
 * <pre>
 *   long at = disk.mapWrite(offset, length);
 *   if (at >= 0)  pwrite(disk.mappedFd(), buf, length, at)     // the fast path: one syscall, no hop
 *   else          disk.write(offset, buf)                      // allocation, bitmaps, parents, session start
 * </pre>
 *
 * <p>{@code map*} returns -1 whenever a plain transfer would be wrong or incomplete: an unallocated, zero,
 * unmapped or partially present block, a read that needs a parent, a range that crosses a block boundary,
 * a log replayed in memory (read-only open of a dirty image), a write before the disk's first
 * {@code write} (which starts the session: VHDX DataWriteGuid), a read-only or closed disk, a range that
 * is not sector-aligned or past the end. The answer is a snapshot: it stays valid while the block stays
 * allocated, and images never reuse a block's file space while open, so a transfer racing an unmap at
 * worst lands in space nothing references any more.
 *
 * <p>Hot path: both calls are lock-free and allocation-free. They read allocation tables with acquire
 * semantics; the disks publish an entry (release) only after the block's data and metadata are written,
 * so a caller that sees a mapped range sees the data the slow path put there.
 *
 * <p>Durability: {@link #flush()} makes writes done through {@link #mappedFd()} durable as well (it
 * fdatasyncs the image file even when no metadata changed; every fd of the file shares its inode).
 */
public interface MappedDisk extends VirtualDisk {
    /** The image-file offset holding guest bytes {@code [offset, offset+length)}, or -1 (see class doc). */
    long mapRead(long offset, long length);

    /** As {@link #mapRead}, for a write that needs no metadata change; -1 sends it through {@link #write}. */
    long mapWrite(long offset, long length);

    /**
     * An fd of the image file for mapped transfers, opened on first call with O_DIRECT where the file
     * system allows it (bypassing the host page cache like the raw-disk backend), else a buffered fd
     * ({@code -Dphost.vhdx.mappedDirect=false} asks for buffered: host page cache, as the disk's own I/O).
     * Owned by the disk and valid until {@link #close()}; -1 when the disk is closed.
     */
    int mappedFd() throws IOException;

    /**
     * Alignment in bytes that buffer addresses, lengths and file offsets need on {@link #mappedFd()}:
     * 1 for a buffered fd, 512 for O_DIRECT (the smallest logical block a host device has; on a 4 KiB
     * device the kernel answers EINVAL and the caller should retry through {@link #read}/{@link #write}).
     * Valid after {@link #mappedFd()}.
     */
    int mappedAlignment();

    @Override
    default DiskCapabilities capabilities() {
        return DiskCapabilities.mappedRanges(this);
    }
}
