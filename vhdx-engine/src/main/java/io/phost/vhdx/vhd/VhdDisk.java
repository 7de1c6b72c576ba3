package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.MappedDisk;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.locks.ReentrantLock;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;

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
 * footer is first written further on (the file grows by at least four blocks or a quarter of its size, at
 * most 1 GiB, so most allocations skip this; the gap is a hole) and the old footer sector zeroed. Then the
 * block's bitmap is written (all ones for dynamic disks, as qemu does; all zeros for differencing) and the
 * entry is published in memory with a release store and its BAT sector marked dirty. {@link #flush()}
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
 * <p><b>Dynamic disk bitmaps.</b> Like qemu, reads of an allocated block in a dynamic (non-differencing) disk
 * ignore the bitmap and read the data area: every writer we know zero-fills blocks and sets the whole
 * bitmap. Differencing disks honour it sector by sector.
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

    private static final VarHandle BAT = MethodHandles.arrayElementVarHandle(int[].class);
    private static final VarHandle BITMAPS = MethodHandles.arrayElementVarHandle(long[][].class);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final ValueLayout.OfInt U32 = VhdFooter.U32;
    private static final int ENTRIES_PER_SECTOR = SECTOR / 4;

    private final PosixFile file;
    private final Arena arena;
    private final VhdFooter footer;
    private final VhdDynamicHeader header;
    private final int type;
    private final long size;
    private final long blockSize;
    private final int blockShift;
    private final long bitmapBytes;
    private final int[] bat;
    private final long batOffset;
    private final VhdDisk parent;
    private final Path parentPath;
    private final long[][] bitmaps;
    private final ReentrantLock allocLock = new ReentrantLock();
    private final Object[] bitmapLocks;
    /** Where the next block goes: the footer's current offset. Guarded by allocLock. */
    private long nextFree;
    /** Where the footer is now (the file ends 512 bytes after it); [nextFree, footerAt) is a hole. Under allocLock. */
    private long footerAt;
    /** BAT sectors (128 entries each) changed in memory since the last flush. */
    private final AtomicIntegerArray batDirty;
    /** A new block's bitmap: all ones (dynamic) or zeros (differencing); and one zero sector. */
    private final MemorySegment newBitmap;
    private final MemorySegment zeroSector;
    /** One BAT sector as flush writes it; under allocLock. */
    private final MemorySegment batSector;
    private volatile boolean closed;
    /** The fd for mapped I/O, opened by the first {@link #mappedFd()}; guarded by mappedLock. */
    private final Object mappedLock = new Object();
    private PosixFile mappedFile;
    private volatile int mappedAlignment = 1;

    private VhdDisk(PosixFile file, Arena arena, VhdFooter footer, VhdDynamicHeader header, long size,
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
        } else {
            this.batDirty = new AtomicIntegerArray(0);
            this.newBitmap = null;
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
        return open(path, readOnly, 0, new ArrayList<>());
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
            Parsed p = parse(file, arena);
            return new VhdDisk(file, arena, p.footer, p.header, p.size, p.bat, null, null, p.footerOffset);
        } catch (IOException | RuntimeException | Error e) {
            file.close();
            throw e;
        }
    }

    private static VhdDisk open(Path path, boolean readOnly, int depth, List<Path> seen) throws IOException {
        if (depth >= MAX_CHAIN_DEPTH) {
            // Same limit as VHDX: a chain holds at most MAX_CHAIN_DEPTH images, the child included.
            throw new VhdFormatException(Reason.CHAIN_TOO_DEEP, 0, "parent chain longer than " + MAX_CHAIN_DEPTH + " images");
        }
        Path real = path.toRealPath();
        if (seen.contains(real)) {
            throw new VhdFormatException(Reason.CHAIN_TOO_DEEP, 0, "parent chain loops back to " + real);
        }
        seen.add(real);
        PosixFile file = PosixFile.open(path, readOnly);
        Arena arena = Arena.ofAuto(); // GC-managed: closing a shared arena costs a handshake with every thread
        VhdDisk parent = null;
        try {
            Parsed p = parse(file, arena);
            Path parentPath = null;
            if (p.footer.diskType() == VhdFooter.TYPE_DIFFERENCING) {
                parentPath = locateParent(file, p.header, p.footer.dataOffset(), path);
                parent = open(parentPath, true, depth + 1, seen);
                byte[] expected = p.header.parentUniqueId();
                byte[] actual = parent.footer.uniqueId();
                if (!Arrays.equals(expected, actual)) {
                    throw new VhdFormatException(Reason.PARENT_MISMATCH,
                        p.footer.dataOffset() + VhdDynamicHeader.PARENT_UNIQUE_ID_OFFSET,
                        "parent " + parentPath + " has unique id " + HexFormat.of().formatHex(actual)
                            + ", the child expects " + HexFormat.of().formatHex(expected));
                }
            }
            return new VhdDisk(file, arena, p.footer, p.header, p.size, p.bat, parent, parentPath, p.footerOffset);
        } catch (IOException | RuntimeException | Error e) {
            if (parent != null) {
                parent.close();
            }
            file.close();
            throw e;
        }
    }

    /** What {@link #parse} learned: validated structures. */
    record Parsed(VhdFooter footer, VhdDynamicHeader header, long size, int[] bat, long footerOffset,
                  long fileSize, boolean footerFromCopy) {
    }

    /**
     * Reads and validates footer, dynamic header and BAT. Every number from the file is checked with 64-bit
     * arithmetic against the file size before use; nothing is allocated by a size the file claims beyond
     * what the file itself holds.
     */
    static Parsed parse(PosixFile file, Arena arena) throws IOException {
        long fileSize = file.size();
        if (fileSize < VhdFooter.LENGTH) {
            throw new VhdFormatException(Reason.TRUNCATED, 0, "file of " + fileSize + " bytes cannot hold a footer");
        }
        long footerOffset = fileSize - VhdFooter.LENGTH;
        VhdFooter footer = new VhdFooter(arena.allocate(VhdFooter.LENGTH, 8));
        file.readFully(footer.segment(), footerOffset);
        boolean fromCopy = false;
        VhdFormatException footerProblem = footerProblem(footer, footerOffset);
        if (footerProblem != null) {
            // The copy at offset 0 (dynamic/differencing disks) stands in for a damaged footer, as in qemu.
            VhdFooter copy = new VhdFooter(arena.allocate(VhdFooter.LENGTH, 8));
            file.readFully(copy.segment(), 0);
            if (footerProblem(copy, 0) != null || copy.diskType() == VhdFooter.TYPE_FIXED) {
                throw footerProblem;
            }
            footer = copy;
            fromCopy = true;
        }
        int type = footer.diskType();
        if (type != VhdFooter.TYPE_FIXED && type != VhdFooter.TYPE_DYNAMIC && type != VhdFooter.TYPE_DIFFERENCING) {
            throw new VhdFormatException(Reason.BAD_DISK_TYPE, footerOffset + VhdFooter.DISK_TYPE_OFFSET,
                "disk type " + type);
        }
        long size = virtualSize(footer);
        long sizeFieldOffset = footerOffset + VhdFooter.CURRENT_SIZE_OFFSET;
        if (size <= 0) {
            throw new VhdFormatException(Reason.BAD_SIZE, sizeFieldOffset, "virtual size " + size);
        }
        if (size > VhdFooter.MAX_SIZE) {
            // virtualSize() caps what it returns; name the field's own (unsigned) value, not the cap
            throw new VhdFormatException(Reason.TOO_LARGE, sizeFieldOffset,
                "virtual size " + Long.toUnsignedString(footer.currentSize()) + " over the 2040 GiB VHD limit");
        }
        if (type == VhdFooter.TYPE_FIXED) {
            if (size > footerOffset) {
                throw new VhdFormatException(Reason.TRUNCATED, sizeFieldOffset,
                    "fixed disk of " + size + " bytes in a file of " + fileSize);
            }
            return new Parsed(footer, null, size, null, footerOffset, fileSize, fromCopy);
        }
        long headerOffset = footer.dataOffset();
        long dataOffsetField = footerOffset + VhdFooter.DATA_OFFSET_OFFSET;
        if (headerOffset < VhdFooter.LENGTH || headerOffset > footerOffset - VhdDynamicHeader.LENGTH
            || (headerOffset & (SECTOR - 1)) != 0) {
            throw new VhdFormatException(Reason.BAD_DATA_OFFSET, dataOffsetField, "dynamic header offset " + headerOffset);
        }
        VhdDynamicHeader header = new VhdDynamicHeader(arena.allocate(VhdDynamicHeader.LENGTH, 8));
        file.readFully(header.segment(), headerOffset);
        if (!header.hasCookie()) {
            throw new VhdFormatException(Reason.BAD_HEADER_COOKIE, headerOffset, "no cxsparse cookie");
        }
        if (header.checksum() != header.computeChecksum()) {
            throw new VhdFormatException(Reason.BAD_HEADER_CHECKSUM, headerOffset + VhdDynamicHeader.CHECKSUM_OFFSET,
                String.format("stored=0x%08x computed=0x%08x", header.checksum(), header.computeChecksum()));
        }
        if ((header.headerVersion() >>> 16) != 1) {
            throw new VhdFormatException(Reason.BAD_HEADER_VERSION, headerOffset + VhdDynamicHeader.HEADER_VERSION_OFFSET,
                String.format("version 0x%08x", header.headerVersion()));
        }
        long blockSize = header.blockSize();
        if (blockSize < SECTOR || blockSize > VhdDynamicHeader.MAX_BLOCK_SIZE || Long.bitCount(blockSize) != 1) {
            throw new VhdFormatException(Reason.BAD_BLOCK_SIZE, headerOffset + VhdDynamicHeader.BLOCK_SIZE_OFFSET,
                "block size " + blockSize);
        }
        long entries = header.maxTableEntries();
        long needed = ceilDiv(size, blockSize);
        if (entries < needed) {
            throw new VhdFormatException(Reason.BAT_TOO_SMALL, headerOffset + VhdDynamicHeader.MAX_TABLE_ENTRIES_OFFSET,
                entries + " BAT entries for " + needed + " blocks");
        }
        long tableOffset = header.tableOffset();
        long tableField = headerOffset + VhdDynamicHeader.TABLE_OFFSET_OFFSET;
        // entries <= 2^32 and tableOffset is checked first, so the products below cannot overflow.
        if (tableOffset < VhdFooter.LENGTH || tableOffset > footerOffset
            || entries * 4 > footerOffset - tableOffset) {
            throw new VhdFormatException(Reason.BAT_OUT_OF_FILE, tableField,
                "BAT of " + entries + " entries at " + tableOffset + " in a file of " + fileSize);
        }
        if (overlaps(tableOffset, entries * 4, headerOffset, VhdDynamicHeader.LENGTH)) {
            throw new VhdFormatException(Reason.BAT_OUT_OF_FILE, tableField, "BAT overlaps the dynamic header");
        }
        // We only keep the entries the virtual size uses; the rest are padding (and are still in the file).
        int[] bat = new int[(int) needed];
        readBat(file, arena, tableOffset, bat);
        long bitmapBytes = bitmapBytesFor(blockSize);
        long blockBytes = bitmapBytes + blockSize;
        long[] starts = new long[bat.length];
        int allocated = 0;
        for (int i = 0; i < bat.length; i++) {
            long sector = Integer.toUnsignedLong(bat[i]);
            if (sector == VhdDynamicHeader.UNALLOCATED) {
                continue;
            }
            long start = sector * SECTOR;
            long entryOffset = tableOffset + 4L * i;
            if (start < VhdFooter.LENGTH || start > footerOffset - blockBytes) {
                throw new VhdFormatException(Reason.BLOCK_OUT_OF_FILE, entryOffset,
                    "block " + i + " at " + start + " (+" + blockBytes + ") outside the data area ending at " + footerOffset);
            }
            if (overlaps(start, blockBytes, headerOffset, VhdDynamicHeader.LENGTH)
                || overlaps(start, blockBytes, tableOffset, entries * 4)) {
                throw new VhdFormatException(Reason.BLOCK_OVERLAP, entryOffset,
                    "block " + i + " at " + start + " overlaps the header or BAT");
            }
            starts[allocated++] = start;
        }
        Arrays.sort(starts, 0, allocated);
        for (int i = 1; i < allocated; i++) {
            if (starts[i] - starts[i - 1] < blockBytes) {
                throw new VhdFormatException(Reason.BLOCK_OVERLAP, tableOffset,
                    "blocks at " + starts[i - 1] + " and " + starts[i] + " overlap");
            }
        }
        return new Parsed(footer, header, size, bat, footerOffset, fileSize, fromCopy);
    }

    static boolean overlaps(long a, long aLen, long b, long bLen) {
        return a < b + bLen && b < a + aLen;
    }

    private static void readBat(PosixFile file, Arena arena, long tableOffset, int[] bat) throws IOException {
        int chunk = 64 * 1024;
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment buf = tmp.allocate(chunk, 8);
            for (int i = 0; i < bat.length; ) {
                int n = Math.min(chunk / 4, bat.length - i);
                MemorySegment part = buf.asSlice(0, n * 4L);
                file.readFully(part, tableOffset + 4L * i);
                for (int j = 0; j < n; j++) {
                    bat[i + j] = part.get(U32, 4L * j);
                }
                i += n;
            }
        }
    }

    /** Null when the footer is usable, else why not. */
    static VhdFormatException footerProblem(VhdFooter f, long at) {
        if (!f.hasCookie()) {
            return new VhdFormatException(Reason.BAD_FOOTER_COOKIE, at, "no conectix cookie");
        }
        if (f.checksum() != f.computeChecksum()) {
            return new VhdFormatException(Reason.BAD_FOOTER_CHECKSUM, at + VhdFooter.CHECKSUM_OFFSET,
                String.format("stored=0x%08x computed=0x%08x", f.checksum(), f.computeChecksum()));
        }
        if ((f.version() >>> 16) != 1) {
            return new VhdFormatException(Reason.BAD_VERSION, at + VhdFooter.VERSION_OFFSET,
                String.format("file format version 0x%08x", f.version()));
        }
        return null;
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

    /**
     * Finds the parent: W2ru (relative to the child's directory), then W2ku (absolute), then MacX, then the
     * parent's name beside the child. Windows separators become '/', and a drive prefix ("C:") is dropped.
     */
    static Path locateParent(PosixFile file, VhdDynamicHeader h, long headerOffset, Path child) throws IOException {
        long fileSize = file.size();
        List<String> tried = new ArrayList<>();
        int[] order = {VhdDynamicHeader.PLATFORM_W2RU, VhdDynamicHeader.PLATFORM_W2KU, VhdDynamicHeader.PLATFORM_MACX};
        Path dir = child.toAbsolutePath().getParent();
        for (int code : order) {
            for (int i = 0; i < VhdDynamicHeader.LOCATOR_COUNT; i++) {
                if (h.locatorCode(i) != code) {
                    continue;
                }
                long len = h.locatorLength(i);
                long off = h.locatorDataOffset(i);
                if (len == 0) {
                    continue;
                }
                if (len > MAX_LOCATOR_LENGTH || off < 0 || off > fileSize || len > fileSize - off) {
                    throw new VhdFormatException(Reason.BAD_LOCATOR, headerOffset + VhdDynamicHeader.locator(i),
                        "locator " + i + " of " + len + " bytes at " + off + " in a file of " + fileSize);
                }
                byte[] raw = new byte[(int) len];
                file.readFully(MemorySegment.ofArray(raw), off);
                String s = code == VhdDynamicHeader.PLATFORM_MACX
                    ? new String(raw, StandardCharsets.UTF_8)
                    : new String(raw, StandardCharsets.UTF_16LE);
                Path candidate = toLocalPath(s, dir, code);
                if (candidate == null) {
                    continue;
                }
                tried.add(candidate.toString());
                if (Files.isRegularFile(candidate)) { // follows links; never a FIFO or device (a hostile locator could hang us)
                    return candidate;
                }
            }
        }
        String name = h.parentName();
        if (!name.isEmpty()) {
            String leaf = name.replace('\\', '/');
            leaf = leaf.substring(leaf.lastIndexOf('/') + 1);
            if (!leaf.isEmpty() && !leaf.equals("..") && !leaf.equals(".")) {
                Path candidate = dir.resolve(leaf);
                tried.add(candidate.toString());
                if (Files.isRegularFile(candidate)) {
                    return candidate;
                }
            }
        }
        throw new VhdFormatException(Reason.PARENT_NOT_FOUND, headerOffset + VhdDynamicHeader.LOCATORS_OFFSET,
            "parent \"" + name + "\" not found; tried " + tried);
    }

    static Path toLocalPath(String s, Path dir, int code) {
        int nul = s.indexOf('\0');
        if (nul >= 0) {
            s = s.substring(0, nul);
        }
        if (s.isEmpty()) {
            return null;
        }
        try {
            if (code == VhdDynamicHeader.PLATFORM_MACX) {
                if (s.startsWith("file://")) {
                    s = s.substring("file://".length());
                }
                return Path.of(s);
            }
            s = s.replace('\\', '/');
            if (s.length() >= 2 && Character.isLetter(s.charAt(0)) && s.charAt(1) == ':') {
                s = s.substring(2);
            }
            if (code == VhdDynamicHeader.PLATFORM_W2RU) {
                return dir.resolve(s).normalize();
            }
            return Path.of(s);
        } catch (java.nio.file.InvalidPathException e) {
            return null;
        }
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    // ------------------------------------------------------------------------------------------ create

    /** Creates a VHD (fixed, dynamic or differencing) and returns it open read-write. */
    public static VhdDisk create(Path path, CreateOptions o) throws IOException {
        if (o.logicalSectorSize() != SECTOR) {
            throw new VhdFormatException(Reason.UNSUPPORTED, 0, "VHD has 512-byte logical sectors only");
        }
        long blockSize = o.blockSize() == 0 ? VhdDynamicHeader.DEFAULT_BLOCK_SIZE : o.blockSize();
        if (o.type() != DiskType.FIXED
            && (blockSize < SECTOR || blockSize > VhdDynamicHeader.MAX_BLOCK_SIZE || Long.bitCount(blockSize) != 1)) {
            throw new IllegalArgumentException("VHD block size must be a power of two from 512 bytes to 256 MiB: " + blockSize);
        }
        long size = o.size();
        byte[] parentId = null;
        long parentTimestamp = 0;
        Path parentAbs = null;
        if (o.type() == DiskType.DIFFERENCING) {
            try (VhdDisk p = open(o.parent(), true)) {
                size = p.size();
                parentId = p.uniqueId();
                parentTimestamp = p.footer.timestamp();
                parentAbs = o.parent().toAbsolutePath().normalize();
            }
        }
        if (size <= 0 || size % SECTOR != 0) {
            throw new IllegalArgumentException("VHD size must be a positive multiple of 512: " + size);
        }
        if (size > VhdFooter.MAX_SIZE) {
            throw new VhdFormatException(Reason.TOO_LARGE, 0, "size " + size + " over the 2040 GiB VHD limit");
        }
        byte[] id = new byte[16];
        new SecureRandom().nextBytes(id);
        id[6] = (byte) ((id[6] & 0x0f) | 0x40); // a version-4 GUID, as Windows makes them
        id[8] = (byte) ((id[8] & 0x3f) | 0x80);
        long now = System.currentTimeMillis() / 1000 - VhdFooter.VHD_EPOCH;
        int diskType = switch (o.type()) {
            case FIXED -> VhdFooter.TYPE_FIXED;
            case DYNAMIC -> VhdFooter.TYPE_DYNAMIC;
            case DIFFERENCING -> VhdFooter.TYPE_DIFFERENCING;
        };
        PosixFile f = PosixFile.createNew(path);
        boolean ok = false;
        try (Arena tmp = Arena.ofConfined()) {
            VhdFooter footer = new VhdFooter(tmp.allocate(VhdFooter.LENGTH, 8));
            int[] chs = VhdFooter.geometryFor(size);
            footer.cookie().features(VhdFooter.FEATURES_RESERVED).version(VhdFooter.VERSION_1_0)
                .dataOffset(diskType == VhdFooter.TYPE_FIXED ? VhdFooter.NO_DATA_OFFSET : VhdFooter.LENGTH)
                .timestamp(now).creatorApp(CREATOR_APP).creatorVersion(CREATOR_VERSION).creatorOs(CREATOR_OS)
                .originalSize(size).currentSize(size).geometry(chs[0], chs[1], chs[2]).diskType(diskType)
                .uniqueId(id).sealChecksum();
            if (diskType == VhdFooter.TYPE_FIXED) {
                f.truncate(size + VhdFooter.LENGTH);
                f.fallocate(0, 0, size); // best effort: a fixed disk should not run out of space later
                f.writeFully(footer.segment(), size);
            } else {
                long entries = ceilDiv(size, blockSize);
                long batOffset = VhdFooter.LENGTH + VhdDynamicHeader.LENGTH;
                long batBytes = (entries * 4 + SECTOR - 1) & -SECTOR;
                long end = batOffset + batBytes;
                VhdDynamicHeader header = new VhdDynamicHeader(tmp.allocate(VhdDynamicHeader.LENGTH, 8));
                header.init(batOffset, entries, blockSize);
                if (diskType == VhdFooter.TYPE_DIFFERENCING) {
                    end = writeLocators(f, tmp, header, end, path, parentAbs, parentId, parentTimestamp);
                }
                header.sealChecksum();
                MemorySegment batBuf = tmp.allocate(batBytes, 8);
                batBuf.fill((byte) 0xFF);
                f.writeFully(batBuf, batOffset);
                f.writeFully(footer.segment(), 0);
                f.writeFully(header.segment(), VhdFooter.LENGTH);
                f.writeFully(footer.segment(), end);
            }
            // No fsync here: nothing refers to the new file yet; the caller's flush makes it durable.
            ok = true;
        } finally {
            f.close();
            if (!ok) {
                Files.deleteIfExists(path);
            }
        }
        try {
            return open(path, false);
        } catch (IOException | RuntimeException e) {
            // e.g. the new child makes the chain one image too long: do not leave a file nobody can open
            try {
                Files.deleteIfExists(path);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** Writes W2ku and W2ru locators after {@code end}; returns the new end. */
    private static long writeLocators(PosixFile f, Arena tmp, VhdDynamicHeader header, long end, Path child,
                                      Path parentAbs, byte[] parentId, long parentTimestamp) throws IOException {
        header.parent(parentId, parentTimestamp, parentAbs.getFileName().toString());
        Path childDir = child.toAbsolutePath().normalize().getParent();
        String relative = childDir.relativize(parentAbs).toString();
        String[] paths = {
            parentAbs.toString().replace('/', '\\'),
            (relative.startsWith("..") ? relative : "./" + relative).replace('/', '\\'),
        };
        int[] codes = {VhdDynamicHeader.PLATFORM_W2KU, VhdDynamicHeader.PLATFORM_W2RU};
        for (int i = 0; i < paths.length; i++) {
            byte[] b = paths[i].getBytes(StandardCharsets.UTF_16LE);
            long space = (b.length + SECTOR - 1) & -SECTOR;
            MemorySegment buf = tmp.allocate(space, 8);
            buf.copyFrom(MemorySegment.ofArray(b));
            f.writeFully(buf, end);
            header.locator(i, codes[i], space / SECTOR, b.length, end);
            end += space;
        }
        return end;
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
        long length = dst.byteSize();
        checkRange(offset, length);
        if (header == null) {
            file.readFully(dst, offset);
            return;
        }
        long mask = blockSize - 1;
        long pos = 0;
        while (pos < length) {
            long voff = offset + pos;
            int block = (int) (voff >>> blockShift);
            long inBlock = voff & mask;
            long n = Math.min(length - pos, blockSize - inBlock);
            // Whole-request fast path: no slice object when the request lies in one block.
            MemorySegment part = (pos == 0 && n == length) ? dst : dst.asSlice(pos, n);
            int entry = (int) BAT.getAcquire(bat, block);
            if (entry == -1) {
                readBelow(voff, part);
            } else {
                long data = Integer.toUnsignedLong(entry) * SECTOR + bitmapBytes + inBlock;
                if (bitmaps == null) {
                    file.readFully(part, data);
                } else {
                    readDifferencing(block, inBlock, data, voff, part);
                }
            }
            pos += n;
        }
    }

    // ------------------------------------------------------------------------------------------ MappedDisk

    @Override
    public long mapRead(long offset, long length) {
        return map(offset, length);
    }

    @Override
    public long mapWrite(long offset, long length) {
        return file.readOnly() ? -1 : map(offset, length);
    }

    /** File offset of [offset, +length) when one transfer of this file serves it, else -1. Lock-free. */
    private long map(long offset, long length) {
        if (offset < 0 || length <= 0 || ((offset | length) & (SECTOR - 1)) != 0 || offset > size - length || closed) {
            return -1;
        }
        if (header == null) {
            return offset; // fixed: the data area starts at 0
        }
        int block = (int) (offset >>> blockShift);
        long inBlock = offset & (blockSize - 1);
        if (inBlock + length > blockSize) {
            return -1;
        }
        // Acquire: pairs with allocate()'s release, which comes after the bitmap and BAT are on disk.
        int entry = (int) BAT.getAcquire(bat, block);
        if (entry == -1) {
            return -1;
        }
        if (bitmaps != null) {
            long[] bits = (long[]) BITMAPS.getAcquire(bitmaps, block);
            if (bits == null) {
                return -1;
            }
            int first = (int) (inBlock / SECTOR);
            int last = first + (int) (length / SECTOR);
            for (int s = first; s < last; s++) {
                if (!bit(bits, s)) {
                    return -1; // some sectors come from the parent, or need their bit set by write()
                }
            }
        }
        return Integer.toUnsignedLong(entry) * SECTOR + bitmapBytes + inBlock;
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

    /** Unallocated here: the parent's data, or zeros. */
    private void readBelow(long voff, MemorySegment part) throws IOException {
        if (parent == null) {
            part.fill((byte) 0);
            return;
        }
        long psize = parent.size();
        long n = part.byteSize();
        if (voff >= psize) {
            part.fill((byte) 0);
        } else if (voff + n <= psize) {
            parent.read(voff, part);
        } else {
            parent.read(voff, part.asSlice(0, psize - voff));
            part.asSlice(psize - voff).fill((byte) 0);
        }
    }

    private void readDifferencing(int block, long inBlock, long data, long voff, MemorySegment part) throws IOException {
        long[] bits = bitmap(block);
        int first = (int) (inBlock / SECTOR);
        int count = (int) (part.byteSize() / SECTOR);
        int i = 0;
        while (i < count) {
            boolean present = bit(bits, first + i);
            int j = i + 1;
            while (j < count && bit(bits, first + j) == present) {
                j++;
            }
            MemorySegment run = (i == 0 && j == count) ? part : part.asSlice((long) i * SECTOR, (long) (j - i) * SECTOR);
            if (present) {
                file.readFully(run, data + (long) i * SECTOR);
            } else {
                readBelow(voff + (long) i * SECTOR, run);
            }
            i = j;
        }
    }

    private static boolean bit(long[] bits, int sector) {
        return ((long) BITS.getAcquire(bits, sector >>> 6) & (1L << (sector & 63))) != 0;
    }

    /** The cached sector bitmap of an allocated block of a differencing disk, loaded on first use. */
    private long[] bitmap(int block) throws IOException {
        long[] bits = (long[]) BITMAPS.getAcquire(bitmaps, block);
        if (bits != null) {
            return bits;
        }
        synchronized (bitmapLocks[block & (bitmapLocks.length - 1)]) {
            bits = (long[]) BITMAPS.getAcquire(bitmaps, block);
            if (bits != null) {
                return bits;
            }
            int sectors = (int) (blockSize / SECTOR);
            bits = new long[(sectors + 63) >>> 6];
            long at = blockFileOffset(block);
            try (Arena tmp = Arena.ofConfined()) {
                MemorySegment buf = tmp.allocate(bitmapBytes, 8);
                file.readFully(buf, at);
                for (int s = 0; s < sectors; s++) {
                    // On disk: sector s is bit (7 - s%8) of byte s/8 (most significant bit first).
                    if ((buf.get(ValueLayout.JAVA_BYTE, s >>> 3) & (0x80 >>> (s & 7))) != 0) {
                        bits[s >>> 6] |= 1L << (s & 63);
                    }
                }
            }
            BITMAPS.setRelease(bitmaps, block, bits);
            return bits;
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        checkWritable();
        long length = src.byteSize();
        checkRange(offset, length);
        if (header == null) {
            file.writeFully(src, offset);
            return;
        }
        long mask = blockSize - 1;
        long pos = 0;
        while (pos < length) {
            long voff = offset + pos;
            int block = (int) (voff >>> blockShift);
            long inBlock = voff & mask;
            long n = Math.min(length - pos, blockSize - inBlock);
            MemorySegment part = (pos == 0 && n == length) ? src : src.asSlice(pos, n);
            int entry = (int) BAT.getAcquire(bat, block);
            if (entry == -1) {
                entry = allocate(block);
            }
            long blockStart = Integer.toUnsignedLong(entry) * SECTOR;
            file.writeFully(part, blockStart + bitmapBytes + inBlock);
            if (bitmaps != null) {
                markPresent(block, blockStart, (int) (inBlock / SECTOR), (int) (n / SECTOR));
            }
            pos += n;
        }
    }

    /** Sets bitmap bits after the data is written (so a reader that sees the bit finds the data). */
    private void markPresent(int block, long blockStart, int first, int count) throws IOException {
        long[] bits = bitmap(block);
        boolean all = true;
        for (int s = first; s < first + count; s++) {
            if (!bit(bits, s)) {
                all = false;
                break;
            }
        }
        if (all) {
            return;
        }
        synchronized (bitmapLocks[block & (bitmapLocks.length - 1)]) {
            for (int s = first; s < first + count; s++) {
                int w = s >>> 6;
                BITS.setRelease(bits, w, (long) BITS.getAcquire(bits, w) | (1L << (s & 63)));
            }
            // Write back the 512-byte bitmap sectors the change touched.
            int firstByteSector = (first >>> 3) / SECTOR;
            int lastByteSector = ((first + count - 1) >>> 3) / SECTOR;
            try (Arena tmp = Arena.ofConfined()) {
                long len = (long) (lastByteSector - firstByteSector + 1) * SECTOR;
                MemorySegment buf = tmp.allocate(len, 8);
                long base = (long) firstByteSector * SECTOR * 8; // first sector number covered
                int sectors = (int) (blockSize / SECTOR);
                for (long b = 0; b < len; b++) {
                    int v = 0;
                    for (int k = 0; k < 8; k++) {
                        long s = base + b * 8 + k;
                        if (s < sectors && bit(bits, (int) s)) {
                            v |= 0x80 >>> k;
                        }
                    }
                    buf.set(ValueLayout.JAVA_BYTE, b, (byte) v);
                }
                file.writeFully(buf, blockStart + (long) firstByteSector * SECTOR);
            }
        }
    }

    /** Allocates block {@code block} (or returns the entry another thread just published). */
    private int allocate(int block) throws IOException {
        allocLock.lock();
        try {
            int entry = (int) BAT.getAcquire(bat, block);
            if (entry != -1) {
                return entry;
            }
            // Data area 4 KiB aligned (O_DIRECT, 4K-sector hosts): the bitmap sits just before a 4 KiB boundary.
            long start = ((nextFree + bitmapBytes + 4095) & -4096L) - bitmapBytes;
            if (start < nextFree) {
                start += 4096;
            }
            long end = start + bitmapBytes + blockSize;
            if (start / SECTOR >= VhdDynamicHeader.UNALLOCATED) {
                throw new VhdFormatException(Reason.TOO_LARGE, nextFree, "file too large for a 32-bit BAT entry");
            }
            if (end > footerAt) {
                growBefore(end);
            }
            // The range below nextFree's old footer is a hole or zeroed: only the bitmap needs writing.
            file.writeFully(newBitmap, start);
            entry = (int) (start / SECTOR);
            nextFree = end;
            if (bitmaps != null) {
                BITMAPS.setRelease(bitmaps, block, new long[(int) ((blockSize / SECTOR + 63) >>> 6)]);
            }
            // Publish: readers that see the entry find the bitmap on disk; flush() writes the BAT sector.
            BAT.setRelease(bat, block, entry);
            batDirty.set(block / ENTRIES_PER_SECTOR, 1);
            return entry;
        } finally {
            allocLock.unlock();
        }
    }

    /**
     * Moves the footer past {@code end} and some room ahead: first the new footer (the file grows, its tail
     * is a valid footer at every moment), then zeros over the old one, now inside the hole. Under allocLock.
     */
    private void growBefore(long end) throws IOException {
        long blockBytes = bitmapBytes + blockSize;
        long ahead = Math.min(Math.max(4 * blockBytes, end >>> 2), 1L << 30);
        long newFooter = (end + ahead + SECTOR - 1) & -(long) SECTOR;
        if (newFooter / SECTOR >= VhdDynamicHeader.UNALLOCATED) {
            newFooter = end; // near the 2 TiB limit of 32-bit sector numbers: no room ahead
        }
        file.writeFully(footer.segment(), newFooter);
        file.writeFully(zeroSector, footerAt);
        footerAt = newFooter;
    }

    /** Writes the BAT sectors changed since the last call (SIGKILL-safe: see the class comment). */
    private void writeDirtyBat() throws IOException {
        allocLock.lock();
        try {
            for (int s = 0; s < batDirty.length(); s++) {
                if (batDirty.get(s) == 0 || batDirty.getAndSet(s, 0) == 0) {
                    continue;
                }
                int first = s * ENTRIES_PER_SECTOR;
                int n = Math.min(ENTRIES_PER_SECTOR, bat.length - first);
                for (int i = 0; i < n; i++) {
                    batSector.set(U32, 4L * i, (int) BAT.getAcquire(bat, first + i));
                }
                try {
                    file.writeFully(batSector.asSlice(0, 4L * n), batOffset + 4L * first);
                } catch (IOException | RuntimeException e) {
                    batDirty.set(s, 1); // the next flush retries it
                    throw e;
                }
            }
        } finally {
            allocLock.unlock();
        }
    }

    /**
     * Gives the room allocated ahead back: the footer is written at the end of the last block, then the
     * file cut after it (a kill in between leaves the old footer last, still valid). Under allocLock.
     */
    private void trimToLastBlock() throws IOException {
        if (footerAt > nextFree) {
            file.writeFully(footer.segment(), nextFree);
            file.truncate(nextFree + VhdFooter.LENGTH);
            footerAt = nextFree;
        }
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly()) {
            writeDirtyBat();
            file.dataSync();
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        zero(offset, length, false);
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        zero(offset, length, true);
    }

    /**
     * Zeroing. Fixed disks punch or zero the file range. Dynamic disks drop whole blocks from the BAT when
     * {@code release} (the file range becomes a hole; {@code compact} reclaims it), zero partial ranges of
     * allocated blocks in place and leave unallocated ones alone. Differencing disks must hide the parent,
     * so they write zeros (allocating as needed).
     */
    private void zero(long offset, long length, boolean release) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (header == null) {
            zeroFileRange(offset, length, release);
            return;
        }
        long mask = blockSize - 1;
        long pos = 0;
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment zeros = null;
            while (pos < length) {
                long voff = offset + pos;
                int block = (int) (voff >>> blockShift);
                long inBlock = voff & mask;
                long n = Math.min(length - pos, blockSize - inBlock);
                int entry = (int) BAT.getAcquire(bat, block);
                if (bitmaps != null) {
                    if (zeros == null) {
                        zeros = tmp.allocate(Math.min(blockSize, 1 << 20), 4096);
                    }
                    for (long d = 0; d < n; d += zeros.byteSize()) {
                        long k = Math.min(zeros.byteSize(), n - d);
                        write(voff + d, zeros.asSlice(0, k));
                    }
                } else if (entry != -1) {
                    long start = Integer.toUnsignedLong(entry) * SECTOR;
                    if (n == blockSize && release) {
                        releaseBlock(block, entry, start);
                    } else {
                        zeroFileRange(start + bitmapBytes + inBlock, n, false);
                    }
                }
                pos += n;
            }
        }
    }

    private void releaseBlock(int block, int entry, long start) throws IOException {
        allocLock.lock();
        try {
            if ((int) BAT.getAcquire(bat, block) != entry) {
                return;
            }
            try (Arena tmp = Arena.ofConfined()) {
                MemorySegment e = tmp.allocate(4, 4);
                e.set(U32, 0, -1);
                file.writeFully(e, batOffset + 4L * block);
            }
            BAT.setRelease(bat, block, -1);
            file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, start, bitmapBytes + blockSize);
        } finally {
            allocLock.unlock();
        }
    }

    private void zeroFileRange(long at, long length, boolean punch) throws IOException {
        if (punch && file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        if (file.fallocate(PosixFile.FALLOC_FL_ZERO_RANGE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        if (file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment zeros = tmp.allocate(Math.min(length, 1 << 20), 4096);
            for (long d = 0; d < length; d += zeros.byteSize()) {
                file.writeFully(zeros.asSlice(0, Math.min(zeros.byteSize(), length - d)), at + d);
            }
        }
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
            long[] bits = bitmap(b);
            int sectors = (int) (limit / SECTOR);
            int s = 0;
            while (s < sectors) {
                while (s < sectors && !bit(bits, s)) {
                    s++;
                }
                int e = s;
                while (e < sectors && bit(bits, e)) {
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
    private long ownNextAllocated(long offset) throws IOException {
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

    private boolean ownStores(long pos) throws IOException {
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
    private long ownNextUnallocated(long pos) throws IOException {
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

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || (offset & (SECTOR - 1)) != 0 || (length & (SECTOR - 1)) != 0
            || offset > size - length) {
            throw new IllegalArgumentException("bad range offset=" + offset + " length=" + length + " size=" + size);
        }
    }

    private void checkWritable() {
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
                writeDirtyBat();
                if (header != null) {
                    allocLock.lock();
                    try {
                        trimToLastBlock();
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
