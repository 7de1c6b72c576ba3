package io.phost.vhdx;

import io.phost.core.sys.DirectFile;
import io.phost.core.sys.PosixFile;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.locks.LockSupport;

/**
 * A raw image or a host block device: the file is the disk, byte for byte. The one raw disk of the
 * project: image tools open it buffered ({@link #open}), the storage VSP with O_DIRECT and a lock
 * ({@link #openFile}), pass-through exclusively ({@link #openDevice}).
 *
 * <p>I/O is one {@code pread}/{@code pwrite} per request on the caller's segment (no copy, no allocation);
 * on an O_DIRECT fd, unaligned buffers go through a bounce buffer (a slow path that allocates; engines
 * never take it because guest pages are aligned). {@link #unmap} punches a hole; {@link #writeZeroes} uses
 * {@code FALLOC_FL_ZERO_RANGE}, then hole punching, then plain zero writes, whichever the file system
 * accepts first. {@link #flush} is {@code fdatasync}. Block devices report their own sector sizes.
 */
public final class RawDisk implements VirtualDisk, AllocationMap {
    public static final int SECTOR = 512;
    /** 1 MiB of zeros for file systems without fallocate modes. */
    static final MemorySegment ZEROS = Arena.global().allocate(1 << 20, 4096);
    /** How long an open waits for another open's lock to go (system property {@code phost.lockWaitMillis}). */
    private static final long LOCK_WAIT_MILLIS = Long.getLong("phost.lockWaitMillis", 1000);

    private final PosixFile file;
    private final long size;
    private final int logicalSector;
    private final int physicalSector;
    private final boolean blockDevice;
    private final boolean memoryBacked;
    private final boolean onTmpfs;
    private final String format;
    /** Made on first use by {@link #pageCacheMapping()}; guarded by this. */
    private PageCacheMapping mapping;
    private boolean mappingTried;

    private RawDisk(PosixFile file, long size, int logical, int physical, boolean blockDevice, String format) {
        this.file = file;
        this.size = size;
        this.logicalSector = logical;
        this.physicalSector = physical;
        this.blockDevice = blockDevice;
        String fs = blockDevice ? "" : fileSystemType(file.path());
        this.memoryBacked = fs.equals("tmpfs") || fs.equals("ramfs");
        this.onTmpfs = fs.equals("tmpfs");
        this.format = format;
    }

