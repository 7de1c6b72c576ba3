package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import io.phost.core.sys.PosixFile;

import static io.phost.vhdx.vhdx.BatDescriptor.*;

import io.phost.vhdx.MappedDisk;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VirtualDisk;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
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
 * <p>This class holds an open image's state and its public API; the work is done by package-private
 * collaborators that share that state: {@link VhdxOpen} (open, log replay, parent chain),
 * {@link VhdxDataPath} (reads, writes, allocation), {@link VhdxLogWriter} (session headers, log entries,
 * flush; its comment has the flush order and the GUID rules) and {@link VhdxMaintenance} (resize,
 * re-parent, repair, a child opened on a running leaf). It stays above 600 lines because it is the format's
 * whole public surface (about 50 methods callers across the modules use) plus the fields its collaborators
 * share.
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
 * BAT and sector-bitmap changes are committed by {@link #flush()} through the log (see {@link VhdxLogWriter}):
 * after it returns, every write that completed before it is durable, and so is the metadata that maps it.
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
    static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    static final VarHandle BYTES = MethodHandles.arrayElementVarHandle(byte[].class);
    static final int LOCK_STRIPES = 256;
    static final int BAT_ENTRIES_PER_SECTOR = 4096 / 8;
    static final MemorySegment ZEROS = Arena.global().allocate(1 << 20, 4096);

    // The open image's state, package-private for the collaborators that work on it (see the class comment).
    final Path path;
    final PosixFile file;
    final boolean readOnly;
    final VhdxParser.Parsed p;
    final long size;
    final int blockSize;
    final int blockShift;
    final long blockMask;
    final int chunkRatio;
    final int logicalSectorSize;
    final int sectorShift;
    final long[] bat;
    final AtomicIntegerArray batDirty;
    final AtomicReferenceArray<SectorBitmap> bitmaps;
    final Object[] stripes = new Object[LOCK_STRIPES];
    final ReentrantLock commitLock = new ReentrantLock();
    final AtomicLong fileEnd;
    final Overlay overlay;
    final VhdxDisk parent;
    final LogState logState;

    // Header state, guarded by commitLock.
    VhdxParser.Header header;
    UUID fileWriteGuid;
    UUID dataWriteGuid;
    UUID logGuid;
    long headerSequence;
    int currentSlot;
    long logPosition;
    long logSequence;
    /** Set once the session's header (new GUIDs, LogGuid) is durable; written once under commitLock. */
    volatile boolean sessionStarted;
    /**
     * End of the file at open: every block at or past it was allocated in this open and is reachable from
     * the on-disk BAT only after the flush that logs it (which starts the session first). Writes into such
     * blocks therefore need no session yet; writes into older blocks do.
     */
    final long sessionFloor;
    /** File size at open: durable as far as this open knows (FlushedFileOffset of a session's first entry). */
    final long openFileSize;
    /** How far {@link VhdxDataPath#allocate} has extended the file with ftruncate; guarded by itself (grows only). */
    final long[] extendedTo = new long[1];
    /** A block was allocated before the session started: close must flush so it is logged. */
    volatile boolean allocatedBeforeSession;
    volatile boolean closed;
    /** The fd for mapped I/O, opened by the first {@link #mappedFd()}; guarded by mappedLock. */
    final Object mappedLock = new Object();
    PosixFile mappedFile;
    volatile int mappedAlignment = 1;

    final VhdxDataPath data = new VhdxDataPath(this);
    final VhdxLogWriter writer = new VhdxLogWriter(this);
    final VhdxMaintenance maintenance = new VhdxMaintenance(this);

    /** One chunk's 1 MiB sector bitmap, loaded lazily; dirty flags per 4 KiB sector of it. */
    static final class SectorBitmap {
        final byte[] bits = new byte[SECTOR_BITMAP_BLOCK_LENGTH];
        final AtomicIntegerArray dirty = new AtomicIntegerArray(SECTOR_BITMAP_BLOCK_LENGTH / 4096);
    }

    VhdxDisk(Path path, PosixFile file, boolean readOnly, VhdxParser.Parsed p, Overlay overlay,
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
     * The read-only view {@link VhdxMaintenance#demoteToParent} hands a child: the same fd, parsed metadata, BAT and loaded
     * sector bitmaps (all durable by then), and the header state as the last commit left it.
     */
    VhdxDisk(VhdxDisk rw) {
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
        return VhdxOpen.open(path, readOnly, 0);
    }

    /**
     * Opens an image read-only without opening its parent (for {@code info} on a child whose parent is
     * missing or does not match): sectors the child does not store read as zeros, so this is not a view of
     * the virtual disk; it is a view of this file's own metadata and blocks.
     */
    public static VhdxDisk openDetached(Path path) throws IOException {
        return VhdxOpen.open(path, true, 0, true);
    }

    /**
     * Opens read-write while this process's own readers may hold the image open read-only (an online merge
     * writing a parent that a running chain reads through its child): takes a shared flock instead of the
     * exclusive one. Only for a writer whose every write is shadowed, in those readers' chains, by a child
     * that stores the same range: they never read what it writes, and their cached metadata stays valid for
     * what they do read. Another process still cannot open it read-write.
     */
    public static VhdxDisk openBesideReaders(Path path) throws IOException {
        return VhdxOpen.open(path, false, 0, false, false);
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
        VhdxDisk view = leaf.maintenance.demoteToParent();
        try {
            return VhdxOpen.open(child, false, 0, false, true, view);
        } catch (IOException | RuntimeException | Error e) {
            try {
                view.close();
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /**
     * Opens differencing image {@code child} read-only, reading through {@code parent}, which is already open
     * (read-write for a merge writing the child's view into it); the linkage is checked against
     * {@code parent}'s DataWriteGuid unless {@code linkageVouched} (a merge resumed from its journal: the
     * parent's new DataWriteGuid came from writing what the child reads anyway). Closing the child closes
     * {@code parent}.
     */
    public static VhdxDisk openChildReadingThrough(Path child, VhdxDisk parent, boolean linkageVouched)
        throws IOException {
        return VhdxOpen.open(child, true, 0, false, false, parent, linkageVouched);
    }

    /** Ends this read-write open like {@link #close} but keeps the fd: see {@link #openChildOn}. */

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
        data.readRange(offset, dst, 0, len);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        long len = src.byteSize();
        checkRange(offset, len);
        checkWritable();
        data.writeRange(offset, src, 0, len);
    }

    /** Reads {@code len} bytes at {@code offset} into {@code dst[dstOffset, +len)} without slicing. */
    public void read(long offset, MemorySegment dst, long dstOffset, long len) throws IOException {
        checkRange(offset, len);
        data.readRange(offset, dst, dstOffset, len);
    }

    /** Writes {@code src[srcOffset, +len)} at {@code offset} without slicing. */
    public void write(long offset, MemorySegment src, long srcOffset, long len) throws IOException {
        checkRange(offset, len);
        checkWritable();
        data.writeRange(offset, src, srcOffset, len);
    }

    // ---------------------------------------------------------------- MappedDisk

    @Override
    public long mapRead(long offset, long length) {
        if (overlay != null) {
            return -1; // reads must be patched with the log replayed in memory
        }
        return data.map(offset, length);
    }

    @Override
    public long mapWrite(long offset, long length) {
        if (readOnly) {
            return -1;
        }
        long at = data.map(offset, length);
        // A block the on-disk BAT maps needs the session first (new DataWriteGuid): write() starts it.
        return at >= 0 && at < sessionFloor && !sessionStarted ? -1 : at;
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

    void checkRange(long offset, long len) {
        long mask = logicalSectorSize - 1L;
        if (offset < 0 || len < 0 || ((offset | len) & mask) != 0 || offset > size - len) {
            throw new IllegalArgumentException("range [" + offset + ", +" + len + ") not sector-aligned or beyond size " + size);
        }
        if (closed) {
            throw new IllegalStateException("closed: " + path);
        }
    }

    void checkWritable() throws IOException {
        if (readOnly) {
            throw new IOException("read-only: " + path);
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        data.release(offset, length, PAYLOAD_ZERO);
    }

    /** Whole blocks become UNMAPPED (their space is released); partial blocks are written with zeros. */
    @Override
    public void unmap(long offset, long length) throws IOException {
        data.release(offset, length, PAYLOAD_UNMAPPED);
    }

    // ---------------------------------------------------------------- flush, log, headers

    /**
     * Makes every write that completed before this call durable: fdatasync of the data, then one log
     * entry per batch of dirty BAT/bitmap sectors (write, fdatasync, apply in place). See the class doc.
     */
    @Override
    public void flush() throws IOException {
        writer.flush();
    }

    /**
     * Starts this open's write session now if it has not started (new GUIDs, headers written and synced),
     * so that {@link #dataWriteGuid} stays the same for the rest of the open: a child made next from this
     * open image ({@link #createChildOf}) stays linked whatever is written later. For a leaf that no image
     * was made from yet (a running partition's disk before a checkpoint); a no-op when read-only.
     */
    public void startWriteSession() throws IOException {
        if (!readOnly && !sessionStarted) {
            writer.startSession();
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
                writer.endSession();
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
            d.maintenance.resizeTo(newSize);
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
            d.maintenance.adopt(virtualDiskId, dataWriteGuid);
        }
    }

    /**
     * Set-VHD {@code -PhysicalSectorSizeBytes}: rewrites the physical sector size item (512 or 4096, not
     * below the logical size) through the log. Only what the guest is told changes: the DataWriteGuid stays,
     * so children stay linked.
     */
    public static void setPhysicalSectorSize(Path path, int bytes) throws IOException {
        try (VhdxDisk d = open(path, false)) {
            d.maintenance.setPhysicalSectorSize(bytes);
        }
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
        try (VhdxDisk d = VhdxOpen.open(child, false, 0, true);
             VhdxDisk parent = open(newParent, true)) {
            d.maintenance.reparent(parent, ignoreIdMismatch, dataUnchanged);
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
        writer.startSession(false);
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
        maintenance.moveBlock(block, to);
    }

    /**
     * After an in-place compact: the file is cut after the last structure or present block when the image
     * is closed, once its log is empty (as {@link VhdxLogWriter#trimExtension} does for the room allocated ahead).
     */
    public void cutAfterLastUsedOnClose() throws IOException {
        maintenance.cutAfterLastUsedOnClose();
    }

    /** End of the last region or of the log, whichever is further. */
    long metadataEnd() {
        long end = header.logOffset() + header.logLength();
        for (VhdxParser.Region r : p.regions) {
            end = Math.max(end, r.fileOffset() + r.length());
        }
        return end;
    }

    static long roundUp(long v, long a) {
        return (v + a - 1) / a * a;
    }

}
