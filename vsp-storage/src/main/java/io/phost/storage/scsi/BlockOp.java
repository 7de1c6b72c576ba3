package io.phost.storage.scsi;

/**
 * What one core request does to a disk, whatever the transport said: a SCSI CDB (decoded by
 * {@link ScsiLun}), a virtio-blk request or an NBD command all become one of these on a {@link ScsiRequest}.
 */
public enum BlockOp {
    READ,
    WRITE,
    FLUSH,
    /** Deallocate ranges (SCSI UNMAP, virtio DISCARD, NBD TRIM); may be chained over several ranges. */
    UNMAP,
    /** Zero ranges, keeping them allocated (WRITE SAME without UNMAP, virtio WRITE_ZEROES, NBD WRITE_ZEROES). */
    WRITE_ZEROES,
    /** WRITE SAME with a non-zero block: the queue replicates it and writes the range chunk by chunk (SCSI only). */
    WRITE_PATTERN;

    /** True when the operation changes the disk (refused on a read-only LUN). */
    public boolean writes() {
        return this != READ && this != FLUSH;
    }
}