    /** Opens a raw file or block device buffered and unlocked (image tools); its size is the file's size. */
    public static RawDisk open(Path path, boolean readOnly) throws IOException {
        PosixFile f = PosixFile.open(path, readOnly);
        try {
            return new RawDisk(f, f.size(), SECTOR, SECTOR, false, "raw");
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /**
     * Opens a raw image file (or a device) for a guest: with O_DIRECT when the file system supports it and
     * {@code preferDirect} (bypassing the host page cache, as Hyper-V does), locked like VHDX images.
     */
    public static RawDisk openFile(Path path, boolean readOnly, boolean preferDirect) throws IOException {
        return openForGuest(path, readOnly, preferDirect, false);
    }

    /**
     * Grows this open image file to {@code newSize} in place (ftruncate, then fdatasync so the new length is
     * durable) and returns the disk at its new size over the same open file: its lock, and any io_uring that
     * registered its fd, stay valid (a close and reopen would find the file still locked by such a ring). The
     * returned disk owns the file from then on: drop this one without closing it.
     */
    public RawDisk grownTo(long newSize) throws IOException {
        if (blockDevice) {
            throw new IllegalArgumentException("a block device's size is the device's: " + file.path());
        }
        if (newSize < size || newSize % SECTOR != 0) {
            throw new IllegalArgumentException("a raw image grows to a multiple of " + SECTOR + " bytes not below "
                + size + ": " + newSize);
        }
        file.truncate(newSize);
        file.dataSync();
        closeMapping(); // the grown disk maps its own, larger range; this one is dropped unclosed
        return new RawDisk(file, newSize, logicalSector, physicalSector, false, format);
    }

    /** Opens a host block device exclusively (O_EXCL) with O_DIRECT: the pass-through backend. */
    public static RawDisk openDevice(Path device, boolean readOnly) throws IOException {
        return openForGuest(device, readOnly, true, true);
    }

    private static RawDisk openForGuest(Path path, boolean readOnly, boolean preferDirect, boolean exclusive)
            throws IOException {
        if (!Files.exists(path)) {
            throw new IOException("no such disk: " + path);
        }
        boolean blockDevice = !Files.isRegularFile(path);
        PosixFile f;
        try {
            f = PosixFile.open(path, readOnly, preferDirect, exclusive);
        } catch (NoSuchFileException e) {
            throw new IOException("no such disk: " + path, e);
        } catch (IOException e) {
            throw new IOException((exclusive ? "(O_EXCL) " : "") + e.getMessage(), e);
        }
        try {
            // Like VHDX images: one writer or any number of readers, across processes and within one
            // (two disks reaching one file through a symbolic link are two opens, so the second fails).
            if (!blockDevice && !lock(f, !readOnly)) {
                throw new IOException(path + " is in use: " + (readOnly ? "open read-write" : "open")
                    + " elsewhere (flock held)");
            }
            if (!blockDevice) {
                long size = f.size();
                return new RawDisk(f, size - size % SECTOR, SECTOR, 4096, false, "raw");
            }
            return device(f);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /** A block device's size and sector sizes from its ioctls (lseek when BLKGETSIZE64 fails). */
    private static RawDisk device(PosixFile f) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(8, 8);
            long size = DirectFile.ioctl(f.fd(), DirectFile.BLKGETSIZE64, out.address()) == 0
                ? out.get(ValueLayout.JAVA_LONG, 0) : f.size();
            int logical = 512;
            int physical = 4096;
            if (DirectFile.ioctl(f.fd(), DirectFile.BLKSSZGET, out.address()) == 0) {
                logical = out.get(ValueLayout.JAVA_INT, 0);
            }
            if (DirectFile.ioctl(f.fd(), DirectFile.BLKPBSZGET, out.address()) == 0) {
                physical = Math.max(logical, out.get(ValueLayout.JAVA_INT, 0));
            }
            return new RawDisk(f, size - size % logical, logical, physical, true, "device");
        }
    }

    /**
     * flock, retried for up to {@link #LOCK_WAIT_MILLIS}: a killed process's io_uring holds its files until
     * the kernel tears the ring down, a moment after the process is gone, and a restart must not fail on that.
     */
    private static boolean lock(PosixFile f, boolean exclusive) throws IOException {
        long deadline = System.nanoTime() + LOCK_WAIT_MILLIS * 1_000_000;
        while (!f.tryLock(exclusive)) {
            if (System.nanoTime() - deadline > 0) {
                return false;
            }
            LockSupport.parkNanos(20_000_000);
        }
        return true;
    }

    /**
     * Creates a raw image of {@code size} bytes: sparse ({@code preallocate == false}, the file is one hole)
     * or fully allocated with {@code fallocate} (zeros written where the file system cannot).
     */
    public static RawDisk create(Path path, long size, boolean preallocate) throws IOException {
        if (size <= 0 || size % SECTOR != 0) {
            throw new IllegalArgumentException("raw size must be a positive multiple of 512: " + size);
        }
        PosixFile f = PosixFile.createNew(path);
        try {
            f.truncate(size);
            if (preallocate && !f.fallocate(0, 0, size)) {
                for (long off = 0; off < size; off += ZEROS.byteSize()) {
                    f.writeFully(ZEROS.asSlice(0, Math.min(ZEROS.byteSize(), size - off)), off);
                }
            }
            return new RawDisk(f, size, SECTOR, SECTOR, false, "raw"); // durable at the caller's first flush
        } catch (IOException | RuntimeException e) {
            f.close();
            Files.deleteIfExists(path);
            throw e;
        }
    }

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
        return file.path();
    }

    /** The underlying file, for tools that need SEEK_DATA or direct access (convert, compact). */
    public PosixFile file() {
        return file;
    }

    /** The open fd; valid until the disk is closed. */
    public int fd() {
        return file.fd();
    }

    /** True when the fd was opened with O_DIRECT (buffers and offsets aligned to {@link #directAlignment()}). */
    public boolean direct() {
        return file.direct();
    }

    /** Alignment O_DIRECT needs (the logical block size), or 1. */
    public int directAlignment() {
        return file.direct() ? logicalSector : 1;
    }

    /**
     * True for a file on tmpfs or ramfs: its I/O is a memory copy that never blocks, so it is cheapest done
     * synchronously on the queue's own thread (io_uring would hand every such read to an io-wq worker).
     */
    public boolean memoryBacked() {
        return memoryBacked;
    }

    private static String fileSystemType(Path path) {
        try {
            return Files.getFileStore(path).type();
        } catch (IOException e) {
            return "";
        }
    }

    /**
     * The file mapped for copies ({@link PageCacheMapping}) when it is on tmpfs, else null (ramfs is not mapped:
     * a read fault on one of its holes would allocate memory that preadv does not). Engines that run requests
     * inline use it; {@link #unmap}, {@link #writeZeroes}, {@link #grownTo} and {@link #close} keep it safe.
     */
    @Override
    public synchronized PageCacheMapping pageCacheMapping() {
        if (!mappingTried) {
            mappingTried = true;
            if (onTmpfs && !blockDevice && file.fd() >= 0) {
                mapping = PageCacheMapping.open(file, size, !file.readOnly());
            }
        }
        return mapping;
    }

    private synchronized PageCacheMapping mappingIfOpen() {
        return mapping;
    }

    public boolean blockDevice() {
        return blockDevice;
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
        return file.readOnly();
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        checkRange(offset, dst.byteSize());
        if (needsBounce(dst)) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment b = a.allocate(dst.byteSize(), 4096);
                file.readFully(b, offset);
                dst.copyFrom(b);
            }
        } else {
            file.readFully(dst, offset);
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        checkWritable();
        checkRange(offset, src.byteSize());
        if (needsBounce(src)) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment b = a.allocate(src.byteSize(), 4096);
                b.copyFrom(src);
                file.writeFully(b, offset);
            }
        } else {
            file.writeFully(src, offset);
        }
    }

    private boolean needsBounce(MemorySegment buf) {
        return file.direct() && (!buf.isNative() || (buf.address() % logicalSector) != 0);
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly()) {
            file.dataSync();
        }
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        PageCacheMapping m = mappingIfOpen();
        long stamp = m == null ? 0 : m.beginDeallocate(offset, length); // no copy may touch pages being freed
        try {
            if (!file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
                writeZeroesSlow(offset, length);
            }
        } finally {
            if (m != null) {
                m.endDeallocate(stamp);
            }
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        PageCacheMapping m = mappingIfOpen();
        long stamp = m == null ? 0 : m.beginDeallocate(offset, length); // zero range and punch both free pages
        try {
            if (file.fallocate(PosixFile.FALLOC_FL_ZERO_RANGE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
                return;
            }
            if (file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
                return;
            }
            writeZeroesSlow(offset, length);
        } finally {
            if (m != null) {
                m.endDeallocate(stamp);
            }
        }
    }

    private void writeZeroesSlow(long offset, long length) throws IOException {
        for (long done = 0; done < length; ) {
            long n = Math.min(ZEROS.byteSize(), length - done);
            file.writeFully(ZEROS.asSlice(0, n), offset + done);
            done += n;
        }
    }

    @Override
    public String format() {
        return format;
    }

    @Override
    public long nextAllocated(long offset) throws IOException {
        if (offset >= size) {
            return size;
        }
        if (blockDevice) {
            return offset;
        }
        long d = file.seekData(offset);
        return d < 0 ? size : Math.min(d, size);
    }

    @Override
    public long nextUnallocated(long offset) throws IOException {
        if (offset >= size || blockDevice) {
            return size;
        }
        long h = file.seekHole(offset);
        return h < 0 ? size : Math.min(h, size);
    }

    @Override
    public long allocatedBytes() throws IOException {
        long total = 0;
        long off = 0;
        while (off < size) {
            long d = nextAllocated(off);
            if (d >= size) {
                break;
            }
            long h = nextUnallocated(d);
            total += h - d;
            off = h;
        }
        return total;
    }

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || offset % logicalSector != 0 || length % logicalSector != 0
            || offset > size - length) {
            throw new IllegalArgumentException("range offset=" + offset + " length=" + length + " outside "
                + file.path() + " (size " + size + ", sector " + logicalSector + ")");
        }
    }

    private void checkWritable() {
        if (readOnly()) {
            throw new IllegalStateException(file.path() + " is open read-only");
        }
    }

    @Override
    public void close() throws IOException {
        closeMapping();
        file.close();
    }

    private void closeMapping() {
        PageCacheMapping m = mappingIfOpen();
        if (m != null) {
            m.close(); // waits for a copy in progress; later requests go to the fd
        }
    }

    /** fd-backed; memory when on tmpfs; a pass-through candidate when a block device. */
    @Override
    public DiskCapabilities capabilities() {
        return memoryBacked ? DiskCapabilities.memory(fd()) : DiskCapabilities.fd(fd(), directAlignment(), blockDevice);
    }

    @Override
    public String toString() {
        return format + ":" + file.path() + (file.direct() ? " (O_DIRECT)" : "");
    }
}
