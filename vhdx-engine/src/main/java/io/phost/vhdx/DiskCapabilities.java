package io.phost.vhdx;

/**
 * What a disk offers beyond its own {@code read}/{@code write} (Cloud Hypervisor's {@code DiskFile} is the
 * model): the I/O paths a transport or engine may take, and which optional commands it does for real.
 * Engines and LUNs choose from this, never from the disk's class, so a new disk kind plugs in by
 * declaring what it has. Sector sizes are the disk's own {@link VirtualDisk#logicalSectorSize()} and
 * {@link VirtualDisk#physicalSectorSize()}.
 *
 * <pre>
 *   path          fd   mapped  who does the I/O
 *   OWN_CODE      -1   null    the disk's read/write on a thread (they may block)
 *   FD            fd   null    preadv/pwritev or io_uring straight on fd (bytes at the same offsets)
 *   MAPPED_RANGES -1   disk    io_uring on mapped.mappedFd() where mapRead/mapWrite answer, else OWN_CODE
 *   MEMORY        -1|fd null   a memory copy that never blocks: inline on the queue's thread
 * </pre>
 *
 * @param path            the cheapest way to the bytes
 * @param fd              the fd whose offsets are the disk's offsets, or -1
 * @param directAlignment alignment {@code fd} needs (O_DIRECT: the logical block size), or 1
 * @param mapped          the disk as a {@link MappedDisk} when {@code path == MAPPED_RANGES}, else null
 * @param passThrough     a host block device that may take SCSI commands itself (SG_IO), probed by the LUN
 * @param discard         {@link VirtualDisk#unmap} frees space (else it only writes zeros)
 * @param writeZeroes     {@link VirtualDisk#writeZeroes} is cheaper than writing a buffer of zeros
 */
public record DiskCapabilities(IoPath path, int fd, int directAlignment, MappedDisk mapped, boolean passThrough,
                               boolean discard, boolean writeZeroes) {
    /** How a disk's bytes can be reached; see the class table. */
    public enum IoPath { OWN_CODE, FD, MAPPED_RANGES, MEMORY }

    /** A disk reachable only through its own methods, with discard and zeroing (the interface default). */
    public static final DiskCapabilities OWN_CODE = new DiskCapabilities(IoPath.OWN_CODE, -1, 1, null, false, true, true);

    public DiskCapabilities {
        if (path == null || (path == IoPath.FD && fd < 0) || (path == IoPath.MAPPED_RANGES) != (mapped != null)
            || directAlignment < 1 || Integer.bitCount(directAlignment) != 1) {
            throw new IllegalArgumentException("inconsistent disk capabilities: path=" + path + " fd=" + fd
                + " directAlignment=" + directAlignment + " mapped=" + (mapped != null));
        }
    }

    /** Bytes at the same offsets of {@code fd}. */
    public static DiskCapabilities fd(int fd, int directAlignment, boolean passThrough) {
        return new DiskCapabilities(IoPath.FD, fd, directAlignment, null, passThrough, true, true);
    }

    /** Memory that never blocks; {@code fd} (or -1) when the memory is a file on tmpfs. */
    public static DiskCapabilities memory(int fd) {
        return new DiskCapabilities(IoPath.MEMORY, fd, 1, null, false, true, true);
    }

    /** An image whose steady-state ranges map onto its file. */
    public static DiskCapabilities mappedRanges(MappedDisk disk) {
        return new DiskCapabilities(IoPath.MAPPED_RANGES, -1, 1, disk, false, true, true);
    }

    /** True when engines may do preadv/pwritev or io_uring on {@link #fd()}. */
    public boolean fdBacked() {
        return fd >= 0;
    }
}
