package io.phost.core.sys;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A file (or block device) that owns its fd, with positional I/O on {@link MemorySegment}s: the
 * {@link DirectFile} calls as an object, for the image formats (vhdx-engine) and tools. Native segments go
 * to the kernel as addresses and allocate nothing; heap segments are pinned for each call.
 *
 * <p>Failures are {@link IOException}s whose cause is the {@link NativeException} (operation, errno,
 * offset); "no space" is a {@link DiskFullException} so transports can tell the guest its disk is full.
 * Thread-safe: positional calls share no state.
 */
public final class PosixFile implements AutoCloseable {
    /** fallocate modes for {@link #fallocate}. */
    public static final int FALLOC_FL_KEEP_SIZE = DirectFile.FALLOC_FL_KEEP_SIZE;
    public static final int FALLOC_FL_PUNCH_HOLE = DirectFile.FALLOC_FL_PUNCH_HOLE;
    public static final int FALLOC_FL_ZERO_RANGE = DirectFile.FALLOC_FL_ZERO_RANGE;

    private final int fd;
    private final Path path;
    private final boolean readOnly;
    private final boolean direct;
    private final AtomicLong syncs = new AtomicLong();
    private volatile boolean closed;

    private PosixFile(int fd, Path path, boolean readOnly, boolean direct) {
        this.fd = fd;
        this.path = path;
        this.readOnly = readOnly;
        this.direct = direct;
    }

    /** Opens an existing file (or block device). */
    public static PosixFile open(Path path, boolean readOnly) throws IOException {
        return open(path, readOnly ? DirectFile.O_RDONLY : DirectFile.O_RDWR, 0);
    }

    /**
     * Opens an existing file or device for a disk: with O_DIRECT when {@code preferDirect} and the file
     * system accepts it (else buffered; {@link #direct()} tells), with O_EXCL when {@code exclusive} (a block
     * device then fails with EBUSY while mounted or opened exclusively elsewhere).
     */
    public static PosixFile open(Path path, boolean readOnly, boolean preferDirect, boolean exclusive)
            throws IOException {
        int flags = (readOnly ? DirectFile.O_RDONLY : DirectFile.O_RDWR) | (exclusive ? DirectFile.O_EXCL : 0);
        PosixFile f = preferDirect ? open(path, flags | DirectFile.O_DIRECT, 0) : null;
        return f != null ? f : open(path, flags, 0);
    }

    /** Creates a new file; fails if it exists (O_EXCL), so an image is never silently overwritten. */
    public static PosixFile createNew(Path path) throws IOException {
        return open(path, DirectFile.O_RDWR | DirectFile.O_CREAT | DirectFile.O_EXCL, 0644);
    }

    /**
     * Opens an existing file a second time with O_DIRECT; null when the file system refuses O_DIRECT
     * (EINVAL: tmpfs on older kernels, some FUSE and network file systems).
     */
    public static PosixFile openDirect(Path path, boolean readOnly) throws IOException {
        return open(path, (readOnly ? DirectFile.O_RDONLY : DirectFile.O_RDWR) | DirectFile.O_DIRECT, 0);
    }

    /**
     * The fd an image hands to io_uring for its fully mapped ranges: O_DIRECT (no host page cache, like the
     * raw-disk backend and Hyper-V) unless {@code -Dphost.vhdx.mappedDirect=false} or the file system
     * refuses it, then buffered. {@link #direct()} tells which.
     */
    public static PosixFile openMapped(Path path, boolean readOnly) throws IOException {
        PosixFile f = Boolean.parseBoolean(System.getProperty("phost.vhdx.mappedDirect", "true"))
            ? openDirect(path, readOnly) : null;
        return f != null ? f : open(path, readOnly);
    }

