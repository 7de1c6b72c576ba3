package io.phost.storage.backend;

import io.phost.core.sys.DirectFile;
import io.phost.core.sys.Errno;
import io.phost.core.sys.NativeException;
import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A raw file or a host block device as a {@link VirtualDisk}, opened through FFM so that it can use
 * O_DIRECT (bypassing the host page cache, as Hyper-V does for its disks) and hand its fd to io_uring.
 * O_DIRECT is tried first and dropped when the file system refuses it (EINVAL), which {@link #direct()}
 * reports. Block devices report their own logical/physical sector sizes; a pass-through device is opened
 * with O_EXCL so nothing else (a mount, another VM) can use it at the same time.
 *
 * <p>The synchronous methods loop on short transfers; unaligned buffers on an O_DIRECT fd go through a
 * bounce buffer (a slow path that allocates; the engines never take it because guest pages are aligned).
 */
public final class FileDisk implements VirtualDisk, FdBacked, AllocationMap {
    private final Path path;
    private final int fd;
    private final long size;
    private final int logicalSector;
    private final int physicalSector;
    private final boolean readOnly;
    private final boolean direct;
    private final boolean blockDevice;
    private final boolean memoryBacked;
    private volatile boolean closed;

    private FileDisk(Path path, int fd, long size, int logical, int physical, boolean readOnly, boolean direct,
                     boolean blockDevice) {
        this.memoryBacked = !blockDevice && onMemoryFileSystem(path);
        this.path = path;
        this.fd = fd;
        this.size = size;
        this.logicalSector = logical;
        this.physicalSector = physical;
        this.readOnly = readOnly;
        this.direct = direct;
        this.blockDevice = blockDevice;
    }

    /** Opens a raw image file, with O_DIRECT when the file system supports it and {@code preferDirect}. */
    public static FileDisk openFile(Path path, boolean readOnly, boolean preferDirect) throws IOException {
        return open(path, readOnly, preferDirect, false);
    }

    /** Opens a host block device exclusively (O_EXCL) with O_DIRECT: the pass-through backend. */
    public static FileDisk openDevice(Path device, boolean readOnly) throws IOException {
        return open(device, readOnly, true, true);
    }

    private static FileDisk open(Path path, boolean readOnly, boolean preferDirect, boolean exclusive) throws IOException {
        boolean blockDevice = !Files.isRegularFile(path);
        if (!Files.exists(path)) {
            throw new IOException("no such disk: " + path);
        }
        int flags = (readOnly ? DirectFile.O_RDONLY : DirectFile.O_RDWR) | (exclusive ? DirectFile.O_EXCL : 0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path.toString());
            boolean direct = preferDirect;
            int fd = preferDirect ? DirectFile.tryOpen(cpath, flags | DirectFile.O_DIRECT, 0) : -Errno.EINVAL;
            if (fd == -Errno.EINVAL) {
                direct = false;
                fd = DirectFile.tryOpen(cpath, flags, 0);
            }
            if (fd < 0) {
                throw new IOException("open " + path + (exclusive ? " (O_EXCL)" : "") + ": "
                    + new NativeException("open", -fd).getMessage());
            }
            if (!blockDevice) {
                // Like VHDX images: one writer or any number of readers, across processes and within one
                // (two disks reaching one file through a symbolic link are two opens, so the second fails).
                int r = lock(fd, readOnly ? DirectFile.LOCK_SH : DirectFile.LOCK_EX);
                if (r != 0) {
                    DirectFile.close(fd);
                    throw new IOException(r == -Errno.EAGAIN
                        ? path + " is in use: " + (readOnly ? "open read-write" : "open") + " elsewhere (flock held)"
                        : "flock " + path + ": " + new NativeException("flock", -r).getMessage());
                }
            }
            long size;
            int logical = 512;
            int physical = 4096;
            if (blockDevice) {
                MemorySegment out = arena.allocate(8, 8);
                int r = DirectFile.ioctl(fd, DirectFile.BLKGETSIZE64, out.address());
                size = r == 0 ? out.get(ValueLayout.JAVA_LONG, 0) : DirectFile.lseek(fd, 0, DirectFile.SEEK_END);
                if (DirectFile.ioctl(fd, DirectFile.BLKSSZGET, out.address()) == 0) {
                    logical = out.get(ValueLayout.JAVA_INT, 0);
                }
                if (DirectFile.ioctl(fd, DirectFile.BLKPBSZGET, out.address()) == 0) {
                    physical = Math.max(logical, out.get(ValueLayout.JAVA_INT, 0));
                }
            } else {
                size = DirectFile.lseek(fd, 0, DirectFile.SEEK_END);
            }
            if (size < 0) {
                DirectFile.close(fd);
                throw new IOException("cannot size " + path + ": errno " + -size);
            }
            size -= size % logical;
            return new FileDisk(path, fd, size, logical, physical, readOnly, direct, blockDevice);
        }
    }

    /**
     * flock, retried for up to {@link #LOCK_WAIT_MILLIS}: a killed process's io_uring holds its files until
     * the kernel tears the ring down, a moment after the process is gone, and a restart must not fail on that.
     */
    private static int lock(int fd, int operation) {
        long deadline = System.nanoTime() + LOCK_WAIT_MILLIS * 1_000_000;
        while (true) {
            int r = DirectFile.tryFlock(fd, operation);
            if (r != -Errno.EAGAIN || System.nanoTime() - deadline > 0) {
                return r;
            }
            java.util.concurrent.locks.LockSupport.parkNanos(20_000_000);
        }
    }

    /** How long an open waits for another open's lock to go (system property {@code phost.lockWaitMillis}). */
    private static final long LOCK_WAIT_MILLIS = Long.getLong("phost.lockWaitMillis", 1000);

    /** Creates (or truncates) a sparse raw image of {@code size} bytes. */
    public static void createSparse(Path path, long size) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(path, java.nio.file.StandardOpenOption.CREATE,
            java.nio.file.StandardOpenOption.WRITE, java.nio.file.StandardOpenOption.TRUNCATE_EXISTING)) {
            if (size > 0) {
                ch.write(java.nio.ByteBuffer.allocate(1), size - 1);
            }
        }
    }

    public Path path() {
        return path;
    }

    /**
     * True for a file on tmpfs or ramfs: its I/O is a memory copy that never blocks, so it is cheapest done
     * synchronously on the queue's own thread (io_uring would hand every such read to an io-wq worker).
     */
    public boolean memoryBacked() {
        return memoryBacked;
    }

    private static boolean onMemoryFileSystem(Path path) {
        try {
            String type = Files.getFileStore(path).type();
            return type.equals("tmpfs") || type.equals("ramfs");
        } catch (IOException e) {
            return false;
        }
    }

    public boolean blockDevice() {
        return blockDevice;
    }

    private volatile int sgIo = -1;

    /** True when this is a block device that accepts SCSI commands through SG_IO (probed once). */
    public boolean sgIoSupported() {
        if (sgIo < 0) {
            sgIo = blockDevice && SgIo.supported(fd) ? 1 : 0;
        }
        return sgIo == 1;
    }

    @Override
    public int fd() {
        return fd;
    }

    @Override
    public boolean direct() {
        return direct;
    }

    @Override
    public int directAlignment() {
        return direct ? logicalSector : 1;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return logicalSector;
    }

    @Override
    public int physicalSectorSize() {
        return physicalSector;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    private void check(long offset, long length) {
        if (offset < 0 || length < 0 || offset % logicalSector != 0 || length % logicalSector != 0
            || offset > size - length) {
            throw new IllegalArgumentException("range offset=" + offset + " length=" + length + " outside "
                + path + " (size " + size + ", sector " + logicalSector + ")");
        }
    }

    private boolean needsBounce(MemorySegment buf) {
        return direct && (!buf.isNative() || (buf.address() % logicalSector) != 0);
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        check(offset, dst.byteSize());
        try {
            if (needsBounce(dst)) {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment b = a.allocate(dst.byteSize(), 4096);
                    readFully(offset, b);
                    dst.copyFrom(b);
                }
            } else {
                readFully(offset, dst);
            }
        } catch (NativeException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    private void readFully(long offset, MemorySegment dst) throws IOException {
        long n = DirectFile.pread(fd, dst.address(), dst.byteSize(), offset);
        if (n < dst.byteSize()) {
            throw new IOException("short read at offset " + (offset + n) + " of " + path);
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        ensureWritable();
        check(offset, src.byteSize());
        try {
            if (needsBounce(src)) {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment b = a.allocate(src.byteSize(), 4096);
                    b.copyFrom(src);
                    DirectFile.pwrite(fd, b.address(), b.byteSize(), offset);
                }
            } else {
                DirectFile.pwrite(fd, src.address(), src.byteSize(), offset);
            }
        } catch (NativeException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    @Override
    public void flush() throws IOException {
        try {
            DirectFile.fdatasync(fd);
        } catch (NativeException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        ensureWritable();
        check(offset, length);
        int r = DirectFile.fallocate(fd, DirectFile.FALLOC_FL_PUNCH_HOLE | DirectFile.FALLOC_FL_KEEP_SIZE, offset, length);
        if (r == -Errno.EOPNOTSUPP) {
            writeZeroes(offset, length);
        } else if (r < 0) {
            throw new IOException("punch hole offset=" + offset + " length=" + length + " in " + path + ": errno " + -r);
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        ensureWritable();
        check(offset, length);
        int r = DirectFile.fallocate(fd, DirectFile.FALLOC_FL_ZERO_RANGE | DirectFile.FALLOC_FL_KEEP_SIZE, offset, length);
        if (r == 0) {
            return;
        }
        if (r != -Errno.EOPNOTSUPP && r != -Errno.EINVAL) {
            throw new IOException("zero range offset=" + offset + " length=" + length + " in " + path + ": errno " + -r);
        }
        // Fallback: write zeros in 1 MiB chunks.
        try (Arena a = Arena.ofConfined()) {
            MemorySegment z = a.allocate(1 << 20, 4096);
            long done = 0;
            while (done < length) {
                long n = Math.min(z.byteSize(), length - done);
                DirectFile.pwrite(fd, z.address(), n, offset + done);
                done += n;
            }
        } catch (NativeException e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    @Override
    public long nextAllocated(long offset) {
        if (blockDevice) {
            return offset;
        }
        long r = DirectFile.lseek(fd, offset, DirectFile.SEEK_DATA);
        return r < 0 ? size : Math.min(r, size); // ENXIO: no data after offset
    }

    @Override
    public long nextUnallocated(long offset) {
        if (blockDevice) {
            return size;
        }
        long r = DirectFile.lseek(fd, offset, DirectFile.SEEK_HOLE);
        return r < 0 ? size : Math.min(r, size);
    }

    @Override
    public long allocatedBytes() {
        long total = 0;
        long at = 0;
        while (at < size) {
            long start = nextAllocated(at);
            if (start >= size) {
                break;
            }
            long end = nextUnallocated(start);
            total += end - start;
            at = end;
        }
        return total;
    }

    private void ensureWritable() throws IOException {
        if (readOnly) {
            throw new IOException(path + " is read-only");
        }
    }

    @Override
    public String format() {
        return blockDevice ? "device" : "raw";
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            DirectFile.close(fd);
        }
    }

    @Override
    public String toString() {
        return format() + ":" + path + (direct ? " (O_DIRECT)" : "");
    }
}
