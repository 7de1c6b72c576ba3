package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import io.phost.core.sys.PosixFile;

import static io.phost.vhdx.vhdx.BatDescriptor.*;

import io.phost.vhdx.MappedDisk;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import io.phost.vhdx.VirtualDisk;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A VHDX image (MS-VHDX v1.0): fixed, dynamic or differencing, opened for concurrent I/O.
 *
 * <h2>Data path</h2>
 * The whole BAT lives in memory ({@code long[]}, read with acquire, published with release). A read or a
 * write to an allocated block looks up one entry and issues one {@code pread}/{@code pwrite} per block it
 * touches: no lock and no allocation. A write to an unallocated block takes that block's stripe lock,
 * re-checks the entry, appends a new 1 MiB-aligned block at the end of the file, writes the data, then
 * publishes the entry; the BAT sector is marked dirty.
 *
 * <h2>Mapped I/O</h2>
 * {@link #mapRead}/{@link #mapWrite} hand a caller the file offset of a range that lies in one
 * FULLY_PRESENT block (or a PARTIALLY_PRESENT one whose sectors are all present), with the same acquire
 * load the data path uses, so it may transfer the bytes itself on {@link #mappedFd()} (a second fd of the
 * image, O_DIRECT where allowed). Everything else (allocation, bitmaps, parents, the in-memory log of a
 * read-only open, the first write into an older block before the session started) stays with
 * {@link #read}/{@link #write}.
 *
 * <h2>Metadata and flush</h2>
 * BAT and sector-bitmap changes are committed by {@link #flush()} through the log:
 * <pre>
 *   fdatasync          new payload data (and the previous commit's in-place metadata) is durable
 *   write log entry    dirty BAT / bitmap sectors, tail = this entry
 *   fdatasync          the entry is durable: from here a crash replays it
 *   apply in place     write the sectors to the BAT / bitmap blocks (made durable by the next flush or close)
 * </pre>
 * So after {@code flush()} returns, every write that completed before it is durable, and the metadata
 * that maps it is durable in the log (and in place after the next flush). A crash before a flush loses
 * at most the unflushed writes; their blocks may remain as unreferenced space at the end of the file.
 *
 * <h2>GUID rules</h2>
 * Before the first change to anything the on-disk image describes (a write into a block that existed at
 * open, the first log entry, a log replay) the header is rewritten with a new FileWriteGuid, a new
 * DataWriteGuid (first user-visible change) and a new LogGuid for this session: the non-current slot with
 * sequence+1, followed by fdatasync (MS-VHDX 2.2.2.1), then the other slot with sequence+2 whose
 * durability waits for the next fdatasync (the log entry's). Writes that
 * allocate only append blocks past the end the image had at open: no BAT on disk
 * points there until the flush that logs them, so the header rewrite waits for that flush (for an image
 * without a parent it even shares the log entry's fdatasync: {@link #startSessionWithEntry}) and a fresh
 * image's first writes cost about what a raw file's sparse extension does. A crash before that
 * flush leaves the header as it was and unreferenced space at the end. On close the LogGuid is set back to zero (log empty), so qemu
 * and Hyper-V see a clean image.
 */
public final class VhdxDisk implements MappedDisk {
    /** State of the log when the image was opened. */
    public enum LogState { CLEAN, REPLAYED, REPLAYED_IN_MEMORY }

    /** One ancestor in a differencing chain, nearest first. */
    public record ParentInfo(Path path, UUID dataWriteGuid, String parentLinkage, DiskType type) {}

    /** A payload block's state as stored in the BAT. */
    public enum BlockState {
        NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED, FULLY_PRESENT, PARTIALLY_PRESENT;

        static BlockState of(int bits) {
            return switch (bits) {
                case PAYLOAD_NOT_PRESENT -> NOT_PRESENT;
                case PAYLOAD_UNDEFINED -> UNDEFINED;
                case PAYLOAD_ZERO -> ZERO;
                case PAYLOAD_UNMAPPED -> UNMAPPED;
                case PAYLOAD_FULLY_PRESENT -> FULLY_PRESENT;
                default -> PARTIALLY_PRESENT;
            };
        }
    }

    static final int MAX_CHAIN_DEPTH = 64;
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle BYTES = MethodHandles.arrayElementVarHandle(byte[].class);
    private static final int LOCK_STRIPES = 256;
    private static final int BAT_ENTRIES_PER_SECTOR = 4096 / 8;
    private static final MemorySegment ZEROS = Arena.global().allocate(1 << 20, 4096);

    private final Path path;
    private final PosixFile file;
    private final boolean readOnly;
    private final VhdxParser.Parsed p;
    private final long size;
    private final int blockSize;
    private final int blockShift;
    private final long blockMask;
    private final int chunkRatio;
    private final int logicalSectorSize;
    private final int sectorShift;
    private final long[] bat;
    private final AtomicIntegerArray batDirty;
    private final AtomicReferenceArray<SectorBitmap> bitmaps;
    private final Object[] stripes = new Object[LOCK_STRIPES];
    private final ReentrantLock commitLock = new ReentrantLock();
    private final AtomicLong fileEnd;
    private final Overlay overlay;
    private final VhdxDisk parent;
    private final LogState logState;

    // Header state, guarded by commitLock.
    private VhdxParser.Header header;
    private UUID fileWriteGuid;
    private UUID dataWriteGuid;
    private UUID logGuid;
    private long headerSequence;
    private int currentSlot;
    private long logPosition;
    private long logSequence;
    /** Set once the session's header (new GUIDs, LogGuid) is durable; written once under commitLock. */
    private volatile boolean sessionStarted;
    /**
     * End of the file at open: every block at or past it was allocated in this open and is reachable from
     * the on-disk BAT only after the flush that logs it (which starts the session first). Writes into such
     * blocks therefore need no session yet; writes into older blocks do.
     */
    private final long sessionFloor;
    /** File size at open: durable as far as this open knows (FlushedFileOffset of a session's first entry). */
    private final long openFileSize;
    /** How far {@link #allocate} has extended the file with ftruncate; guarded by itself (grows only). */
    private final long[] extendedTo = new long[1];
    /** A block was allocated before the session started: close must flush so it is logged. */
    private volatile boolean allocatedBeforeSession;
    private volatile boolean closed;
    /** The fd for mapped I/O, opened by the first {@link #mappedFd()}; guarded by mappedLock. */
    private final Object mappedLock = new Object();
    private PosixFile mappedFile;
    private volatile int mappedAlignment = 1;

    /** One chunk's 1 MiB sector bitmap, loaded lazily; dirty flags per 4 KiB sector of it. */
    private static final class SectorBitmap {
        final byte[] bits = new byte[SECTOR_BITMAP_BLOCK_LENGTH];
        final AtomicIntegerArray dirty = new AtomicIntegerArray(SECTOR_BITMAP_BLOCK_LENGTH / 4096);
    }

    private VhdxDisk(Path path, PosixFile file, boolean readOnly, VhdxParser.Parsed p, Overlay overlay,
                     VhdxDisk parent, LogState logState) throws IOException {
        this.path = path;
        this.file = file;
        this.readOnly = readOnly;
        this.p = p;
        this.size = p.virtualSize;
        this.blockSize = p.blockSize;
        this.blockShift = Integer.numberOfTrailingZeros(p.blockSize);
        this.blockMask = p.blockSize - 1L;
        this.chunkRatio = p.chunkRatio;
        this.logicalSectorSize = p.logicalSectorSize;
        this.sectorShift = Integer.numberOfTrailingZeros(p.logicalSectorSize);
        this.bat = p.batEntries;
        this.batDirty = new AtomicIntegerArray((bat.length + BAT_ENTRIES_PER_SECTOR - 1) / BAT_ENTRIES_PER_SECTOR);
        long chunks = p.hasParent ? (p.dataBlocks + chunkRatio - 1) / chunkRatio : 0;
        this.bitmaps = new AtomicReferenceArray<>((int) chunks);
        for (int i = 0; i < LOCK_STRIPES; i++) {
            stripes[i] = new Object();
        }
        this.openFileSize = file.size();
        long end = Math.max(openFileSize, p.logPlan == null ? 0 : p.logPlan.lastFileOffset());
        this.fileEnd = new AtomicLong(roundUp(end, 1 << 20));
        this.extendedTo[0] = openFileSize;
        this.sessionFloor = fileEnd.get();
        this.overlay = overlay;
        this.parent = parent;
        this.logState = logState;
        this.header = p.header;
        this.fileWriteGuid = p.header.fileWriteGuid();
        this.dataWriteGuid = p.header.dataWriteGuid();
        this.logGuid = p.header.logGuid();
        this.headerSequence = p.header.sequence();
        this.currentSlot = p.header.slot();
    }

    /**
     * The read-only view {@link #demoteToParent} hands a child: the same fd, parsed metadata, BAT and loaded
     * sector bitmaps (all durable by then), and the header state as the last commit left it.
     */
    private VhdxDisk(VhdxDisk rw) {
        this.path = rw.path;
        this.file = rw.file;
        this.readOnly = true;
        this.p = rw.p;
        this.size = rw.size;
        this.blockSize = rw.blockSize;
        this.blockShift = rw.blockShift;
        this.blockMask = rw.blockMask;
        this.chunkRatio = rw.chunkRatio;
        this.logicalSectorSize = rw.logicalSectorSize;
        this.sectorShift = rw.sectorShift;
        this.bat = rw.bat;
        this.batDirty = rw.batDirty;
        this.bitmaps = rw.bitmaps;
        for (int i = 0; i < LOCK_STRIPES; i++) {
            stripes[i] = new Object();
        }
        this.openFileSize = rw.openFileSize;
        this.fileEnd = rw.fileEnd;
        this.extendedTo[0] = rw.extendedTo[0];
        this.sessionFloor = rw.sessionFloor;
        this.overlay = rw.overlay;
        this.parent = rw.parent;
        this.logState = rw.logState;
        this.header = rw.header;
        this.fileWriteGuid = rw.fileWriteGuid;
        this.dataWriteGuid = rw.dataWriteGuid;
        this.logGuid = rw.logGuid;
        this.headerSequence = rw.headerSequence;
        this.currentSlot = rw.currentSlot;
        this.logPosition = rw.logPosition;
        this.logSequence = rw.logSequence;
        this.sessionStarted = rw.sessionStarted;
    }

    // ---------------------------------------------------------------- open / create

    /**
     * Opens a VHDX image. A read-write open replays a dirty log into the file; a read-only open replays
     * it in memory, so reads see the replayed metadata while the file stays untouched. A differencing
     * image opens its parent chain read-only and checks each linkage.
     *
     * @throws VhdxFormatException when the image (or a parent) is damaged, hostile or unsupported
     */
    public static VhdxDisk open(Path path, boolean readOnly) throws IOException {
        return open(path, readOnly, 0);
    }

    /**
     * Opens an image read-only without opening its parent (for {@code info} on a child whose parent is
     * missing or does not match): sectors the child does not store read as zeros, so this is not a view of
     * the virtual disk; it is a view of this file's own metadata and blocks.
     */
    public static VhdxDisk openDetached(Path path) throws IOException {
        return open(path, true, 0, true);
    }

    /**
     * Opens read-write while this process's own readers may hold the image open read-only (an online merge
     * writing a parent that a running chain reads through its child): takes a shared flock instead of the
     * exclusive one. Only for a writer whose every write is shadowed, in those readers' chains, by a child
     * that stores the same range: they never read what it writes, and their cached metadata stays valid for
     * what they do read. Another process still cannot open it read-write.
     */
    public static VhdxDisk openBesideReaders(Path path) throws IOException {
        return open(path, false, 0, false, false);
    }

    private static VhdxDisk open(Path path, boolean readOnly, int depth) throws IOException {
        return open(path, readOnly, depth, false);
    }

    private static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent) throws IOException {
        return open(path, readOnly, depth, skipParent, !readOnly);
    }

    private static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent, boolean exclusive)
        throws IOException {
        return open(path, readOnly, depth, skipParent, exclusive, null);
    }

    /** {@code givenParent}: the open parent to read through instead of opening the chain (never closed here). */
    private static VhdxDisk open(Path path, boolean readOnly, int depth, boolean skipParent, boolean exclusive,
                                 VhdxDisk givenParent) throws IOException {
        PosixFile f = PosixFile.open(path, readOnly);
        try {
            if (!f.tryLock(exclusive)) {
                throw new IOException(path + " is in use: " + (readOnly ? "open read-write" : "open")
                    + " elsewhere (flock held)");
            }
            return openFile(path, f, readOnly, depth, skipParent, givenParent);
        } catch (IOException | RuntimeException | Error e) {
            try {
                f.close();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    private static VhdxDisk openFile(Path path, PosixFile f, boolean readOnly, int depth, boolean skipParent,
                                     VhdxDisk givenParent) throws IOException {
        VhdxParser.Parsed p = new VhdxParser.Parsed();
        p.readOnly = readOnly;
        p.fileSize = f.size();
        int sectionLength = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
        if (p.fileSize < sectionLength) {
            throw new VhdxFormatException(Reason.TRUNCATED, p.fileSize, "file of " + p.fileSize + " bytes has no room for the header section");
        }
        byte[] section = new byte[sectionLength];
        f.read(0, section, 0, sectionLength);
        if (Le.i64(section, 0) != VhdxHeaderDescriptor.FILE_IDENTIFIER_SIGNATURE) {
            throw new VhdxFormatException(Reason.BAD_SIGNATURE, 0, "no \"vhdxfile\" file type identifier");
        }
        p.header = VhdxParser.parseHeaders(section);
        VhdxParser.checkLogRegion(p.header, p.fileSize);

        Overlay overlay = null;
        LogState logState = LogState.CLEAN;
        if (!Le.isZero(p.header.logGuid())) {
            long logLength = p.header.logLength();
            if (logLength > LogDescriptor.MAX_LOG_LENGTH) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, p.header.logOffset(),
                    "log of " + logLength + " bytes is larger than the " + LogDescriptor.MAX_LOG_LENGTH + " we replay");
            }
            byte[] log = new byte[(int) logLength];
            f.read(p.header.logOffset(), log, 0, log.length);
            p.logPlan = VhdxLog.plan(log, p.header.logGuid(), p.header.logOffset(), p.fileSize);
            if (!p.logPlan.isEmpty()) {
                if (readOnly) {
                    overlay = new Overlay();
                    for (VhdxLog.Update u : p.logPlan.updates()) {
                        overlay.apply(u);
                    }
                    logState = LogState.REPLAYED_IN_MEMORY;
                } else {
                    replayInPlace(f, p.logPlan);
                    p.fileSize = f.size();
                    logState = LogState.REPLAYED;
                }
                if (p.logPlan.updates().stream().anyMatch(u -> u.fileOffset() < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH)) {
                    // A log entry rewrote part of the region tables: re-read the section through the replay.
                    if (overlay != null) {
                        overlay.patch(0, section, 0, sectionLength);
                    } else {
                        f.read(0, section, 0, sectionLength);
                    }
                }
            }
        }
        final Overlay ov = overlay;
        VhdxParser.Source src = (off, dst, o, len) -> {
            long n = f.read(off, dst, o, len);
            if (n < len) {
                java.util.Arrays.fill(dst, o + (int) n, o + len, (byte) 0);
            }
            if (ov != null) {
                ov.patch(off, dst, o, len);
            }
        };
        VhdxParser.parseRegionsAndMetadata(p, section, src);
        if (p.overlapWarning != null) {
            System.getLogger("phost.vhdx").log(System.Logger.Level.WARNING,
                path + ": " + p.overlapWarning + "; opened read-only, a read-write open is refused");
        }

        VhdxDisk parent = null;
        if (p.hasParent && !skipParent) {
            parent = givenParent != null ? checkGivenParent(path, p, givenParent) : openParent(path, p, depth);
        } else if (givenParent != null) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, 0, path + " is not a differencing image: it has no parent to open on "
                + givenParent.path());
        }
        VhdxDisk d;
        try {
            d = new VhdxDisk(path, f, readOnly, p, overlay, parent, logState);
            if (logState == LogState.REPLAYED) {
                // The replay was the first write of this session: new FileWriteGuid, log now empty.
                d.commitLock.lock();
                try {
                    d.fileWriteGuid = UUID.randomUUID();
                    d.logGuid = Le.ZERO_GUID;
                    d.writeHeaders();
                } finally {
                    d.commitLock.unlock();
                }
            }
        } catch (IOException | RuntimeException e) {
            if (parent != null && parent != givenParent) {
                parent.close();
            }
            throw e;
        }
        return d;
    }

    private static void replayInPlace(PosixFile f, VhdxLog.Plan plan) throws IOException {
        long size = f.size();
        for (VhdxLog.Update u : plan.updates()) {
            if (u.page() != null) {
                f.write(u.fileOffset(), u.page(), 0, u.page().length);
            } else {
                long end = u.fileOffset() + u.zeroLength();
                // Zeros beyond the current end are a sparse extension, not written byte by byte.
                long writeEnd = Math.min(end, size);
                for (long o = u.fileOffset(); o < writeEnd; o += ZEROS.byteSize()) {
                    f.write(o, ZEROS, 0, Math.min(ZEROS.byteSize(), writeEnd - o));
                }
                if (end > size) {
                    f.truncate(end);
                    size = end;
                }
            }
            size = Math.max(size, u.fileOffset() + (u.page() != null ? u.page().length : 0));
        }
        if (f.size() < plan.lastFileOffset()) {
            f.truncate(roundUp(plan.lastFileOffset(), 1 << 20));
        }
        f.dataSync();
    }

    private static VhdxDisk openParent(Path child, VhdxParser.Parsed p, int depth) throws IOException {
        long locAt = p.metadata.fileOffset();
        if (depth + 1 >= MAX_CHAIN_DEPTH) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "parent chain longer than " + MAX_CHAIN_DEPTH + " images (or cyclic)");
        }
        Map<String, String> kv = p.parentLocator;
        Path parentPath = resolveParent(child, kv);
        if (parentPath == null) {
            throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt,
                "parent not found: relative_path=" + kv.get("relative_path") + " absolute_win32_path=" + kv.get("absolute_win32_path"));
        }
        VhdxDisk parent = open(parentPath, true, depth + 1);
        try {
            return checkLinkage(parentPath, p, parent);
        } catch (IOException | RuntimeException e) {
            parent.close();
            throw e;
        }
    }

    /** {@link #openChildOn}: the child's locator must name {@code parent}'s file and its DataWriteGuid. */
    private static VhdxDisk checkGivenParent(Path child, VhdxParser.Parsed p, VhdxDisk parent) throws IOException {
        long locAt = p.metadata.fileOffset();
        Path parentPath = resolveParent(child, p.parentLocator);
        if (parentPath == null || !java.nio.file.Files.isSameFile(parentPath, parent.path())) {
            throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt, "the child's parent locator names " + parentPath
                + ", not the open parent " + parent.path());
        }
        int depth = 1;
        for (VhdxDisk d = parent.parent; d != null; d = d.parent) {
            depth++;
        }
        if (depth + 1 >= MAX_CHAIN_DEPTH) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "parent chain longer than " + MAX_CHAIN_DEPTH + " images");
        }
        return checkLinkage(parentPath, p, parent);
    }

    private static VhdxDisk checkLinkage(Path parentPath, VhdxParser.Parsed p, VhdxDisk parent) throws IOException {
        long locAt = p.metadata.fileOffset();
        Map<String, String> kv = p.parentLocator;
        {
            UUID linkage = Le.parseBraced(kv.get("parent_linkage"));
            String l2 = kv.get("parent_linkage2");
            UUID linkage2 = l2 == null ? null : Le.parseBraced(l2);
            if (linkage == null) {
                throw new VhdxFormatException(Reason.BAD_PARENT_LOCATOR, locAt, "parent_linkage is not a GUID: " + kv.get("parent_linkage"));
            }
            UUID actual = parent.dataWriteGuid();
            if (!actual.equals(linkage) && !actual.equals(linkage2)) {
                throw new VhdxFormatException(Reason.PARENT_LINKAGE_MISMATCH, locAt,
                    "parent " + parentPath + " has DataWriteGuid " + Le.braced(actual) + " but the child expects " + Le.braced(linkage)
                        + (linkage2 != null ? " or " + Le.braced(linkage2) : ""));
            }
            if (parent.size() != p.virtualSize || parent.logicalSectorSize() != p.logicalSectorSize) {
                throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt,
                    "parent size/sector " + parent.size() + "/" + parent.logicalSectorSize() + " differs from child "
                        + p.virtualSize + "/" + p.logicalSectorSize);
            }
            return parent;
        }
    }

    /** relative_path (against the child's directory), then absolute_win32_path; volume_path is Windows-only. */
    static Path resolveParent(Path child, Map<String, String> kv) {
        Path dir = child.toAbsolutePath().getParent();
        String rel = kv.get("relative_path");
        if (rel != null && !rel.isEmpty()) {
            String r = rel.replace('\\', '/');
            if (r.startsWith("./")) {
                r = r.substring(2);
            }
            try {
                Path c = dir.resolve(r).normalize();
                if (Files.isRegularFile(c)) {
                    return c;
                }
            } catch (RuntimeException ignored) {
                // an unparsable path is simply not a candidate
            }
        }
        String abs = kv.get("absolute_win32_path");
        if (abs != null && !abs.isEmpty()) {
            for (String cand : new String[] {abs, abs.replace('\\', '/')}) {
                try {
                    Path c = Path.of(cand);
                    if (c.isAbsolute() && Files.isRegularFile(c)) {
                        return c;
                    }
                } catch (RuntimeException ignored) {
                    // not a path on this system
                }
            }
        }
        return null;
    }

    /**
     * Creates a new image and opens it read-write. Layout: header section, 1 MiB log at 1 MiB, 1 MiB
     * metadata region at 2 MiB, BAT at 3 MiB (rounded up to 1 MiB), payload blocks after it.
     */
    public static VhdxDisk create(Path path, VhdxCreateOptions o) throws IOException {
        VhdxImageWriter.create(path, o);
        try {
            return open(path, false);
        } catch (IOException | RuntimeException e) {
            // e.g. the parent chain is at its limit: the image we just wrote is useless, do not leave it behind
            try {
                java.nio.file.Files.deleteIfExists(path);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /**
     * Writes (and fsyncs) a new, empty differencing image at {@code child} whose parent is the open image
     * {@code parent}, without opening the parent again: a read-write parent keeps its exclusive flock.
     * The child is linked to the parent's current DataWriteGuid; if the parent's first write of its session
     * comes later, that guid changes and the child must be re-linked ({@link #setParent}) before it opens.
     */
    public static void createChildOf(Path child, VhdxDisk parent) throws IOException {
        VhdxImageWriter.create(child, new VhdxCreateOptions(0, DiskType.DIFFERENCING, 0, 0, 0, parent.path()), parent);
    }

    /**
     * Opens the differencing image {@code child} read-write on the running leaf {@code leaf} (its parent,
     * made by {@link #createChildOf}) without reopening the chain from files: what a checkpoint's switch does
     * inside its I/O pause. The leaf's write session ends as {@link #close} ends it (flushed, log emptied,
     * headers written), its flock drops from exclusive to shared, and a read-only view on the same fd and
     * metadata becomes the child's parent; {@code leaf} itself is closed and the view (with the leaf's own
     * parents) closes when the child does.
     * <pre>
     *   before:  LUN → leaf (rw, LOCK_EX) → parents (ro, LOCK_SH)
     *   after:   LUN → child (rw, LOCK_EX) → view of leaf (ro, LOCK_SH, same fd) → parents
     * </pre>
     * The caller must have stopped I/O on {@code leaf}. On failure {@code leaf} and its chain are closed
     * (exactly once) and the caller reopens the previous image from its file.
     */
    public static VhdxDisk openChildOn(Path child, VhdxDisk leaf) throws IOException {
        VhdxDisk view = leaf.demoteToParent();
        try {
            return open(child, false, 0, false, true, view);
        } catch (IOException | RuntimeException | Error e) {
            try {
                view.close();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** Ends this read-write open like {@link #close} but keeps the fd: see {@link #openChildOn}. */
    private VhdxDisk demoteToParent() throws IOException {
        if (readOnly || closed) {
            throw new IllegalStateException((closed ? "closed: " : "read-only: ") + path + "; only an open read-write image becomes a parent");
        }
        IOException failure = null;
        VhdxDisk view = null;
        try {
            endSession();
            if (!file.tryLock(false)) { // EX → SH: readers (a backup export, qemu-img) may open it from now on
                throw new IOException(path + ": could not lower its flock to shared");
            }
            commitLock.lock();
            try {
                view = new VhdxDisk(this);
            } finally {
                commitLock.unlock();
            }
        } catch (IOException e) {
            failure = e;
        } finally {
            closed = true;
            synchronized (mappedLock) {
                if (mappedFile != null) {
                    try {
                        mappedFile.close(); // the engine's rings keep their own reference; the view reads through file
                    } catch (IOException e) {
                        failure = failure == null ? e : failure;
                    }
                    mappedFile = null;
                }
            }
            if (failure != null) {
                try {
                    file.close();
                } catch (IOException e) {
                    failure.addSuppressed(e);
                }
                if (parent != null) {
                    try {
                        parent.close();
                    } catch (IOException e) {
                        failure.addSuppressed(e);
                    }
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
        return view;
    }

    // ---------------------------------------------------------------- VirtualDisk

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return logicalSectorSize;
    }

    @Override
    public int physicalSectorSize() {
        return p.physicalSectorSize;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public String format() {
        return "vhdx";
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        long len = dst.byteSize();
        checkRange(offset, len);
        readRange(offset, dst, 0, len);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        long len = src.byteSize();
        checkRange(offset, len);
        checkWritable();
        writeRange(offset, src, 0, len);
    }

    /** Reads {@code len} bytes at {@code offset} into {@code dst[dstOffset, +len)} without slicing. */
    public void read(long offset, MemorySegment dst, long dstOffset, long len) throws IOException {
        checkRange(offset, len);
        readRange(offset, dst, dstOffset, len);
    }

    /** Writes {@code src[srcOffset, +len)} at {@code offset} without slicing. */
    public void write(long offset, MemorySegment src, long srcOffset, long len) throws IOException {
        checkRange(offset, len);
        checkWritable();
        writeRange(offset, src, srcOffset, len);
    }

    // ---------------------------------------------------------------- MappedDisk

    @Override
    public long mapRead(long offset, long length) {
        if (overlay != null) {
            return -1; // reads must be patched with the log replayed in memory
        }
        return map(offset, length);
    }

    @Override
    public long mapWrite(long offset, long length) {
        if (readOnly) {
            return -1;
        }
        long at = map(offset, length);
        // A block the on-disk BAT maps needs the session first (new DataWriteGuid): write() starts it.
        return at >= 0 && at < sessionFloor && !sessionStarted ? -1 : at;
    }

    /** File offset of [offset, +length) when it lies in one block whose sectors are all in this file, else -1. */
    private long map(long offset, long length) {
        long mask = logicalSectorSize - 1L;
        if (offset < 0 || length <= 0 || ((offset | length) & mask) != 0 || offset > size - length || closed) {
            return -1;
        }
        long block = offset >>> blockShift;
        long inBlock = offset & blockMask;
        if (inBlock + length > blockSize) {
            return -1;
        }
        // Acquire: pairs with the release that publishes a new entry after its data is written.
        long e = (long) LONGS.getAcquire(bat, (int) payloadIndex(block, chunkRatio));
        int st = state(e);
        if (st == PAYLOAD_FULLY_PRESENT || (st == PAYLOAD_PARTIALLY_PRESENT && bitsAllSet(block, offset, length))) {
            return fileOffset(e) + inBlock;
        }
        return -1;
    }

    @Override
    public int mappedFd() throws IOException {
        synchronized (mappedLock) {
            if (closed) {
                return -1;
            }
            if (mappedFile == null) {
                mappedFile = PosixFile.openMapped(path, readOnly);
                mappedAlignment = mappedFile.direct() ? 512 : 1;
            }
            return mappedFile.fd();
        }
    }

    @Override
    public int mappedAlignment() {
        return mappedAlignment;
    }

    /** fdatasyncs done on the image file (tests: a flush with no metadata change still syncs). */
    long fileSyncs() {
        return file.syncCount();
    }

    private void checkRange(long offset, long len) {
        long mask = logicalSectorSize - 1L;
        if (offset < 0 || len < 0 || ((offset | len) & mask) != 0 || offset > size - len) {
            throw new IllegalArgumentException("range [" + offset + ", +" + len + ") not sector-aligned or beyond size " + size);
        }
        if (closed) {
            throw new IllegalStateException("closed: " + path);
        }
    }

    private void checkWritable() throws IOException {
        if (readOnly) {
            throw new IOException("read-only: " + path);
        }
    }

    /**
     * Starts the session before a write that changes bytes the on-disk BAT already maps (a block older
     * than this open). Writes into blocks allocated in this open, and metadata changes (committed by
     * {@link #flush()}, which starts the session itself), leave the session, and its header
     * fdatasync, to the first flush: a fresh image's first writes cost what a raw file's do.
     */
    private void sessionBeforeWriteAt(long blockFileOffset) throws IOException {
        if (blockFileOffset < sessionFloor && !sessionStarted) {
            startSession();
        }
    }

    void readRange(long off, MemorySegment dst, long dstOff, long len) throws IOException {
        while (len > 0) {
            long block = off >>> blockShift;
            long inBlock = off & blockMask;
            long n = Math.min(len, blockSize - inBlock);
            long e = (long) LONGS.getAcquire(bat, (int) payloadIndex(block, chunkRatio));
            switch (state(e)) {
                case PAYLOAD_FULLY_PRESENT -> readFile(fileOffset(e) + inBlock, dst, dstOff, n);
                case PAYLOAD_PARTIALLY_PRESENT -> readPartial(block, fileOffset(e), off, dst, dstOff, n);
                case PAYLOAD_ZERO, PAYLOAD_UNMAPPED -> zero(dst, dstOff, n);
                default -> {
                    if (parent != null) {
                        parent.readRange(off, dst, dstOff, n);
                    } else {
                        zero(dst, dstOff, n);
                    }
                }
            }
            off += n;
            dstOff += n;
            len -= n;
        }
    }

    private void readFile(long fileOff, MemorySegment dst, long dstOff, long n) throws IOException {
        long got = file.read(fileOff, dst, dstOff, n);
        if (got < n) {
            zero(dst, dstOff + got, n - got);
        }
        if (overlay != null) {
            overlay.patch(fileOff, dst, dstOff, n);
        }
    }

    /** PARTIALLY_PRESENT: runs of sectors whose bitmap bit is 1 come from this file, the rest from the parent. */
    private void readPartial(long block, long blockFileOff, long off, MemorySegment dst, long dstOff, long n) throws IOException {
        SectorBitmap bm = bitmap(block / chunkRatio, false);
        long sector = off >>> sectorShift;
        long sectors = n >>> sectorShift;
        long i = 0;
        while (i < sectors) {
            boolean present = bit(bm, sector + i);
            long j = i + 1;
            while (j < sectors && bit(bm, sector + j) == present) {
                j++;
            }
            long runOff = (sector + i) << sectorShift;
            long runLen = (j - i) << sectorShift;
            long runDst = dstOff + (i << sectorShift);
            if (present) {
                readFile(blockFileOff + (runOff & blockMask), dst, runDst, runLen);
            } else if (parent != null) {
                parent.readRange(runOff, dst, runDst, runLen);
            } else {
                zero(dst, runDst, runLen);
            }
            i = j;
        }
    }

    /** True when every sector of [off, off+n) is already marked present (no bitmap change needed). */
    private boolean bitsAllSet(long block, long off, long n) {
        SectorBitmap bm = bitmaps.get((int) (block / chunkRatio));
        if (bm == null) {
            return false;
        }
        long first = off >>> sectorShift;
        long count = n >>> sectorShift;
        for (long s = first; s < first + count; s++) {
            if (!bit(bm, s)) {
                return false;
            }
        }
        return true;
    }

    private static boolean bit(SectorBitmap bm, long diskSector) {
        int b = (int) (diskSector & ((1L << 23) - 1));
        return (((byte) BYTES.getAcquire(bm.bits, b >>> 3)) & (1 << (b & 7))) != 0;
    }

    private static void zero(MemorySegment dst, long dstOff, long n) {
        while (n > 0) {
            long c = Math.min(n, ZEROS.byteSize());
            MemorySegment.copy(ZEROS, 0, dst, dstOff, c);
            dstOff += c;
            n -= c;
        }
    }

    void writeRange(long off, MemorySegment src, long srcOff, long len) throws IOException {
        while (len > 0) {
            long block = off >>> blockShift;
            long inBlock = off & blockMask;
            long n = Math.min(len, blockSize - inBlock);
            long e = (long) LONGS.getAcquire(bat, (int) payloadIndex(block, chunkRatio));
            int st = state(e);
            if (st == PAYLOAD_FULLY_PRESENT || (st == PAYLOAD_PARTIALLY_PRESENT && bitsAllSet(block, off, n))) {
                sessionBeforeWriteAt(fileOffset(e));
                file.write(fileOffset(e) + inBlock, src, srcOff, n);
            } else {
                if (st == PAYLOAD_PARTIALLY_PRESENT) {
                    sessionBeforeWriteAt(fileOffset(e)); // outside the stripe lock: startSession takes commitLock
                }
                writeSlow(block, off, src, srcOff, n);
            }
            off += n;
            srcOff += n;
            len -= n;
        }
    }

    /** Allocation and PARTIALLY_PRESENT writes, under the block's stripe lock. */
    private void writeSlow(long block, long off, MemorySegment src, long srcOff, long n) throws IOException {
        int idx = (int) payloadIndex(block, chunkRatio);
        long inBlock = off & blockMask;
        synchronized (stripes[(int) (block & (LOCK_STRIPES - 1))]) {
            long e = (long) LONGS.getAcquire(bat, idx);
            int st = state(e);
            if (st == PAYLOAD_FULLY_PRESENT) {
                file.write(fileOffset(e) + inBlock, src, srcOff, n);
                return;
            }
            if (st == PAYLOAD_PARTIALLY_PRESENT) {
                file.write(fileOffset(e) + inBlock, src, srcOff, n);
                setBits(block, off, n);
                return;
            }
            boolean fromParent = parent != null && (st == PAYLOAD_NOT_PRESENT || st == PAYLOAD_UNDEFINED);
            boolean wholeBlock = inBlock == 0 && n == blockSize;
            long blockOff = allocate(blockSize);
            file.write(blockOff + inBlock, src, srcOff, n);
            if (fromParent && !wholeBlock) {
                setBits(block, off, n);
                LONGS.setRelease(bat, idx, entry(PAYLOAD_PARTIALLY_PRESENT, blockOff));
            } else {
                // No parent data to show through: the rest of the new block is already zero.
                LONGS.setRelease(bat, idx, entry(PAYLOAD_FULLY_PRESENT, blockOff));
            }
            batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
        }
    }

    /** Appends {@code bytes} (a multiple of 1 MiB) at the end of the file and makes the file cover them. */
    private long allocate(long bytes) throws IOException {
        long off = fileEnd.getAndAdd(bytes);
        if (!sessionStarted) {
            allocatedBeforeSession = true;
        }
        // Extend the file now so the BAT never points past EOF (qemu refuses such images). ftruncate, not a
        // byte written at the end: a sparse extension like a raw file's, with no data block to write back;
        // ahead by a quarter of the file (at least 4 allocations, at most 1 GiB) so most allocations make
        // no call at all. close() trims the unused sparse tail. Only ever grows, so a slower allocator of
        // a lower block cannot cut off a later one.
        long end = off + bytes;
        synchronized (extendedTo) {
            if (end > extendedTo[0]) {
                long ahead = Math.min(Math.max(4 * bytes, end >>> 2), 1L << 30);
                long target = roundUp(end + ahead, 1 << 20);
                file.truncate(target);
                extendedTo[0] = target;
            }
        }
        return off;
    }

    private void setBits(long block, long off, long n) throws IOException {
        SectorBitmap bm = bitmap(block / chunkRatio, true);
        long first = (off >>> sectorShift) & ((1L << 23) - 1);
        long count = n >>> sectorShift;
        for (long s = first; s < first + count; s++) {
            int byteIdx = (int) (s >>> 3);
            byte old = (byte) BYTES.getAcquire(bm.bits, byteIdx);
            byte nw = (byte) (old | (1 << (s & 7)));
            if (nw != old) {
                // Bits of one block live in bytes no other block uses, and the block's stripe lock is held.
                BYTES.setRelease(bm.bits, byteIdx, nw);
                bm.dirty.set(byteIdx >>> 12, 1);
            }
        }
    }

    /** The chunk's sector bitmap, loaded on first use (allocating its 1 MiB block when a write needs it). */
    private SectorBitmap bitmap(long chunk, boolean forWrite) throws IOException {
        SectorBitmap bm = bitmaps.get((int) chunk);
        if (bm != null && (!forWrite || state((long) LONGS.getAcquire(bat, (int) bitmapIndex(chunk, chunkRatio))) == SB_PRESENT)) {
            return bm;
        }
        synchronized (bitmaps) {
            int idx = (int) bitmapIndex(chunk, chunkRatio);
            long e = (long) LONGS.getAcquire(bat, idx);
            bm = bitmaps.get((int) chunk);
            if (bm != null) {
                if (forWrite && state(e) != SB_PRESENT) {
                    // Loaded by a read (all zero, in memory only); the first write gives it a block.
                    long off = allocate(SECTOR_BITMAP_BLOCK_LENGTH);
                    LONGS.setRelease(bat, idx, entry(SB_PRESENT, off));
                    batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
                }
                return bm;
            }
            bm = new SectorBitmap();
            if (state(e) == SB_PRESENT) {
                MemorySegment seg = MemorySegment.ofArray(bm.bits);
                readFile(fileOffset(e), seg, 0, SECTOR_BITMAP_BLOCK_LENGTH);
            } else if (forWrite) {
                long off = allocate(SECTOR_BITMAP_BLOCK_LENGTH);
                LONGS.setRelease(bat, idx, entry(SB_PRESENT, off));
                batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
            }
            bitmaps.set((int) chunk, bm);
            return bm;
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        release(offset, length, PAYLOAD_ZERO);
    }

    /** Whole blocks become UNMAPPED (their space is released); partial blocks are written with zeros. */
    @Override
    public void unmap(long offset, long length) throws IOException {
        release(offset, length, PAYLOAD_UNMAPPED);
    }

    private void release(long off, long len, int wholeBlockState) throws IOException {
        checkRange(off, len);
        checkWritable();
        while (len > 0) {
            long block = off >>> blockShift;
            long inBlock = off & blockMask;
            long n = Math.min(len, blockSize - inBlock);
            int idx = (int) payloadIndex(block, chunkRatio);
            if (inBlock == 0 && n == blockSize && !p.leaveBlocksAllocated) {
                synchronized (stripes[(int) (block & (LOCK_STRIPES - 1))]) {
                    long e = (long) LONGS.getAcquire(bat, idx);
                    if (state(e) != wholeBlockState || fileOffset(e) != 0) {
                        LONGS.setRelease(bat, idx, entry(wholeBlockState, 0));
                        batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
                    }
                }
            } else {
                long e = (long) LONGS.getAcquire(bat, idx);
                int st = state(e);
                boolean alreadyZero = st == PAYLOAD_ZERO || st == PAYLOAD_UNMAPPED
                    || (parent == null && (st == PAYLOAD_NOT_PRESENT || st == PAYLOAD_UNDEFINED));
                if (!alreadyZero) {
                    for (long o = 0; o < n; o += ZEROS.byteSize()) {
                        long c = Math.min(ZEROS.byteSize(), n - o);
                        writeRange(off + o, ZEROS, 0, c);
                    }
                }
            }
            off += n;
            len -= n;
        }
    }

    // ---------------------------------------------------------------- flush, log, headers

    /**
     * Makes every write that completed before this call durable: fdatasync of the data, then one log
     * entry per batch of dirty BAT/bitmap sectors (write, fdatasync, apply in place). See the class doc.
     */
    @Override
    public void flush() throws IOException {
        if (readOnly || closed) {
            return;
        }
        commitLock.lock();
        try {
            // Order matters: snapshot the dirty metadata first, then sync. Every block an entry in the
            // snapshot points to was extended and written before its entry was published, so this sync
            // makes it durable; a block allocated after the snapshot waits for the next flush.
            List<VhdxLog.Update> pages = collectDirty();
            long durableSize = file.size();
            int max = VhdxLog.maxPagesPerEntry(header.logLength());
            if (!sessionStarted && canStartSessionWithEntry(pages, durableSize, max)) {
                try {
                    startSessionWithEntry(pages, durableSize);
                } catch (IOException | RuntimeException e) {
                    remarkDirty(pages);
                    throw e;
                }
                return;
            }
            if (pages.isEmpty() || sessionStarted) {
                file.dataSync();
            }
            if (pages.isEmpty()) {
                return;
            }
            if (!sessionStarted) {
                startSession(); // its first header fdatasync also makes the data written so far durable
            }
            try {
                for (int i = 0; i < pages.size(); i += max) {
                    List<VhdxLog.Update> batch = pages.subList(i, Math.min(pages.size(), i + max));
                    if (i > 0) {
                        file.dataSync(); // the previous batch's in-place writes must be durable before its entry is superseded
                    }
                    commit(batch, durableSize);
                }
            } catch (IOException | RuntimeException e) {
                remarkDirty(pages); // nothing is lost: the next flush retries these sectors
                throw e;
            }
        } finally {
            commitLock.unlock();
        }
    }

    /** Some BAT sector waits for a flush (an unmap or write-zeroes before the session started). */
    private boolean anyDirty() {
        for (int i = 0; i < batDirty.length(); i++) {
            if (batDirty.get(i) != 0) {
                return true;
            }
        }
        return false;
    }

    private void remarkDirty(List<VhdxLog.Update> pages) {
        long batOff = p.bat.fileOffset();
        for (VhdxLog.Update u : pages) {
            long off = u.fileOffset();
            if (off >= batOff && off < batOff + (long) batDirty.length() * 4096) {
                batDirty.set((int) ((off - batOff) / 4096), 1);
                continue;
            }
            for (int c = 0; c < bitmaps.length(); c++) {
                SectorBitmap bm = bitmaps.get(c);
                long base = fileOffset((long) LONGS.getAcquire(bat, (int) bitmapIndex(c, chunkRatio)));
                if (bm != null && base != 0 && off >= base && off < base + SECTOR_BITMAP_BLOCK_LENGTH) {
                    bm.dirty.set((int) ((off - base) / 4096), 1);
                }
            }
        }
    }

    private List<VhdxLog.Update> collectDirty() {
        List<VhdxLog.Update> pages = new ArrayList<>();
        long batOff = p.bat.fileOffset();
        for (int s = 0; s < batDirty.length(); s++) {
            if (batDirty.get(s) != 0 && batDirty.getAndSet(s, 0) != 0) {
                byte[] page = new byte[4096];
                int first = s * BAT_ENTRIES_PER_SECTOR;
                int last = Math.min(bat.length, first + BAT_ENTRIES_PER_SECTOR);
                for (int i = first; i < last; i++) {
                    Le.put64(page, (i - first) * 8, (long) LONGS.getAcquire(bat, i));
                }
                pages.add(new VhdxLog.Update(batOff + (long) s * 4096, page, 0));
            }
        }
        for (int c = 0; c < bitmaps.length(); c++) {
            SectorBitmap bm = bitmaps.get(c);
            if (bm == null) {
                continue;
            }
            long e = (long) LONGS.getAcquire(bat, (int) bitmapIndex(c, chunkRatio));
            long base = fileOffset(e);
            for (int s = 0; s < bm.dirty.length(); s++) {
                if (bm.dirty.get(s) != 0 && bm.dirty.getAndSet(s, 0) != 0) {
                    byte[] page = new byte[4096];
                    for (int i = 0; i < 4096; i++) {
                        page[i] = (byte) BYTES.getAcquire(bm.bits, s * 4096 + i);
                    }
                    pages.add(new VhdxLog.Update(base + (long) s * 4096, page, 0));
                }
            }
        }
        return pages;
    }

    /**
     * The session's first commit may share one fdatasync with the session header when the image has no
     * parent and the entry holds only BAT sectors: then every block an entry maps but whose data did not
     * land before a crash reads zeros, which is what it read before (the write was never acknowledged),
     * and replay extends the file to LastFileOffset. With a parent, a lost block would hide the parent's
     * data, so differencing images keep the data fdatasync before the entry. The extension replay may make
     * is bounded ({@link VhdxLog#MAX_EXTENSION}); beyond it the two-fdatasync path is taken.
     */
    private boolean canStartSessionWithEntry(List<VhdxLog.Update> pages, long size, int max) {
        if (p.hasParent || pages.isEmpty() || pages.size() > max || size - openFileSize > VhdxLog.MAX_EXTENSION) {
            return false;
        }
        long batOff = p.bat.fileOffset();
        long batEnd = batOff + (long) batDirty.length() * 4096;
        for (VhdxLog.Update u : pages) {
            if (u.fileOffset() < batOff || u.fileOffset() >= batEnd) {
                return false;
            }
        }
        return true;
    }

    /**
     * Starts the session and commits {@code pages} with one fdatasync, raw's count for a first flush:
     * <pre>
     *   write header (non-current slot, sequence+1, new GUIDs and LogGuid)
     *   write log entry (FlushedFileOffset = size at open, LastFileOffset = size now)
     *   fdatasync          data, extension, header and entry durable together
     *   write header (other slot, sequence+2; durable with the next fdatasync)
     *   apply in place     (durable with the next flush's first fdatasync, as in commit)
     * </pre>
     * A crash before the fdatasync completes leaves any subset: the old header current (entry ignored,
     * new blocks unreferenced), or the new header with no valid entry (log empty), or both (replay maps
     * the new blocks; those whose data did not land read zeros). Under commitLock.
     */
    private void startSessionWithEntry(List<VhdxLog.Update> pages, long size) throws IOException {
        fileWriteGuid = UUID.randomUUID();
        dataWriteGuid = UUID.randomUUID();
        logGuid = UUID.randomUUID();
        logPosition = 0;
        logSequence = 0;
        writeHeaders(1, 0);
        writeEntry(pages, openFileSize, size);
        file.dataSync();
        sessionStarted = true; // volatile write: publishes the GUIDs to lock-free writers' fast check
        writeHeaders(1, 0);
        applyInPlace(pages);
    }

    /**
     * Writes one log entry for {@code batch}, syncs it, applies it in place (unsynced).
     * {@code durableSize}: a file size already made durable that covers every block the batch references
     * (FlushedFileOffset; replay refuses a file shorter than it).
     */
    private void commit(List<VhdxLog.Update> batch, long durableSize) throws IOException {
        writeEntry(batch, durableSize, durableSize);
        file.dataSync();
        applyInPlace(batch);
    }

    /** Writes the next log entry for {@code batch} at the log position (no sync). Under commitLock. */
    private void writeEntry(List<VhdxLog.Update> batch, long flushedFileOffset, long lastFileOffset) throws IOException {
        int n = batch.size();
        long entryLength = (LogDescriptor.descriptorSectors(n) + n) * LogDescriptor.SECTOR;
        if (logPosition + entryLength > header.logLength()) {
            logPosition = 0;
        }
        byte[] entry = VhdxLog.buildEntry(batch, ++logSequence, logGuid, logPosition, flushedFileOffset, lastFileOffset);
        file.write(header.logOffset() + logPosition, entry, 0, entry.length);
        logPosition += entryLength;
        if (logPosition >= header.logLength()) {
            logPosition = 0;
        }
    }

    private void applyInPlace(List<VhdxLog.Update> batch) throws IOException {
        for (VhdxLog.Update u : batch) {
            file.write(u.fileOffset(), u.page(), 0, u.page().length);
        }
    }

    /**
     * Starts this open's write session now if it has not started (new GUIDs, headers written and synced),
     * so that {@link #dataWriteGuid} stays the same for the rest of the open: a child made next from this
     * open image ({@link #createChildOf}) stays linked whatever is written later. For a leaf that no image
     * was made from yet (a running partition's disk before a checkpoint); a no-op when read-only.
     */
    public void startWriteSession() throws IOException {
        if (!readOnly && !sessionStarted) {
            startSession();
        }
    }

    /** First write of this session: new FileWriteGuid, DataWriteGuid and LogGuid, durable before any data. */
    private void startSession() throws IOException {
        startSession(true);
    }

    /**
     * Starts the write session. {@code newDataWriteGuid} false is for changes that leave every virtual
     * sector as it was (re-pointing the parent locator at the same parent): children made from this image
     * keep matching its DataWriteGuid (MS-VHDX 2.2.2: it changes on user-visible data changes only).
     */
    private void startSession(boolean newDataWriteGuid) throws IOException {
        commitLock.lock();
        try {
            if (sessionStarted) {
                return;
            }
            fileWriteGuid = UUID.randomUUID();
            if (newDataWriteGuid) {
                dataWriteGuid = UUID.randomUUID();
            }
            logGuid = UUID.randomUUID();
            logPosition = 0;
            logSequence = 0;
            // One fdatasync: the non-current slot gets sequence+1 and is current once durable (MS-VHDX
            // 2.2.2.1); a torn write leaves the older copy current, still the image as it was (no log entry
            // or in-place write precedes this sync). The other slot then gets sequence+2 without a sync of
            // its own: torn or lost, the copy just synced stays current; the flush's next fdatasync (the log
            // entry's) makes it durable, so both copies carry the session's LogGuid again.
            writeHeaders(2, 1);
            sessionStarted = true; // volatile write: publishes the GUIDs to lock-free writers' fast check
        } finally {
            commitLock.unlock();
        }
    }

    /** Writes the header state to both slots (non-current first), fdatasync after each. Under commitLock. */
    private void writeHeaders() throws IOException {
        writeHeaders(2, 2);
    }

    /**
     * Writes the header state to both slots, the non-current one first, with an fdatasync after each of the
     * first {@code synced} writes, so the newest durable valid copy is always a complete header. Under commitLock.
     */
    private void writeHeaders(int copies, int synced) throws IOException {
        for (int step = 0; step < copies; step++) {
            int slot = 1 - currentSlot;
            byte[] h = VhdxImageWriter.header(++headerSequence, fileWriteGuid, dataWriteGuid, logGuid,
                header.logLength(), header.logOffset());
            file.write(VhdxHeaderDescriptor.headerFileOffset(slot), h, 0, h.length);
            if (step < synced) {
                file.dataSync();
            }
            currentSlot = slot;
        }
    }

    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        IOException failure = null;
        try {
            if (!readOnly) {
                endSession();
            }
        } catch (IOException e) {
            failure = e;
        } finally {
            closed = true;
            synchronized (mappedLock) {
                if (mappedFile != null) {
                    try {
                        mappedFile.close(); // io_uring rings that registered the fd keep their own reference
                    } catch (IOException e) {
                        failure = failure == null ? e : failure;
                    }
                    mappedFile = null;
                }
            }
            try {
                file.close();
            } catch (IOException e) {
                if (failure == null) {
                    failure = e;
                }
            }
            if (parent != null) {
                try {
                    parent.close();
                } catch (IOException e) {
                    if (failure == null) {
                        failure = e;
                    }
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** Makes everything written durable and empties the log (a read-write open, before close or demotion). */
    private void endSession() throws IOException {
        if (!sessionStarted && (allocatedBeforeSession || anyDirty())) {
            flush(); // logs the blocks allocated before any flush; this starts the session
        }
        if (sessionStarted) {
            flush();
            commitLock.lock();
            try {
                file.dataSync(); // in-place metadata of the last commit is durable: the log can be emptied
                logGuid = Le.ZERO_GUID;
                writeHeaders();
                trimExtension();
            } finally {
                commitLock.unlock();
            }
        }
    }

    /**
     * Cuts the sparse tail {@link #allocate} extended ahead of the last block. Only once the log is empty
     * (an entry's FlushedFileOffset may name the longer size); not synced: a crash keeps the tail, as it
     * keeps blocks allocated and never flushed. Under commitLock.
     */
    private void trimExtension() throws IOException {
        synchronized (extendedTo) {
            long end = fileEnd.get();
            if (extendedTo[0] > end && file.size() > end) {
                file.truncate(end);
                extendedTo[0] = end;
            }
        }
    }

    // ---------------------------------------------------------------- offline operations

    /**
     * Changes the virtual size of a fixed or dynamic image (offline: takes the exclusive lock). Growing
     * extends the BAT in place when its region has room, else writes a larger BAT at the end of the file
     * and switches both region tables to it; fixed images get their new blocks allocated. Shrinking is
     * allowed only when no block past the new end is allocated (dynamic) and zeroes the cut-off tail of
     * the last block, so a later grow cannot resurface old data. Every metadata change goes through the log.
     *
     * @throws IllegalArgumentException for a bad size, a differencing image, or a shrink that would drop data
     */
    public static void resize(Path path, long newSize) throws IOException {
        try (VhdxDisk d = open(path, false)) {
            d.resizeTo(newSize);
        }
    }

    private void resizeTo(long newSize) throws IOException {
        if (p.hasParent) {
            throw new IllegalArgumentException("a differencing image has its parent's size; resize the chain's base");
        }
        if (newSize <= 0 || newSize > MetadataDescriptor.MAX_VIRTUAL_DISK_SIZE || newSize % logicalSectorSize != 0) {
            throw new IllegalArgumentException("size must be a positive multiple of " + logicalSectorSize + " up to 64 TiB: " + newSize);
        }
        if (newSize == size) {
            return;
        }
        long newBlocks = (newSize + blockSize - 1) / blockSize;
        long oldBlocks = p.dataBlocks;
        if (newSize < size) {
            if (p.leaveBlocksAllocated) {
                throw new IllegalArgumentException("shrinking a fixed image is not supported");
            }
            for (long b = newBlocks; b < oldBlocks; b++) {
                int st = state((long) LONGS.getAcquire(bat, (int) payloadIndex(b, chunkRatio)));
                if (st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT) {
                    throw new IllegalArgumentException("cannot shrink to " + newSize + ": block " + b + " beyond it holds data");
                }
            }
            requireZeroTailOfCutBlock(newSize);
        }
        checkWritable();
        commitLock.lock();
        try {
            flush();
            // Zero the part of the (new or old) last block that lies beyond the smaller size.
            long cut = Math.min(size, newSize);
            long lastBlock = cut / blockSize;
            if (cut % blockSize != 0 && lastBlock < oldBlocks) {
                long e = (long) LONGS.getAcquire(bat, (int) payloadIndex(lastBlock, chunkRatio));
                if (state(e) == PAYLOAD_FULLY_PRESENT) {
                    long from = cut % blockSize;
                    for (long o = from; o < blockSize; o += ZEROS.byteSize()) {
                        file.write(fileOffset(e) + o, ZEROS, 0, Math.min(ZEROS.byteSize(), blockSize - o));
                    }
                }
            }
            long oldTotal = bat.length;
            long newTotal = BatDescriptor.totalEntries(newBlocks, chunkRatio, false);
            long keep = Math.min(oldTotal, newTotal);
            long[] entries = new long[(int) newTotal];
            for (int i = 0; i < keep; i++) {
                entries[i] = (long) LONGS.getAcquire(bat, i);
            }
            if (p.leaveBlocksAllocated) {
                for (long b = oldBlocks; b < newBlocks; b++) {
                    entries[(int) payloadIndex(b, chunkRatio)] = entry(PAYLOAD_FULLY_PRESENT, allocate(blockSize));
                }
            }
            List<VhdxLog.Update> pages = new ArrayList<>();
            long batRegionOffset = p.bat.fileOffset();
            long batRegionLength = p.bat.length();
            long needed = newTotal * 8;
            // Entries past the new end (shrink) or past the old end (grow) must read as zero in the file.
            long clearTo = Math.max(oldTotal, newTotal) * 8;
            if (needed <= batRegionLength) {
                long firstPage = 0;
                long lastPage = (Math.min(clearTo, batRegionLength) + 4095) / 4096;
                long changedFrom = Math.min(oldTotal, newTotal) * 8 / 4096;
                firstPage = p.leaveBlocksAllocated ? changedFrom : Math.min(changedFrom, lastPage);
                for (long pg = firstPage; pg < lastPage; pg++) {
                    byte[] page = new byte[4096];
                    for (int k = 0; k < 512; k++) {
                        long i = pg * 512 + k;
                        if (i < newTotal) {
                            Le.put64(page, k * 8, entries[(int) i]);
                        }
                    }
                    pages.add(new VhdxLog.Update(batRegionOffset + pg * 4096, page, 0));
                }
            } else {
                // Relocate: write the new BAT into fresh space first (nothing references it yet) ...
                batRegionLength = roundUp(needed, 1 << 20);
                if (batRegionLength > 0xFFFF_FFFFL) {
                    throw new IllegalArgumentException("BAT for " + newSize + " bytes exceeds the region size limit");
                }
                batRegionOffset = allocate(batRegionLength);
                byte[] buf = new byte[1 << 20];
                for (long done = 0; done < needed; done += buf.length) {
                    int n = (int) Math.min(buf.length, needed - done);
                    java.util.Arrays.fill(buf, (byte) 0);
                    for (int k = 0; k < n; k += 8) {
                        Le.put64(buf, k, entries[(int) ((done + k) / 8)]);
                    }
                    file.write(batRegionOffset + done, buf, 0, n);
                }
                file.dataSync();
                // ... then switch both region tables to it through the log, together with the size.
                int len = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
                byte[] section = new byte[len];
                file.read(0, section, 0, len);
                for (int copy = 0; copy < 2; copy++) {
                    int base = (int) RegionTableDescriptor.tableFileOffset(copy);
                    long count = Le.u32(section, base + RegionTableDescriptor.ENTRY_COUNT_OFFSET);
                    for (int i = 0; i < count && i < RegionTableDescriptor.MAX_ENTRIES; i++) {
                        int e = base + RegionTableDescriptor.ENTRIES_OFFSET + i * RegionTableDescriptor.ENTRY_LENGTH;
                        if (Le.guid(section, e).equals(RegionTableDescriptor.BAT_REGION)) {
                            Le.put64(section, e + RegionTableDescriptor.ENTRY_FILE_OFFSET_OFFSET, batRegionOffset);
                            Le.put32(section, e + RegionTableDescriptor.ENTRY_LENGTH_OFFSET, (int) batRegionLength);
                        }
                    }
                    Le.put32(section, base + RegionTableDescriptor.CHECKSUM_OFFSET,
                        io.phost.vhdx.Crc32c.compute(section, base, RegionTableDescriptor.TABLE_LENGTH, RegionTableDescriptor.CHECKSUM_OFFSET));
                    for (int pg = 0; pg < RegionTableDescriptor.TABLE_LENGTH / 4096; pg++) {
                        pages.add(new VhdxLog.Update(base + pg * 4096L,
                            java.util.Arrays.copyOfRange(section, base + pg * 4096, base + pg * 4096 + 4096), 0));
                    }
                }
            }
            pages.add(metadataPage(MetadataDescriptor.VIRTUAL_DISK_SIZE, 0, newSize));
            commitAll(pages);
        } finally {
            commitLock.unlock();
        }
    }

    /**
     * A shrink to {@code newSize} inside a block drops that block's tail: refuse unless every sector of
     * [newSize, min(size, end of the block)) reads zero (sector granularity; blocks wholly past the new end
     * are checked through the BAT by the caller).
     */
    private void requireZeroTailOfCutBlock(long newSize) throws IOException {
        long blockEnd = Math.min(size, (newSize + blockSize - 1) / blockSize * blockSize);
        if (blockEnd <= newSize) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.min(ZEROS.byteSize(), blockEnd - newSize), 4096);
            for (long o = newSize; o < blockEnd; o += buf.byteSize()) {
                long n = Math.min(buf.byteSize(), blockEnd - o);
                readRange(o, buf, 0, n);
                long at = MemorySegment.mismatch(buf, 0, n, ZEROS, 0, n);
                if (at >= 0) {
                    long sector = (o + at) / logicalSectorSize * logicalSectorSize;
                    throw new IllegalArgumentException("cannot shrink to " + newSize + ": the sector at virtual offset "
                        + sector + " beyond it holds data");
                }
            }
        }
    }

    /**
     * Gives a freshly built image (compact's rebuild) the identity of the image it replaces: its
     * VirtualDiskId (page 83 data) and DataWriteGuid, so children made from the old image stay linked to
     * the new one, as an in-place Optimize-VHD keeps them. Valid only when the new image reads exactly like
     * the old one; the caller guarantees that. The id goes through the log like every metadata change.
     */
    public static void adoptIdentity(Path path, UUID virtualDiskId, UUID dataWriteGuid) throws IOException {
        try (VhdxDisk d = open(path, false)) {
            d.adopt(virtualDiskId, dataWriteGuid);
        }
    }

    /**
     * Set-VHD {@code -PhysicalSectorSizeBytes}: rewrites the physical sector size item (512 or 4096, not
     * below the logical size) through the log. Only what the guest is told changes: the DataWriteGuid stays,
     * so children stay linked.
     */
    public static void setPhysicalSectorSize(Path path, int bytes) throws IOException {
        try (VhdxDisk d = open(path, false)) {
            if (bytes != 512 && bytes != 4096 || bytes < d.logicalSectorSize) {
                throw new IllegalArgumentException("physical sector size must be 512 or 4096 and not below the logical "
                    + d.logicalSectorSize + ": " + bytes);
            }
            if (bytes == d.p.physicalSectorSize) {
                return;
            }
            d.commitLock.lock();
            try {
                d.startSession(false);
                long at = d.metadataItemFileOffset(MetadataDescriptor.PHYSICAL_SECTOR_SIZE);
                long pageOff = at & ~4095L;
                if (at + 4 > pageOff + 4096) {
                    throw new VhdxFormatException(Reason.OUT_OF_BOUNDS, at, "physical sector size item crosses a page");
                }
                byte[] page = new byte[4096];
                d.file.read(pageOff, page, 0, 4096);
                Le.put32(page, (int) (at - pageOff), bytes);
                d.commitAll(List.of(new VhdxLog.Update(pageOff, page, 0)));
            } finally {
                d.commitLock.unlock();
            }
        }
    }

    private void adopt(UUID virtualDiskId, UUID newDataWriteGuid) throws IOException {
        commitLock.lock();
        try {
            if (sessionStarted) {
                throw new IllegalStateException("adopt an identity before any write: " + path);
            }
            dataWriteGuid = newDataWriteGuid;
            startSession(false);
            long at = metadataItemFileOffset(MetadataDescriptor.VIRTUAL_DISK_ID);
            long pageOff = at & ~4095L;
            if (at + 16 > pageOff + 4096) {
                throw new VhdxFormatException(Reason.OUT_OF_BOUNDS, at, "virtual disk id crosses a page");
            }
            byte[] page = new byte[4096];
            file.read(pageOff, page, 0, 4096);
            Le.putGuid(page, (int) (at - pageOff), virtualDiskId);
            commitAll(List.of(new VhdxLog.Update(pageOff, page, 0)));
        } finally {
            commitLock.unlock();
        }
    }

    /** The 4 KiB page holding {@code item}'s u64 at {@code itemOffset}, with the new value. */
    private VhdxLog.Update metadataPage(java.util.UUID item, int itemOffset, long value) throws IOException {
        long at = metadataItemFileOffset(item) + itemOffset;
        long pageOff = at & ~4095L;
        byte[] page = new byte[4096];
        file.read(pageOff, page, 0, 4096);
        Le.put64(page, (int) (at - pageOff), value);
        return new VhdxLog.Update(pageOff, page, 0);
    }

    private long metadataItemFileOffset(java.util.UUID item) throws IOException {
        byte[] table = new byte[MetadataDescriptor.TABLE_LENGTH];
        file.read(p.metadata.fileOffset(), table, 0, table.length);
        int count = Le.u16(table, MetadataDescriptor.ENTRY_COUNT_OFFSET);
        for (int i = 0; i < count; i++) {
            int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
            if (Le.guid(table, e).equals(item)) {
                return p.metadata.fileOffset() + Le.u32(table, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
            }
        }
        throw new VhdxFormatException(Reason.MISSING_STRUCTURE, p.metadata.fileOffset(), "metadata item " + item);
    }

    /** Commits pages through the log in as many entries as needed, in order. Under commitLock. */
    private void commitAll(List<VhdxLog.Update> pages) throws IOException {
        if (!sessionStarted) {
            startSession();
        }
        long durableSize = file.size();
        file.dataSync();
        int max = VhdxLog.maxPagesPerEntry(header.logLength());
        for (int i = 0; i < pages.size(); i += max) {
            if (i > 0) {
                file.dataSync();
            }
            commit(pages.subList(i, Math.min(pages.size(), i + max)), durableSize);
        }
        file.dataSync();
    }

    /**
     * Points a differencing image at a new parent path (offline). The new parent's DataWriteGuid must
     * match the child's parent_linkage (the same parent, moved or renamed) unless {@code ignoreIdMismatch},
     * in which case the linkage is rewritten to the new parent (as Hyper-V's Set-VHD -IgnoreIdMismatch).
     * Size and logical sector size must match either way. The locator is rewritten through the log.
     */
    public static void setParent(Path child, Path newParent, boolean ignoreIdMismatch) throws IOException {
        setParent(child, newParent, ignoreIdMismatch, false);
    }

    /**
     * As {@link #setParent(Path, Path, boolean)}; {@code dataUnchanged} says the child reads the same through
     * the new parent even though its linkage differs (a parent that a merge of this child just wrote), so the
     * child keeps its DataWriteGuid and its own children stay linked.
     */
    public static void setParent(Path child, Path newParent, boolean ignoreIdMismatch, boolean dataUnchanged)
        throws IOException {
        try (VhdxDisk d = open(child, false, 0, true);
             VhdxDisk parent = open(newParent, true)) {
            d.reparent(parent, ignoreIdMismatch, dataUnchanged);
        }
    }

    private void reparent(VhdxDisk parent, boolean ignoreIdMismatch, boolean dataUnchanged) throws IOException {
        long locAt = p.metadata.fileOffset();
        if (!p.hasParent) {
            throw new IllegalArgumentException(path + " is not a differencing image");
        }
        java.util.UUID linkage = Le.parseBraced(p.parentLocator.get("parent_linkage"));
        String l2 = p.parentLocator.get("parent_linkage2");
        java.util.UUID linkage2 = l2 == null ? null : Le.parseBraced(l2);
        java.util.UUID actual = parent.dataWriteGuid();
        if (!ignoreIdMismatch && !actual.equals(linkage) && !actual.equals(linkage2)) {
            throw new VhdxFormatException(Reason.PARENT_LINKAGE_MISMATCH, locAt, "new parent " + parent.path()
                + " has DataWriteGuid " + Le.braced(actual) + " but the child expects " + p.parentLocator.get("parent_linkage"));
        }
        if (parent.size() != size || parent.logicalSectorSize() != logicalSectorSize) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "new parent's size or sector size differs");
        }
        Map<String, String> kv = VhdxImageWriter.locator(path, parent.path(), actual);
        byte[] loc = VhdxImageWriter.locatorBytes(kv);
        if (readOnly) {
            throw new IOException("read-only: " + path);
        }
        // The same parent (linkage matches) means the same data: keep the DataWriteGuid so this image's own
        // children stay linked. A forced switch to another parent changes what the sectors read: new guid.
        boolean sameData = dataUnchanged || actual.equals(linkage) || actual.equals(linkage2);
        commitLock.lock();
        try {
            startSession(!sameData);
            flush();
            byte[] region = new byte[(int) Math.min(p.metadata.length(), 1 << 20)];
            file.read(p.metadata.fileOffset(), region, 0, region.length);
            int count = Le.u16(region, MetadataDescriptor.ENTRY_COUNT_OFFSET);
            int entry = -1;
            long end = MetadataDescriptor.TABLE_LENGTH;
            for (int i = 0; i < count; i++) {
                int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
                long off = Le.u32(region, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
                long len = Le.u32(region, e + MetadataDescriptor.ENTRY_LENGTH_OFFSET);
                end = Math.max(end, off + len);
                if (Le.guid(region, e).equals(MetadataDescriptor.PARENT_LOCATOR)) {
                    entry = e;
                }
            }
            if (entry < 0) {
                throw new VhdxFormatException(Reason.MISSING_STRUCTURE, locAt, "no parent locator item");
            }
            long oldOff = Le.u32(region, entry + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
            long oldLen = Le.u32(region, entry + MetadataDescriptor.ENTRY_LENGTH_OFFSET);
            long newOff = loc.length <= oldLen ? oldOff : roundUp(end, 8);
            if (newOff + loc.length > region.length) {
                throw new VhdxFormatException(Reason.OUT_OF_BOUNDS, locAt, "no room in the metadata region for the new locator");
            }
            System.arraycopy(loc, 0, region, (int) newOff, loc.length);
            Le.put32(region, entry + MetadataDescriptor.ENTRY_OFFSET_OFFSET, (int) newOff);
            Le.put32(region, entry + MetadataDescriptor.ENTRY_LENGTH_OFFSET, loc.length);
            List<VhdxLog.Update> pages = new ArrayList<>();
            long tablePage = entry / 4096;
            pages.add(new VhdxLog.Update(p.metadata.fileOffset() + tablePage * 4096,
                java.util.Arrays.copyOfRange(region, (int) tablePage * 4096, (int) tablePage * 4096 + 4096), 0));
            for (long pg = newOff / 4096; pg * 4096 < newOff + loc.length; pg++) {
                pages.add(new VhdxLog.Update(p.metadata.fileOffset() + pg * 4096,
                    java.util.Arrays.copyOfRange(region, (int) pg * 4096, (int) pg * 4096 + 4096), 0));
            }
            commitAll(pages);
        } finally {
            commitLock.unlock();
        }
    }

    // ---------------------------------------------------------------- information

    public Path path() {
        return path;
    }

    public int blockSize() {
        return blockSize;
    }

    public int chunkRatio() {
        return chunkRatio;
    }

    public DiskType type() {
        return p.hasParent ? DiskType.DIFFERENCING : p.leaveBlocksAllocated ? DiskType.FIXED : DiskType.DYNAMIC;
    }

    public boolean leaveBlocksAllocated() {
        return p.leaveBlocksAllocated;
    }

    public UUID virtualDiskId() {
        return p.virtualDiskId;
    }

    public UUID dataWriteGuid() {
        commitLock.lock();
        try {
            return dataWriteGuid;
        } finally {
            commitLock.unlock();
        }
    }

    public UUID fileWriteGuid() {
        commitLock.lock();
        try {
            return fileWriteGuid;
        } finally {
            commitLock.unlock();
        }
    }

    public LogState logState() {
        return logState;
    }

    /** The parent image when differencing, else null. */
    public VhdxDisk parent() {
        return parent;
    }

    /** Ancestors, nearest first; empty unless differencing. */
    public List<ParentInfo> parentChain() {
        List<ParentInfo> out = new ArrayList<>();
        VhdxDisk child = this;
        VhdxDisk d = parent;
        while (d != null) {
            out.add(new ParentInfo(d.path, d.dataWriteGuid(), child.p.parentLocator.get("parent_linkage"), d.type()));
            child = d;
            d = d.parent;
        }
        return Collections.unmodifiableList(out);
    }

    /** The parent locator's key/value pairs (empty unless differencing). */
    public Map<String, String> parentLocator() {
        return p.parentLocator == null ? Map.of() : Collections.unmodifiableMap(p.parentLocator);
    }

    public long blockCount() {
        return p.dataBlocks;
    }

    public BlockState blockState(long block) {
        Objects.checkIndex(block, p.dataBlocks);
        return BlockState.of(state((long) LONGS.getAcquire(bat, (int) payloadIndex(block, chunkRatio))));
    }

    /** File offset of a FULLY/PARTIALLY_PRESENT block's payload, else 0. */
    public long blockFileOffset(long block) {
        Objects.checkIndex(block, p.dataBlocks);
        return fileOffset((long) LONGS.getAcquire(bat, (int) payloadIndex(block, chunkRatio)));
    }

    /** Bytes of payload (and sector bitmap) blocks this file holds. */
    public long allocatedBytes() {
        long n = 0;
        for (int i = 0; i < bat.length; i++) {
            long e = (long) LONGS.getAcquire(bat, i);
            boolean isBitmap = (i % (chunkRatio + 1)) == chunkRatio;
            int st = state(e);
            if (isBitmap) {
                n += st == SB_PRESENT && p.hasParent ? SECTOR_BITMAP_BLOCK_LENGTH : 0;
            } else if (st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT) {
                n += blockSize;
            }
        }
        return n;
    }

    public long fileSize() throws IOException {
        return file.size();
    }

    @Override
    public String toString() {
        return "VhdxDisk[" + path + ", " + type() + ", size=" + size + ", block=" + blockSize + ", sector="
            + logicalSectorSize + "/" + p.physicalSectorSize + "]";
    }

    // ---------------------------------------------------------------- for VhdxCheck

    long logOffset() {
        return header.logOffset();
    }

    int replayedEntries() {
        return p.logPlan == null ? 0 : p.logPlan.entries();
    }

    List<VhdxParser.Region> regions() {
        return p.regions;
    }

    long batOffset() {
        return p.bat.fileOffset();
    }

    long[] batSnapshot() {
        long[] copy = new long[bat.length];
        for (int i = 0; i < bat.length; i++) {
            copy[i] = (long) LONGS.getAcquire(bat, i);
        }
        return copy;
    }

    /**
     * The file ranges {@code [start, end)} the image uses, unsorted: the header section, the log, every region
     * (BAT, metadata, any other), and every payload and sector-bitmap block the BAT maps as present. Anything
     * else in the file (space of blocks unmapped or zeroed, blocks a crash left unreferenced, the tail)
     * holds nothing a reader sees: retrim punches it.
     */
    public List<long[]> fileRangesInUse() {
        List<long[]> used = new ArrayList<>();
        used.add(new long[] {0, VhdxHeaderDescriptor.HEADER_SECTION_LENGTH});
        used.add(new long[] {header.logOffset(), header.logOffset() + header.logLength()});
        for (VhdxParser.Region r : p.regions) {
            used.add(new long[] {r.fileOffset(), r.fileOffset() + r.length()});
        }
        for (int i = 0; i < bat.length; i++) {
            long e = (long) LONGS.getAcquire(bat, i);
            boolean bitmapEntry = i % (chunkRatio + 1) == chunkRatio;
            int st = state(e);
            if (bitmapEntry ? st == SB_PRESENT : st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT) {
                long len = bitmapEntry ? SECTOR_BITMAP_BLOCK_LENGTH : blockSize;
                used.add(new long[] {fileOffset(e), fileOffset(e) + len, bitmapEntry ? 0 : 1});
            }
        }
        return used;
    }

    /**
     * For an in-place compact: starts the session without a new DataWriteGuid (compaction changes no
     * virtual sector, so children stay linked), so later flushes commit through the log under it.
     */
    public void startLayoutSession() throws IOException {
        checkWritable();
        startSession(false);
    }

    /**
     * Copies present block {@code block} to {@code to} (1 MiB aligned, inside the file, used by nothing:
     * the caller's free space) and points the in-memory BAT there; the next {@link #flush()} makes the
     * copy durable and then logs the entry, so a crash leaves the block at either place with the same data.
     * The target is punched first (stale bytes of a block released earlier) and only the source's data
     * ranges are copied, so holes stay holes. The caller must not reuse the old place before that flush.
     * Offline only: no I/O may run on the block meanwhile.
     */
    public void moveBlock(long block, long to) throws IOException {
        checkWritable();
        if (!sessionStarted) {
            startSession(false);
        }
        int idx = (int) payloadIndex(block, chunkRatio);
        long e = (long) LONGS.getAcquire(bat, idx);
        int st = state(e);
        if ((st != PAYLOAD_FULLY_PRESENT && st != PAYLOAD_PARTIALLY_PRESENT) || (to & ((1 << 20) - 1)) != 0
            || to < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH || to + blockSize > file.size()) {
            throw new IllegalArgumentException("cannot move block " + block + " (state " + st + ") to " + to);
        }
        long from = fileOffset(e);
        file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, to, blockSize);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(1 << 20, 4096);
            for (long o = 0; o < blockSize; ) {
                long data = file.seekData(from + o);
                if (data < 0 || data >= from + blockSize) {
                    break;
                }
                o = (data - from) & -4096L;
                long n = Math.min(buf.byteSize(), blockSize - o);
                long got = file.read(from + o, buf, 0, n);
                file.write(to + o, buf, 0, got);
                o += n;
            }
        }
        LONGS.setRelease(bat, idx, entry(st, to));
        batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
    }

    /**
     * After an in-place compact: the file is cut after the last structure or present block when the image
     * is closed, once its log is empty (as {@link #trimExtension} does for the room allocated ahead).
     */
    public void cutAfterLastUsedOnClose() throws IOException {
        long end = 0;
        for (long[] r : fileRangesInUse()) {
            end = Math.max(end, r[1]);
        }
        fileEnd.set(roundUp(end, 1 << 20));
        synchronized (extendedTo) {
            extendedTo[0] = Math.max(extendedTo[0], file.size());
        }
    }

    /** End of the last region or of the log, whichever is further. */
    long metadataEnd() {
        long end = header.logOffset() + header.logLength();
        for (VhdxParser.Region r : p.regions) {
            end = Math.max(end, r.fileOffset() + r.length());
        }
        return end;
    }

    /** Rewrites both header copies (new FileWriteGuid: this is a write to the file). */
    void rewriteHeaders() throws IOException {
        commitLock.lock();
        try {
            fileWriteGuid = UUID.randomUUID();
            writeHeaders();
        } finally {
            commitLock.unlock();
        }
    }

    /** Copies the valid region table over a damaged copy. */
    void rewriteRegionTables() throws IOException {
        commitLock.lock();
        try {
            int len = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
            byte[] section = new byte[len];
            file.read(0, section, 0, len);
            int good = -1;
            for (int copy = 0; copy < 2 && good < 0; copy++) {
                try {
                    VhdxParser.parseRegionTable(section, copy, file.size(), header);
                    good = copy;
                } catch (VhdxFormatException e) {
                    // try the other copy
                }
            }
            if (good < 0) {
                return;
            }
            if (!sessionStarted) {
                fileWriteGuid = UUID.randomUUID();
                writeHeaders();
            }
            int from = (int) RegionTableDescriptor.tableFileOffset(good);
            file.write(RegionTableDescriptor.tableFileOffset(1 - good), section, from, RegionTableDescriptor.TABLE_LENGTH);
            file.dataSync();
        } finally {
            commitLock.unlock();
        }
    }

    static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

}