    private static PosixFile open(Path path, int flags, int mode) throws IOException {
        int fd;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path.toString());
            do {
                fd = DirectFile.tryOpen(cpath, flags, mode);
            } while (fd == -Errno.EINTR);
        }
        boolean direct = (flags & DirectFile.O_DIRECT) != 0;
        if (fd >= 0) {
            return new PosixFile(fd, path, (flags & 3) == DirectFile.O_RDONLY, direct);
        }
        return switch (-fd) {
            case Errno.EINVAL -> {
                if (direct) {
                    yield null;
                }
                throw failureOf(new NativeException("open " + path, -fd));
            }
            case Errno.ENOENT -> throw new NoSuchFileException(path.toString());
            case Errno.EEXIST -> throw new FileAlreadyExistsException(path.toString());
            case Errno.EACCES -> throw new AccessDeniedException(path.toString());
            default -> throw failureOf(new NativeException("open " + path, -fd));
        };
    }

    public Path path() {
        return path;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /** True when this handle was opened with O_DIRECT. */
    public boolean direct() {
        return direct;
    }

    /** The raw fd, for callers that do their own I/O on it (io_uring); valid until {@link #close()}. */
    public int fd() {
        return fd;
    }

    /** How many fsync/fdatasync calls succeeded on this handle (tests check that a flush really syncs). */
    public long syncCount() {
        return syncs.get();
    }

    /** Reads exactly {@code dst.byteSize()} bytes at {@code offset}; end of file before that is an {@link EOFException}. */
    public void readFully(MemorySegment dst, long offset) throws IOException {
        long n = read(offset, dst, 0, dst.byteSize());
        if (n < dst.byteSize()) {
            throw new EOFException(path + ": end of file at offset " + (offset + n) + " reading "
                + dst.byteSize() + " bytes at " + offset);
        }
    }

    /** Writes all of {@code src} at {@code offset}. */
    public void writeFully(MemorySegment src, long offset) throws IOException {
        write(offset, src, 0, src.byteSize());
    }

    /**
     * Reads up to {@code len} bytes at {@code fileOffset} into {@code dst[dstOffset, dstOffset+len)}.
     * Loops on short reads; returns the bytes read, less than {@code len} only at end of file.
     */
    public long read(long fileOffset, MemorySegment dst, long dstOffset, long len) throws IOException {
        checkRange(dst, dstOffset, len);
        try {
            // SAFETY: checkRange proved the range lies inside dst and its arena is alive; dst stays
            // reachable until the call returns.
            long n = dst.isNative() ? DirectFile.pread(fd, dst.address() + dstOffset, len, fileOffset)
                : DirectFile.pread(fd, dst.asSlice(dstOffset, len), fileOffset);
            Reference.reachabilityFence(dst);
            return n;
        } catch (NativeException e) {
            throw failure(e);
        }
    }

    /** Reads exactly {@code len} bytes; bytes past end of file read as zeros. */
    public void readZeroPadded(long fileOffset, MemorySegment dst, long dstOffset, long len) throws IOException {
        long n = read(fileOffset, dst, dstOffset, len);
        if (n < len) {
            dst.asSlice(dstOffset + n, len - n).fill((byte) 0);
        }
    }

    /** Writes all {@code len} bytes of {@code src[srcOffset, srcOffset+len)} at {@code fileOffset}. */
    public void write(long fileOffset, MemorySegment src, long srcOffset, long len) throws IOException {
        checkRange(src, srcOffset, len);
        try {
            if (src.isNative()) {
                // SAFETY: as in read.
                DirectFile.pwrite(fd, src.address() + srcOffset, len, fileOffset);
            } else {
                DirectFile.pwrite(fd, src.asSlice(srcOffset, len), fileOffset);
            }
            Reference.reachabilityFence(src);
        } catch (NativeException e) {
            throw failure(e);
        }
    }

    /** Convenience for heap buffers (metadata paths). */
    public long read(long fileOffset, byte[] dst, int off, int len) throws IOException {
        return read(fileOffset, MemorySegment.ofArray(dst), off, len);
    }

    public void write(long fileOffset, byte[] src, int off, int len) throws IOException {
        write(fileOffset, MemorySegment.ofArray(src), off, len);
    }

    /** File (or block device) size, from {@code lseek(SEEK_END)}. */
    public long size() throws IOException {
        long r = DirectFile.lseek(fd, 0, DirectFile.SEEK_END);
        if (r < 0) {
            throw failure(new NativeException("lseek(SEEK_END) " + path, (int) -r));
        }
        return r;
    }

    /** Bytes the file occupies on its device ({@code st_blocks * 512}): what sparse files actually cost. */
    public long diskBytes() throws IOException {
        try {
            return DirectFile.allocatedBytes(fd);
        } catch (NativeException e) {
            throw failure(e);
        }
    }

    /**
     * The first offset at or after {@code offset} that holds data ({@code SEEK_DATA}), or {@code -1} when
     * there is none before the end of the file. File systems without hole support report everything as data.
     */
    public long seekData(long offset) throws IOException {
        return seek(offset, DirectFile.SEEK_DATA, "lseek(SEEK_DATA)");
    }

    /** The first hole at or after {@code offset} ({@code SEEK_HOLE}); the end of the file counts as a hole. */
    public long seekHole(long offset) throws IOException {
        return seek(offset, DirectFile.SEEK_HOLE, "lseek(SEEK_HOLE)");
    }

    private long seek(long offset, int whence, String op) throws IOException {
        long r = DirectFile.lseek(fd, offset, whence);
        if (r >= 0) {
            return r;
        }
        int e = (int) -r;
        if (e == Errno.ENXIO) {
            return -1;
        }
        if (e == Errno.EINVAL || e == Errno.EOPNOTSUPP) {
            // No SEEK_DATA support: everything is data, the end is the only hole.
            return whence == DirectFile.SEEK_DATA ? offset : size();
        }
        throw failure(new NativeException(op + " " + path, e, offset));
    }

    /**
     * {@code fallocate(mode, offset, length)}; returns false when the file system does not support the mode
     * (EOPNOTSUPP, ENOSYS, ENODEV), so callers fall back to writing zeros.
     */
    public boolean fallocate(int mode, long offset, long length) throws IOException {
        while (true) {
            int r = DirectFile.fallocate(fd, mode, offset, length);
            if (r == 0) {
                return true;
            }
            int e = -r;
            if (e == Errno.EINTR) {
                continue;
            }
            if (e == Errno.EOPNOTSUPP || e == Errno.ENOSYS || e == Errno.ENODEV || (e == Errno.EINVAL && mode != 0)) {
                return false;
            }
            throw failure(new NativeException("fallocate(mode=" + mode + ", len=" + length + ") " + path, e, offset));
        }
    }

    /** Sets the file length (sparse when growing). */
    public void truncate(long length) throws IOException {
        try {
            DirectFile.ftruncate(fd, length);
        } catch (NativeException e) {
            throw failure(new NativeException("ftruncate " + path, e.errno(), length));
        }
    }

    /** fdatasync: data plus the metadata needed to read it back (size), not timestamps. */
    public void dataSync() throws IOException {
        sync(DirectFile.tryFdatasync(fd), "fdatasync");
    }

    /** fsync: data and all metadata (directories after a rename). */
    public void sync() throws IOException {
        sync(DirectFile.fsync(fd), "fsync");
    }

    private void sync(int result, String op) throws IOException {
        if (result == -Errno.EINTR) {
            result = op.equals("fsync") ? DirectFile.fsync(fd) : DirectFile.tryFdatasync(fd);
        }
        if (result < 0) {
            if (result == -Errno.EINVAL && readOnly) {
                return; // some special files refuse sync; nothing of ours to make durable
            }
            throw failure(new NativeException(op + " " + path, -result));
        }
        syncs.incrementAndGet();
    }

    /**
     * Takes a BSD {@code flock} without waiting: shared for readers, exclusive for a writer, so two
     * phost processes (or two opens in one process) never write one image at once, and nobody writes a
     * parent that a child has open. Returns false when another open holds a conflicting lock.
     * (qemu uses fcntl OFD locks, which are independent of flock.)
     */
    public boolean tryLock(boolean exclusive) throws IOException {
        int r = DirectFile.tryFlock(fd, exclusive ? DirectFile.LOCK_EX : DirectFile.LOCK_SH);
        if (r == -Errno.EAGAIN) {
            return false;
        }
        if (r < 0) {
            throw failure(new NativeException("flock " + path, -r));
        }
        return true;
    }

    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            DirectFile.close(fd);
        } catch (NativeException e) {
            if (e.errno() != Errno.EINTR) {
                throw failure(new NativeException("close " + path, e.errno()));
            }
        }
    }

    private static void checkRange(MemorySegment seg, long off, long len) {
        if (off < 0 || len < 0 || off > seg.byteSize() - len) {
            throw new IndexOutOfBoundsException("range [" + off + ", +" + len + ") outside segment of " + seg.byteSize());
        }
        if (!seg.scope().isAlive()) {
            throw new IllegalStateException("segment's arena is closed");
        }
    }

    /** A failed call as the checked exception file users handle, naming this file; "no space" stays recognisable. */
    private IOException failure(NativeException e) {
        NativeException named = e.operation().contains(path.toString()) ? e
            : new NativeException(e.operation().replaceFirst(" fd=\\d+", "") + " " + path, e.errno(), e.offset());
        return failureOf(named);
    }

    private static IOException failureOf(NativeException e) {
        return e.noSpace() ? new DiskFullException(e.getMessage(), e) : new IOException(e.getMessage(), e);
    }
}
