package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.MappedDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A VHD image (Microsoft "Virtual Hard Disk Image Format Specification" 1.0): fixed, dynamic or
 * differencing. Layout and field meanings are drawn in {@link VhdFooter} and {@link VhdDynamicHeader}.
 *
 * <pre>
 *  fixed:    | data (CurrentSize bytes) ............................. | footer |
 *  dynamic:  | footer copy | dyn header | BAT | [locators] | block | block | ... | footer |
 *            0            512          1536
 *  block:    | sector bitmap (BlockSize/4096 bytes, padded to 512) | data (BlockSize) |
 *                                                                  ^ 4 KiB aligned in files we write
 * </pre>
 *
 * <p><b>Virtual size.</b> As qemu's vpc.c decides it, so that both agree on every image: the CHS geometry
 * (cylinders*heads*sectors*512) unless the creator is one that sizes by CurrentSize ("win ", "qem2",
 * "d2v ", "CTXS", "tap\0") or the geometry is the maximum 65535/16/255, then CurrentSize. Images we
 * create carry creator "win " (Hyper-V's convention) and the exact requested size, so Hyper-V, qemu and
 * we all see the same size; the geometry is the spec's, for BIOS-era guests only.
 *
 * <p><b>Block allocation.</b> Under {@code allocLock}. When the block does not fit before the footer, the
 * footer is first written further on (the file grows by at least sixteen blocks or half its size, at
 * most 1 GiB, so most allocations skip this; the gap is a hole) and the old footer sector zeroed. Then the
 * block's bitmap is written (all ones for dynamic disks, as qemu does; all zeros for differencing; a dynamic
 * disk's first write of up to 64 KiB at the block's start goes out with it in one pwrite, as raw's first
 * write is one) and the entry is published in memory with a release store and its BAT sector marked dirty. {@link #flush()}
 * writes the dirty BAT sectors, then fdatasyncs: one fdatasync per flush, like a raw file. Concurrent
 * readers of an unpublished block read zeros (or the parent), which is what they would have seen a moment
 * earlier. A process killed at any point leaves a footer at the end of the file and BAT entries on disk
 * only for blocks whose bitmap was written before them, so at worst unreferenced blocks (reclaimed by
 * {@code compact}); {@link #close()} trims the unused room before the footer. Block data is never reused
 * after allocation. VHD has no log: a power loss during a flush may keep a BAT sector and lose the write
 * that grew the file, as before; VHDX's log is the format for that.
 *
 * <p><b>Steady path.</b> A read or write inside an allocated block is one pread/pwrite on the caller's
 * segment after one acquire-load of the BAT entry; differencing disks also test bits in the cached sector
 * bitmap. Nothing is allocated.
 *
 * <p><b>Mapped I/O.</b> {@link #mapRead}/{@link #mapWrite} return that one pread/pwrite's file offset
 * (fixed disks: the offset itself; dynamic: an allocated block; differencing: an allocated block whose
 * sectors in the range are all present) so a caller can issue it on {@link #mappedFd()} itself.
 *
 * <p><b>Where the code is.</b> This class holds an open image's state and public API; {@link VhdOpen} parses
 * and opens (parent chain included), {@link VhdCreate} writes new images, {@link VhdDataPath} does reads,
 * writes, allocation and zeroing, and {@link VhdMaintenance} the offline changes (resize, re-parent, repair).
 *
 * <p><b>Dynamic disk bitmaps.</b> Like qemu, reads of an allocated block in a dynamic (non-differencing) disk
 * ignore the bitmap and read the data area: every writer we know zero-fills blocks and sets the whole
 * bitmap. Differencing disks honour it sector by sector.
 *
 * <p>It stays about 600 lines because it is the format's whole public API; the work is in the classes named above.
 */
public final class VhdDisk implements MappedDisk, AllocationMap {
    public static final int SECTOR = 512;
    /** Deepest parent chain we follow (protects against loops and hostile chains). */
    public static final int MAX_CHAIN_DEPTH = 64;
    /** Longest parent locator path we read, in bytes. */
    static final int MAX_LOCATOR_LENGTH = 64 * 1024;
    static final String CREATOR_APP = "win ";
    static final int CREATOR_VERSION = 0x000a0000;
    static final String CREATOR_OS = "Wi2k";
    /** Largest first write into a new block that goes out with the block's bitmap in one pwrite. */
    static final int FIRST_WRITE_MAX = 64 * 1024;

    static final VarHandle BAT = MethodHandles.arrayElementVarHandle(int[].class);
    static final VarHandle BITMAPS = MethodHandles.arrayElementVarHandle(long[][].class);
    static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    static final ValueLayout.OfInt U32 = VhdFooter.U32;
    static final int ENTRIES_PER_SECTOR = SECTOR / 4;

    // The open image's state, package-private for VhdOpen, VhdDataPath and VhdMaintenance.
    final PosixFile file;
    final Arena arena;
    final VhdFooter footer;
    final VhdDynamicHeader header;
    final int type;
    final long size;
    final long blockSize;
    final int blockShift;
    final long bitmapBytes;
    final int[] bat;
    final long batOffset;
    final VhdDisk parent;
    final Path parentPath;
    final long[][] bitmaps;
    final ReentrantLock allocLock = new ReentrantLock();
    final Object[] bitmapLocks;
    /** Where the next block goes: the footer's current offset. Guarded by allocLock. */
    long nextFree;
    /** Where the footer is now (the file ends 512 bytes after it); [nextFree, footerAt) is a hole. Under allocLock. */
    long footerAt;
    /** BAT sectors (128 entries each) changed in memory since the last flush. */
    final AtomicIntegerArray batDirty;
    /** A new block's bitmap: all ones (dynamic) or zeros (differencing); and one zero sector. */
    final MemorySegment newBitmap;
    final MemorySegment zeroSector;
    /** A dynamic disk's bitmap followed by room for a first write of up to FIRST_WRITE_MAX bytes; under allocLock. */
    final MemorySegment firstWrite;
    /** One BAT sector as flush writes it; under allocLock. */
    final MemorySegment batSector;
    volatile boolean closed;
    /** The fd for mapped I/O, opened by the first {@link #mappedFd()}; guarded by mappedLock. */
    final Object mappedLock = new Object();
    PosixFile mappedFile;
    volatile int mappedAlignment = 1;

    final VhdDataPath data = new VhdDataPath(this);

    VhdDisk(PosixFile file, Arena arena, VhdFooter footer, VhdDynamicHeader header, long size,
            int[] bat, VhdDisk parent, Path parentPath, long nextFree) {
        this.file = file;
        this.arena = arena;
        this.footer = footer;
        this.header = header;
        this.type = footer.diskType();
        this.size = size;
        this.parent = parent;
        this.parentPath = parentPath;
        this.bat = bat;
        this.nextFree = nextFree;
        this.footerAt = nextFree;
        this.zeroSector = arena.allocate(SECTOR, 8);
        this.batSector = arena.allocate(SECTOR, 8);
        if (header != null) {
            this.blockSize = header.blockSize();
            this.blockShift = Long.numberOfTrailingZeros(blockSize);
            this.bitmapBytes = bitmapBytesFor(blockSize);
            this.batOffset = header.tableOffset();
            this.bitmaps = type == VhdFooter.TYPE_DIFFERENCING ? new long[bat.length][] : null;
            this.bitmapLocks = new Object[64];
            for (int i = 0; i < bitmapLocks.length; i++) {
                bitmapLocks[i] = new Object();
            }
            this.batDirty = new AtomicIntegerArray((bat.length + ENTRIES_PER_SECTOR - 1) / ENTRIES_PER_SECTOR);
            this.newBitmap = arena.allocate(bitmapBytes, 8);
            newBitmap.fill(bitmaps == null ? (byte) 0xFF : 0);
            this.firstWrite = bitmaps == null && !file.readOnly() ? arena.allocate(bitmapBytes + FIRST_WRITE_MAX, 4096) : null;
            if (firstWrite != null) {
                MemorySegment.copy(newBitmap, 0, firstWrite, 0, bitmapBytes);
            }
        } else {
            this.batDirty = new AtomicIntegerArray(0);
            this.newBitmap = null;
            this.firstWrite = null;
            this.blockSize = 0;
            this.blockShift = 0;
            this.bitmapBytes = 0;
            this.batOffset = -1;
            this.bitmaps = null;
            this.bitmapLocks = null;
        }
    }

    static long bitmapBytesFor(long blockSize) {
        long bytes = blockSize / SECTOR / 8;
        return (bytes + SECTOR - 1) & -SECTOR;
    }

    // ------------------------------------------------------------------------------------------ open

    /** Opens a VHD; a differencing disk also opens its parent chain read-only. */
    public static VhdDisk open(Path path, boolean readOnly) throws IOException {
        return VhdOpen.open(path, readOnly, 0, new ArrayList<>());
    }

    /**
     * Opens a VHD read-only without its parent (an orphaned child whose parent is missing or is not the one
     * it was made from), for {@code info} and {@code rebase -u}: what the file itself says. Sectors the
     * child does not store read as zeros.
     */
    public static VhdDisk openDetached(Path path) throws IOException {
        PosixFile file = PosixFile.open(path, true);
        Arena arena = Arena.ofAuto();
        try {
            VhdOpen.Parsed p = VhdOpen.parse(file, arena);
            return new VhdDisk(file, arena, p.footer(), p.header(), p.size(), p.bat(), null, null, p.footerOffset());
        } catch (IOException | RuntimeException | Error e) {
            file.close();
            throw e;
        }
    }

    /** The virtual size qemu's vpc driver gives this footer (see the class comment). */
    public static long virtualSize(VhdFooter f) {
        String creator = f.creatorApp();
        boolean useChs = !creator.equals("win ") && !creator.equals("qem2") && !creator.equals("d2v ")
            && !creator.equals("CTXS") && !creator.equals("tap\0");
        long chs = f.geometrySectors();
        long sectors = chs;
        if (!useChs || chs == VhdFooter.MAX_GEOMETRY_SECTORS) {
            sectors = Long.divideUnsigned(f.currentSize(), SECTOR);
        }
        if (sectors < 0 || sectors > VhdFooter.MAX_SIZE / SECTOR + 1) {
            return VhdFooter.MAX_SIZE + SECTOR; // over the limit: reported as TOO_LARGE
        }
        return sectors * SECTOR;
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    // ------------------------------------------------------------------------------------------ create

    /** Creates a VHD (fixed, dynamic or differencing) and returns it open read-write. */
    public static VhdDisk create(Path path, CreateOptions o) throws IOException {
        return VhdCreate.create(path, o);
    }

    // ------------------------------------------------------------------------------------------ I/O

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return SECTOR;
    }

    @Override
    public int physicalSectorSize() {
        return SECTOR;
    }

    @Override
    public boolean readOnly() {
        return file.readOnly();
    }

    @Override
    public String format() {
        return "vhd";
    }

    public DiskType type() {
        return switch (type) {
            case VhdFooter.TYPE_FIXED -> DiskType.FIXED;
            case VhdFooter.TYPE_DYNAMIC -> DiskType.DYNAMIC;
            default -> DiskType.DIFFERENCING;
        };
    }

    /** Bytes per block (0 for fixed disks). */
    public long blockSize() {
        return blockSize;
    }

    public Path path() {
        return file.path();
    }

    /** The parent of a differencing disk (open read-only), else null. */
    public VhdDisk parent() {
        return parent;
    }

    public Path parentPath() {
        return parentPath;
    }

    public byte[] uniqueId() {
        return footer.uniqueId();
    }

    public VhdFooter footer() {
        return footer;
    }

    public VhdDynamicHeader header() {
        return header;
    }

    /** Number of BAT entries the virtual size uses (0 for fixed disks). */
    public int blockCount() {
        return bat == null ? 0 : bat.length;
    }

    /** File offset of block {@code i}'s bitmap, or -1 when not allocated here. */
    public long blockFileOffset(int i) {
        int e = (int) BAT.getAcquire(bat, i);
        return e == -1 ? -1 : Integer.toUnsignedLong(e) * SECTOR;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        data.read(offset, dst);
    }

    // ------------------------------------------------------------------------------------------ MappedDisk

    @Override
    public long mapRead(long offset, long length) {
        return data.map(offset, length);
    }

    @Override
    public long mapWrite(long offset, long length) {
        return file.readOnly() ? -1 : data.map(offset, length);
    }

    @Override
    public int mappedFd() throws IOException {
        synchronized (mappedLock) {
            if (closed) {
                return -1;
            }
            if (mappedFile == null) {
                mappedFile = PosixFile.openMapped(file.path(), file.readOnly());
                mappedAlignment = mappedFile.direct() ? 512 : 1;
            }
            return mappedFile.fd();
        }
    }

    @Override
    public int mappedAlignment() {
        return mappedAlignment;
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        data.write(offset, src);
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly()) {
            data.writeDirtyBat();
            file.dataSync();
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        data.zero(offset, length, false);
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        data.zero(offset, length, true);
    }

    // ------------------------------------------------------------------------------------------ allocation map

    /** True when block {@code i} is allocated in this file. */
    public boolean blockAllocated(int i) {
        return (int) BAT.getAcquire(bat, i) != -1;
    }

    /**
     * Calls {@code sink} for each run of sectors stored in this file (not the parents): whole allocated blocks
     * of dynamic disks, bitmap runs of differencing disks, the whole disk for fixed ones.
     */
    public void forEachStoredRange(RangeSink sink) throws IOException {
        if (header == null) {
            sink.accept(0, size);
            return;
        }
        for (int b = 0; b < bat.length; b++) {
            if (!blockAllocated(b)) {
                continue;
            }
            long base = (long) b * blockSize;
            long limit = Math.min(blockSize, size - base);
            if (bitmaps == null) {
                sink.accept(base, limit);
                continue;
            }
            long[] bits = data.bitmap(b);
            int sectors = (int) (limit / SECTOR);
            int s = 0;
            while (s < sectors) {
                while (s < sectors && !data.bit(bits, s)) {
                    s++;
                }
                int e = s;
                while (e < sectors && data.bit(bits, e)) {
                    e++;
                }
                if (e > s) {
                    sink.accept(base + (long) s * SECTOR, (long) (e - s) * SECTOR);
                }
                s = e;
            }
        }
    }

    /** Receives (offset, length) ranges. */
    @FunctionalInterface
    public interface RangeSink {
        void accept(long offset, long length) throws IOException;
    }

    /*
     * Allocation of a chain. VHD has no "reads as zero" state that could hide a parent's data, so a byte may
     * hold data exactly when some layer stores it: the chain's allocation is the union of the layers' own
     * (a whole allocated block of a dynamic or differencing layer, conservatively; SEEK_DATA ranges of a
     * fixed one; nothing past a smaller layer's end). Both walks below are linear in the chain depth times
     * the blocks they pass; an earlier recursive walk was exponential in the depth and skipped child blocks
     * that lay before the parent's next range.
     */

    @Override
    public long nextAllocated(long offset) throws IOException {
        long best = size;
        for (VhdDisk d = this; d != null && best > offset; d = d.parent) {
            long n = d.ownNextAllocated(offset);
            if (n < d.size) {
                best = Math.min(best, n);
            }
        }
        return Math.min(best, size);
    }

    @Override
    public long nextUnallocated(long offset) throws IOException {
        long pos = offset;
        boolean moved = true;
        while (moved && pos < size) {
            moved = false;
            for (VhdDisk d = this; d != null && pos < size; d = d.parent) {
                if (d.ownStores(pos)) {
                    pos = d.ownNextUnallocated(pos);
                    moved = true;
                }
            }
        }
        return Math.min(pos, size);
    }

    /** The first offset >= {@code offset} this file itself stores, or its size. */
    long ownNextAllocated(long offset) throws IOException {
        if (offset >= size) {
            return size;
        }
        if (header == null) {
            long d = file.seekData(offset);
            return d < 0 ? size : Math.min(d, size);
        }
        for (int b = (int) (offset >>> blockShift); b < bat.length; b++) {
            if (blockAllocated(b)) {
                return Math.max(offset, (long) b * blockSize);
            }
        }
        return size;
    }

    boolean ownStores(long pos) throws IOException {
        if (pos >= size) {
            return false;
        }
        if (header == null) {
            long d = file.seekData(pos);
            return d >= 0 && d <= pos;
        }
        return blockAllocated((int) (pos >>> blockShift));
    }

    /** The first offset > {@code pos} (which this file stores) that it does not store, or its size. */
    long ownNextUnallocated(long pos) throws IOException {
        if (header == null) {
            long h = file.seekHole(pos);
            return h < 0 ? size : Math.min(h, size);
        }
        int b = (int) (pos >>> blockShift);
        while (b < bat.length && blockAllocated(b)) {
            b++;
        }
        return Math.min((long) b * blockSize, size);
    }

    @Override
    public long allocatedBytes() throws IOException {
        if (header == null) {
            return size;
        }
        long n = 0;
        for (int b = 0; b < bat.length; b++) {
            if (blockAllocated(b)) {
                n += blockSize;
            }
        }
        return n;
    }

    /**
     * The file ranges {@code [start, end)} the image uses, unsorted: the footer copy, dynamic header, BAT,
     * parent locator data, every allocated block (bitmap and data) and the footer; the third element is 1
     * for a block's data area (where zero runs may be punched). The whole file for a fixed disk.
     */
    public List<long[]> fileRangesInUse() throws IOException {
        long fileSize = file.size();
        List<long[]> used = new ArrayList<>();
        if (header == null) {
            used.add(new long[] {0, size, 1});
            used.add(new long[] {size, fileSize});
            return used;
        }
        used.add(new long[] {0, VhdFooter.LENGTH});
        used.add(new long[] {footer.dataOffset(), footer.dataOffset() + VhdDynamicHeader.LENGTH});
        used.add(new long[] {batOffset, batOffset + ((header.maxTableEntries() * 4 + SECTOR - 1) & -SECTOR)});
        for (int i = 0; i < VhdDynamicHeader.LOCATOR_COUNT; i++) {
            if (header.locatorCode(i) != 0 && header.locatorSpace(i) != 0) {
                long at = header.locatorDataOffset(i);
                used.add(new long[] {at, at + Math.max(header.locatorSpace(i) * SECTOR, header.locatorLength(i))});
            }
        }
        for (int b = 0; b < bat.length; b++) {
            long start = blockFileOffset(b);
            if (start >= 0) {
                used.add(new long[] {start, start + bitmapBytes});
                used.add(new long[] {start + bitmapBytes, start + bitmapBytes + blockSize, 1});
            }
        }
        used.add(new long[] {fileSize - VhdFooter.LENGTH, fileSize});
        return used;
    }

    /** Current file length (footer included). */
    public long fileSize() throws IOException {
        return file.size();
    }

    PosixFile file() {
        return file;
    }

    // ------------------------------------------------------------------------------------------ misc

    void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || (offset & (SECTOR - 1)) != 0 || (length & (SECTOR - 1)) != 0
            || offset > size - length) {
            throw new IllegalArgumentException("bad range offset=" + offset + " length=" + length + " size=" + size);
        }
    }

    void checkWritable() {
        if (readOnly()) {
            throw new IllegalStateException(file.path() + " is open read-only");
        }
    }

    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        synchronized (mappedLock) {
            if (mappedFile != null) {
                try {
                    mappedFile.close(); // io_uring rings that registered the fd keep their own reference
                } catch (IOException ignored) {
                    // O_DIRECT transfers reported their errors when they completed; nothing is pending here
                }
                mappedFile = null;
            }
        }
        try {
            if (!readOnly()) {
                data.writeDirtyBat();
                if (header != null) {
                    allocLock.lock();
                    try {
                        data.trimToLastBlock();
                    } finally {
                        allocLock.unlock();
                    }
                }
                file.dataSync();
            }
        } finally {
            try {
                file.close();
            } finally {
                if (parent != null) {
                    parent.close();
                }
            }
        }
    }

    @Override
    public String toString() {
        return "VhdDisk[" + file.path() + ", " + type().id() + ", " + size + " bytes]";
    }
}
