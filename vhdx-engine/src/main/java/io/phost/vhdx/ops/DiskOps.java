package io.phost.vhdx.ops;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhd.VhdFormatException;
import io.phost.vhdx.vhd.VhdMaintenance;
import io.phost.vhdx.vhdx.VhdxCheck;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The image operations behind {@code phost vhd}: info, check, convert, resize, compact, merge, set-parent.
 * Formats are recognised from content. Operations that rewrite an image build the new one beside it and
 * rename it into place atomically, so a crash leaves the old image or the new one, never half of each.
 * <p>Over ~600 lines because it is the facade of every verb (one short entry point each, the real work in
 * VhdxMerge, VhdxCompactInPlace, OnlineMerge, the converters and the image classes).
 */
public final class DiskOps {
    /** Copy unit of convert/merge: large enough for sequential throughput, small enough to skip zeros. */
    static final int CHUNK = 1 << 20;

    private DiskOps() {}

    // ------------------------------------------------------------------------------------------ info

    public static ImageInfo info(Path path) throws IOException {
        return info(path, null);
    }

    /** At most this much data is read by {@code info} to find the minimum size. */
    static final long INFO_SCAN_BUDGET = 256L << 20;

    /** Describes {@code path} read as {@code format} (null: recognised from content). */
    public static ImageInfo info(Path path, DiskFormat format) throws IOException {
        long fileSize = Files.size(path);
        ImageFacts.Attached attached = ImageFacts.attached(path); // before our own open takes a lock
        if (attached == ImageFacts.Attached.READ_WRITE) {
            // A writer's metadata is live (its log, unflushed BAT): say what is safe to say without opening it.
            Map<String, String> details = new LinkedHashMap<>();
            details.put("attached", attached.describe());
            details.put("note", "the process that has it open read-write owns its metadata; run info again once it is closed");
            DiskFormat f = format != null ? format : VirtualDisks.detect(path);
            return new ImageInfo(path.toString(), f.id(), "attached", 0, 0, 0, 0, fileSize, 0, List.of(), "in use", details);
        }
        VirtualDisk opened;
        String parentProblem = null;
        try {
            opened = format == null ? VirtualDisks.open(path, true) : VirtualDisks.open(path, format, true);
        } catch (VhdxFormatException e) {
            if (!isParentProblem(e)) {
                throw e;
            }
            opened = VhdxDisk.openDetached(path); // an orphaned child: show what the file itself says
            parentProblem = e.getMessage();
        } catch (VhdFormatException e) {
            if (!isParentProblem(e)) {
                throw e;
            }
            opened = VhdDisk.openDetached(path);
            parentProblem = e.getMessage();
        }
        try (VirtualDisk d = opened) {
            Map<String, String> details = new LinkedHashMap<>();
            if (parentProblem != null) {
                details.put("parentProblem", parentProblem);
            }
            List<String> chain = new ArrayList<>();
            String type;
            long blockSize = 0;
            String log = "none";
            long allocated;
            switch (d) {
                case VhdDisk v -> {
                    type = v.type().id();
                    blockSize = v.blockSize();
                    for (VhdDisk p = v.parent(); p != null; p = p.parent()) {
                        chain.add(p.path().toString());
                    }
                    details.put("uniqueId", HexFormat.of().formatHex(v.uniqueId()));
                    details.put("creator", v.footer().creatorApp().replace('\0', ' ').trim());
                    details.put("geometry", v.footer().cylinders() + "/" + v.footer().heads() + "/"
                        + v.footer().sectorsPerTrack());
                    details.put("currentSize", Long.toString(v.footer().currentSize()));
                    if (v.header() != null && v.type() == DiskType.DIFFERENCING) {
                        details.put("parentUniqueId", HexFormat.of().formatHex(v.header().parentUniqueId()));
                    }
                    allocated = v.allocatedBytes();
                }
                case VhdxDisk x -> {
                    type = x.type().name().toLowerCase(java.util.Locale.ROOT);
                    blockSize = x.blockSize();
                    for (VhdxDisk.ParentInfo p : x.parentChain()) {
                        chain.add(p.path().toString());
                    }
                    log = x.logState().name().toLowerCase(java.util.Locale.ROOT);
                    details.put("virtualDiskId", x.virtualDiskId().toString());
                    details.put("dataWriteGuid", x.dataWriteGuid().toString());
                    details.putAll(x.parentLocator());
                    allocated = x.allocatedBytes();
                }
                case RawDisk r -> {
                    type = "raw";
                    allocated = r.allocatedBytes();
                }
                default -> {
                    type = "unknown";
                    allocated = fileSize;
                }
            }
            long min = ImageFacts.minimumSize(d, INFO_SCAN_BUDGET);
            details.put("minimumSize", min < 0 ? "not scanned (over " + (INFO_SCAN_BUDGET >> 20)
                + " MiB of allocated tail to read; resize --to-minimum-size scans it all)" : Long.toString(min));
            details.put("fragmentationPercentage", Integer.toString(ImageFacts.fragmentationPercentage(d)));
            details.put("attached", attached.describe());
            details.put("diskSize", Long.toString(diskBytes(path))); // qemu-img info's "disk size": st_blocks
            return new ImageInfo(path.toString(), d.format(), type, d.size(), blockSize, d.logicalSectorSize(),
                d.physicalSectorSize(), fileSize, allocated, List.copyOf(chain), log, details);
        }
    }

    /** A VHD that opens except for its parent: missing, or not the image it was made from. */
    private static boolean isParentProblem(VhdFormatException e) {
        return switch (e.reason()) {
            case PARENT_NOT_FOUND, PARENT_MISMATCH -> true;
            default -> false;
        };
    }

    /** A VHDX that opens except for its parent: missing, moved, or no longer the image it was made from. */
    private static boolean isParentProblem(VhdxFormatException e) {
        return switch (e.reason()) {
            case BAD_PARENT_LOCATOR, PARENT_LINKAGE_MISMATCH, BAD_PARENT_CHAIN -> true;
            default -> false;
        };
    }

    // ------------------------------------------------------------------------------------------ check

    /**
     * Checks an image. VHD: footer, copy, header, BAT (and repair of the footer pair). VHDX: opens it (every
     * structure is validated on open, the log replayed in memory), reports a log that needed replay and
     * block offsets that overlap or leave the file; {@code repair} opens it read-write, which replays the
     * log in place. Raw images have no metadata to check.
     */
    public static CheckReport check(Path path, boolean repair) throws IOException {
        return check(path, null, repair);
    }

    /** Checks {@code path} as {@code forced} (null: recognised from content). */
    public static CheckReport check(Path path, DiskFormat forced, boolean repair) throws IOException {
        DiskFormat format = forced != null ? forced : VirtualDisks.detect(path);
        if (Files.exists(VhdxMerge.journalOf(path))) {
            // A merge killed after its commit point: the parent is half-written and this child no longer opens.
            return new CheckReport(List.of("an interrupted merge of " + path + " into its parent ("
                + VhdxMerge.journalOf(path).getFileName() + "): run `phost vhd merge " + path + "` to finish it"),
                List.of(), List.of(), true);
        }
        return switch (format) {
            case RAW, PASSTHROUGH -> new CheckReport(List.of(), List.of("raw images have no metadata to check"), List.of(), true);
            case VHD -> {
                VhdMaintenance.CheckResult r = VhdMaintenance.check(path, repair);
                yield new CheckReport(r.problems(), r.notes(), r.repaired(), r.readable());
            }
            case VHDX -> checkVhdx(path, repair);
            case RBD -> throw new IllegalArgumentException("an rbd image is checked by Ceph, not as a file");
        };
    }

    /** VHDX through {@link VhdxCheck}: errors and warnings are problems, infos are notes. */
    private static CheckReport checkVhdx(Path path, boolean repair) throws IOException {
        VhdxCheck.Report before = VhdxCheck.check(path);
        List<String> problems = new ArrayList<>();
        List<String> notes = new ArrayList<>();
        List<String> repaired = new ArrayList<>();
        for (VhdxCheck.Finding f : before.findings()) {
            (f.severity() == VhdxCheck.Severity.INFO ? notes : problems).add(f.toString());
        }
        boolean readable = true;
        try (VhdxDisk d = VhdxDisk.open(path, true)) {
            if (!d.parentChain().isEmpty()) {
                notes.add("parent chain: " + d.parentChain().stream().map(p -> p.path().toString()).toList());
            }
        } catch (VhdxFormatException e) {
            readable = false;
        }
        if (repair && readable && !before.clean()) {
            VhdxCheck.Report after = VhdxCheck.repair(path);
            for (VhdxCheck.Finding f : before.findings()) {
                boolean still = after.findings().stream().anyMatch(a -> a.code().equals(f.code()));
                if (f.severity() != VhdxCheck.Severity.INFO && !still) {
                    repaired.add(f.code() + " at fileOffset=" + f.fileOffset());
                }
            }
        }
        return new CheckReport(problems, notes, repaired, readable);
    }

    // ------------------------------------------------------------------------------------------ convert

    /** Bytes written and skipped by a copy. */
    public record CopyResult(long bytesWritten, long bytesSkipped) {
    }

    /**
     * Converts {@code src} (any format, a differencing chain is flattened) into a new image {@code dst}.
     * Sparse-aware: ranges the source's allocation map says are empty are never read (SEEK_DATA/SEEK_HOLE for
     * raw, the BAT for VHD/VHDX), and chunks that read as zeros are never written. The image is built in a
     * temporary file beside {@code dst} and published only when complete ({@link NewImage}); an existing
     * {@code dst} is replaced only with {@code force}, and never when it is part of the source's chain.
     *
     * @param srcFormat the source's format, or null to recognise it from content
     */
    public static CopyResult convert(Path src, DiskFormat srcFormat, Path dst, DiskFormat format, DiskType type,
                                     long blockSize, boolean force, Progress progress) throws IOException {
        if (type == DiskType.DIFFERENCING) {
            throw new IllegalArgumentException("convert makes fixed or dynamic images");
        }
        try (VirtualDisk in = srcFormat == null ? VirtualDisks.open(src, true) : VirtualDisks.open(src, srcFormat, true)) {
            NewImage target = NewImage.prepare(dst, force, chainPaths(src, in));
            return convertFrom(in, target, format, type, blockSize, progress);
        }
    }

    /** {@link #convert(Path, DiskFormat, Path, DiskFormat, DiskType, long, boolean, Progress)}: probed source, no replacing. */
    public static CopyResult convert(Path src, Path dst, DiskFormat format, DiskType type, long blockSize,
                                     Progress progress) throws IOException {
        return convert(src, null, dst, format, type, blockSize, false, progress);
    }

    /** {@code path} and the files of its open parent chain, nearest first. */
    static List<Path> chainPaths(Path path, VirtualDisk d) {
        List<Path> out = new ArrayList<>();
        out.add(path);
        switch (d) {
            case VhdDisk v -> {
                for (VhdDisk p = v.parent(); p != null; p = p.parent()) {
                    out.add(p.path());
                }
            }
            case VhdxDisk x -> x.parentChain().forEach(p -> out.add(p.path()));
            default -> { }
        }
        return out;
    }

    static CopyResult convertFrom(VirtualDisk in, NewImage target, DiskFormat format, DiskType type, long blockSize,
                                  Progress progress) throws IOException {
        long size = (in.size() + 511) & -512L;
        // VHDX keeps a VHDX source's sector sizes; from other formats it gets Hyper-V's 512/4096 default.
        // VHD and raw have 512-byte sectors (a 4096-sector source converts fine; the guest sees 512).
        int logical = format == DiskFormat.VHDX ? in.logicalSectorSize() : 512;
        int physical = format != DiskFormat.VHDX ? 512
            : in instanceof VhdxDisk ? Math.max(logical, in.physicalSectorSize()) : 4096;
        CreateOptions o = new CreateOptions(format, type, size, null, blockSize, logical, physical);
        CopyResult r;
        try {
            try (VirtualDisk out = VirtualDisks.create(target.tmp(), o)) {
                r = copy(in, out, Math.min(in.size(), size), progress);
                out.flush();
            }
            target.publish();
        } catch (IOException | RuntimeException | Error e) {
            target.abandon(e);
            throw e;
        }
        return r;
    }

    /** Copy workers: several requests in flight, as qemu-img convert keeps 8 coroutines busy. */
    static final int COPY_THREADS = 4;
    private static final long[] NO_MORE = new long[0];

    /**
     * Copies the first {@code length} bytes of {@code in} to {@code out} (which must read zeros where nothing
     * is written, as a new image does), skipping unallocated ranges and zero chunks. The calling thread walks
     * the allocation map and hands 1 MiB-aligned chunks to {@link #COPY_THREADS} workers, each with its own
     * buffer, which read, test for zeros and write; both engines take concurrent I/O. Progress is reported
     * from the calling thread only.
     */
    public static CopyResult copy(VirtualDisk in, VirtualDisk out, long length, Progress progress) throws IOException {
        AllocationMap map = Allocations.of(in);
        long readable = length & -512L;
        ArrayBlockingQueue<long[]> queue = new ArrayBlockingQueue<>(COPY_THREADS * 2);
        AtomicLong written = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread[] workers = new Thread[COPY_THREADS];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = Thread.ofPlatform().name("vhd-copy-" + i).daemon().start(() -> {
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment buf = arena.allocate(CHUNK, 4096);
                    MemorySegment zeros = arena.allocate(CHUNK, 4096);
                    while (true) {
                        long[] task = queue.take();
                        if (task == NO_MORE) {
                            return;
                        }
                        if (failure.get() != null) {
                            continue; // keep draining so the producer never blocks
                        }
                        try {
                            long c = task[0];
                            long n = task[1];
                            MemorySegment part = buf.asSlice(0, n);
                            in.read(c, part);
                            written.addAndGet(writeNonZeroRuns(out, c, part, zeros));
                        } catch (Throwable t) {
                            failure.compareAndSet(null, t);
                        }
                    }
                } catch (InterruptedException e) {
                    failure.compareAndSet(null, e);
                }
            });
        }
        long total = 0; // progress counts work (bytes to read), not position: a first walk of the map sums it
        for (long o = map.nextAllocated(0) & -512L; o < readable; ) {
            long e = Math.min((map.nextUnallocated(o) + 511) & -512L, readable);
            e = e <= o ? Math.min(o + 512, readable) : e;
            total += e - o;
            o = e >= readable ? readable : map.nextAllocated(e) & -512L;
        }
        long done = 0;
        try {
            long off = map.nextAllocated(0) & -512L;
            while (off < readable && failure.get() == null) {
                long end = Math.min((map.nextUnallocated(off) + 511) & -512L, readable);
                if (end <= off) {
                    end = Math.min(off + 512, readable);
                }
                for (long c = off; c < end && failure.get() == null; ) {
                    // Chunks aligned to CHUNK so that image blocks are written whole.
                    long n = Math.min(end - c, CHUNK - (c % CHUNK));
                    queue.put(new long[] {c, n});
                    c += n;
                    done += n;
                    progress.update(done, total);
                }
                off = end >= readable ? readable : map.nextAllocated(end) & -512L;
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failure.compareAndSet(null, e);
        } finally {
            for (Thread w : workers) {
                while (true) {
                    try {
                        queue.put(NO_MORE);
                        break;
                    } catch (InterruptedException e) {
                        failure.compareAndSet(null, e);
                    }
                }
            }
            for (Thread w : workers) {
                try {
                    w.join();
                } catch (InterruptedException e) {
                    failure.compareAndSet(null, e);
                }
            }
        }
        Throwable t = failure.get();
        if (t != null) {
            switch (t) {
                case IOException io -> throw io;
                case RuntimeException re -> throw re;
                case Error er -> throw er;
                case InterruptedException ie -> throw new java.io.InterruptedIOException("copy interrupted");
                default -> throw new IOException(t);
            }
        }
        progress.update(total, total);
        return new CopyResult(written.get(), readable - written.get());
    }

    /** Holes survive a copy at this granularity (qemu-img convert's default -S is 4 KiB too). */
    static final int HOLE_GRANULE = 4096;

    /**
     * Writes the runs of {@code part} (read from disk offset {@code at}) that are not all zeros, judged in
     * {@link #HOLE_GRANULE} pieces, and returns the bytes written. A chunk not aligned to the granule is
     * judged whole.
     */
    static long writeNonZeroRuns(VirtualDisk out, long at, MemorySegment part, MemorySegment zeros) throws IOException {
        long n = part.byteSize();
        long g = (at % HOLE_GRANULE == 0 && n % HOLE_GRANULE == 0) ? HOLE_GRANULE : n;
        long written = 0;
        long runStart = -1;
        for (long p = 0; p <= n; p += g) {
            boolean data = p < n && MemorySegment.mismatch(part, p, p + g, zeros, 0, g) != -1;
            if (data && runStart < 0) {
                runStart = p;
            } else if (!data && runStart >= 0) {
                out.write(at + runStart, part.asSlice(runStart, p - runStart));
                written += p - runStart;
                runStart = -1;
            }
        }
        return written;
    }

    // ------------------------------------------------------------------------------------------ resize

    /**
     * Resizes an image and returns its new size; a shrink needs {@code allowShrink} (qemu-img's --shrink). VHD: grow only (CHS-sized images round up to their
     * geometry). Raw: grow, or shrink when the tail holds only zeros. VHDX: in place by the VHDX engine
     * ({@link VhdxDisk#resize}: grow, or shrink when no block past the new end is allocated).
     */
    public static long resize(Path path, long newSize, boolean allowShrink, Progress progress) throws IOException {
        DiskFormat format = VirtualDisks.detect(path);
        if (!allowShrink) {
            long current;
            try (VirtualDisk d = VirtualDisks.open(path, format, true)) {
                current = d.size();
            }
            if (newSize < current) {
                throw new IllegalArgumentException("shrinking " + path + " from " + current + " to " + newSize
                    + " bytes drops its tail: pass --shrink (it is refused anyway when the tail holds data)");
            }
        }
        switch (format) {
            case VHD -> {
                return VhdMaintenance.resize(path, newSize);
            }
            case RAW -> {
                if (newSize <= 0 || newSize % 512 != 0) {
                    throw new IllegalArgumentException("size must be a positive multiple of 512: " + newSize);
                }
                try (RawDisk d = RawDisk.open(path, false)) {
                    if (newSize < d.size()) {
                        requireZeroTail(d, newSize);
                    }
                    d.file().truncate(newSize);
                    d.file().dataSync();
                }
                return newSize;
            }
            default -> {
                return resizeVhdx(path, newSize, progress);
            }
        }
    }

    /** VHDX resize in place through the VHDX engine (metadata through its log). */
    private static long resizeVhdx(Path path, long newSize, Progress progress) throws IOException {
        VhdxDisk.resize(path, newSize);
        progress.update(1, 1);
        try (VhdxDisk d = VhdxDisk.open(path, true)) {
            return d.size();
        }
    }

    private static void requireZeroTail(VirtualDisk d, long from) throws IOException {
        AllocationMap map = Allocations.of(d);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(CHUNK, 4096);
            MemorySegment zeros = arena.allocate(CHUNK, 4096);
            for (long off = map.nextAllocated(from); off < d.size(); ) {
                long end = map.nextUnallocated(off);
                for (long c = off; c < end; ) {
                    long n = Math.min(end - c, CHUNK);
                    d.read(c, buf.asSlice(0, n));
                    if (MemorySegment.mismatch(buf, 0, n, zeros, 0, n) != -1) {
                        throw new IllegalStateException("cannot shrink: data at offset " + c + " lies beyond the new size "
                            + from);
                    }
                    c += n;
                }
                off = map.nextAllocated(end);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ compact

    /**
     * File bytes (allocated on disk) before and after a compact; {@code note} says why nothing was done
     * (a fixed image), else null.
     */
    public record CompactResult(long diskBytesBefore, long diskBytesAfter, long fileSizeBefore, long fileSizeAfter,
                                String note) {
        CompactResult(long diskBytesBefore, long diskBytesAfter, long fileSizeBefore, long fileSizeAfter) {
            this(diskBytesBefore, diskBytesAfter, fileSizeBefore, fileSizeAfter, null);
        }
    }

    /** Why a fixed image is left as it is (Optimize-VHD does not compact fixed disks either). */
    static final String FIXED_NOT_COMPACTED = "a fixed image is not compacted (its blocks are allocated by design, as "
        + "Optimize-VHD leaves fixed disks alone); left unchanged. 'compact --mode retrim' punches its zero pages out "
        + "of the file, 'convert --type dynamic' makes a dynamic copy";

    /**
     * Releases zero and unmapped blocks so the file shrinks, in place (the same file, identity and footer:
     * children stay linked). VHD: {@link VhdMaintenance#compact}; VHDX: {@link VhdxCompactInPlace}; raw: zero
     * chunks are punched out. Fixed VHD and VHDX images are left unchanged, with a note, as Optimize-VHD does.
     */
    public static CompactResult compact(Path path, Progress progress) throws IOException {
        return compact(path, CompactMode.FULL, progress);
    }

    /**
     * {@link #compact(Path, Progress)} in {@code mode} (QUICK reads no data to find zeros; VHDX only; RETRIM
     * punches unused space without changing the image, {@link ImageRetrim}).
     */
    public static CompactResult compact(Path path, CompactMode mode, Progress progress) throws IOException {
        if (mode == CompactMode.RETRIM) {
            return ImageRetrim.retrim(path, progress);
        }
        long diskBefore = diskBytes(path);
        long sizeBefore = Files.size(path);
        DiskFormat format = VirtualDisks.detect(path);
        if (isFixed(path, format)) {
            return new CompactResult(diskBefore, diskBefore, sizeBefore, sizeBefore, FIXED_NOT_COMPACTED);
        }
        switch (format) {
            case VHD -> {
                VhdMaintenance.compact(path);
                ImageRetrim.retrim(path, Progress.NONE); // zero pages inside the blocks that stay
            }
            case RAW -> {
                try (RawDisk d = RawDisk.open(path, false)) {
                    punchZeros(d, progress);
                }
            }
            case VHDX -> compactVhdx(path, mode, progress);
        }
        return new CompactResult(diskBefore, diskBytes(path), sizeBefore, Files.size(path));
    }

    private static boolean isFixed(Path path, DiskFormat format) throws IOException {
        return switch (format) {
            case VHD -> {
                try (VhdDisk d = VhdDisk.openDetached(path)) {
                    yield d.type() == DiskType.FIXED;
                }
            }
            case VHDX -> {
                try (VhdxDisk d = VhdxDisk.open(path, true)) {
                    yield d.type() == DiskType.FIXED;
                }
            }
            default -> false;
        };
    }

    static void punchZeros(RawDisk d, Progress progress) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(CHUNK, 4096);
            MemorySegment zeros = arena.allocate(CHUNK, 4096);
            long size = d.size() & -512L;
            for (long off = d.nextAllocated(0) & -4096L; off < size; ) {
                long end = Math.min(d.nextUnallocated(off), size);
                for (long c = off; c < end; ) {
                    long n = Math.min(end - c, CHUNK);
                    d.read(c, buf.asSlice(0, n));
                    if (MemorySegment.mismatch(buf, 0, n, zeros, 0, n) == -1) {
                        d.unmap(c, n);
                    }
                    c += n;
                    progress.update(c, size);
                }
                off = end >= size ? size : d.nextAllocated(end) & -4096L;
            }
            d.flush();
        }
    }

    /**
     * VHDX compact in place ({@link VhdxCompactInPlace}: same file, same VirtualDiskId and DataWriteGuid, every
     * BAT change through the log; a differencing image's sector-bitmap blocks stay where they are). FULL then
     * punches the zero pages left inside the blocks that stay.
     */
    private static void compactVhdx(Path path, CompactMode mode, Progress progress) throws IOException {
        try (VhdxDisk d = VhdxDisk.open(path, false)) { // the exclusive flock: refused while open elsewhere
            VhdxCompactInPlace.compact(d, mode, progress);
        } // close empties the log, then cuts the file after the last block
        if (mode == CompactMode.FULL) {
            ImageRetrim.retrim(path, Progress.NONE);
        }
    }

    /** Bytes the file occupies on disk (st_blocks * 512), or its length where that is unknown. */
    public static long diskBytes(Path path) throws IOException {
        try (PosixFile f = PosixFile.open(path, true)) {
            return f.diskBytes();
        }
    }

    // ------------------------------------------------------------------------------------------ merge

    /**
     * Merges differencing image {@code child} into its parent: every range the child stores is written to the
     * parent, which is then flushed. The child is deleted afterwards unless {@code keepChild} (Hyper-V's
     * Merge-VHD deletes it; a kept child still reads the same, now redundantly). Other children of the
     * parent are not updated: they see the merged data.
     */
    public static CopyResult mergeIntoParent(Path child, boolean keepChild, Progress progress) throws IOException {
        if (Files.exists(VhdxMerge.journalOf(child))) {
            return VhdxMerge.merge(child, keepChild, progress); // an interrupted merge: finish it
        }
        CopyResult r;
        switch (VirtualDisks.detect(child)) {
            case VHD -> r = mergeVhd(child, progress);
            case VHDX -> {
                return VhdxMerge.merge(child, keepChild, progress);
            }
            default -> throw new IllegalArgumentException(child + " is a raw image, not a differencing one");
        }
        if (!keepChild) {
            Files.delete(child);
        }
        return r;
    }

    /**
     * Merges the chain from {@code child} up to (not including) {@code ancestor} into {@code ancestor}, as
     * Hyper-V's {@code Merge-VHD -DestinationPath}: each image is merged into its parent in turn, from the
     * child upwards, and deleted, so the ancestor ends up reading what the child read. Images made from the
     * intermediate ones are not looked for (they would see changed data, as with Merge-VHD). A kill between
     * steps leaves a shorter chain that reads the same; rerun the merge from its top image.
     */
    public static CopyResult mergeIntoAncestor(Path child, Path ancestor, Progress progress) throws IOException {
        List<Path> chain;
        try (VirtualDisk d = VirtualDisks.open(child, true)) {
            chain = chainPaths(child, d);
        }
        int at = -1;
        for (int i = 1; i < chain.size() && at < 0; i++) {
            if (Files.exists(ancestor) && Files.isSameFile(chain.get(i), ancestor)) {
                at = i;
            }
        }
        if (at < 0) {
            throw new IllegalArgumentException(ancestor + " is not an ancestor of " + child + " (its chain: "
                + chain.subList(1, chain.size()) + ")");
        }
        long written = 0;
        long size = 0;
        for (int i = 0; i < at; i++) {
            CopyResult r = mergeIntoParent(chain.get(i), false, progress);
            written += r.bytesWritten();
            size = r.bytesWritten() + r.bytesSkipped();
        }
        return new CopyResult(written, Math.max(0, size - written));
    }

    static CopyResult mergeVhd(Path child, Progress progress) throws IOException {
        try (VhdDisk c = VhdDisk.open(child, true)) {
            if (c.parent() == null) {
                throw new IllegalArgumentException(child + " is not a differencing image");
            }
            try (VirtualDisk p = VirtualDisks.open(c.parentPath(), false); Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(CHUNK, 4096);
                long[] written = {0};
                long total = c.size();
                c.forEachStoredRange((off, len) -> {
                    for (long d = 0; d < len; ) {
                        long n = Math.min(CHUNK, len - d);
                        MemorySegment part = buf.asSlice(0, n);
                        c.read(off + d, part);
                        p.write(off + d, part);
                        d += n;
                        written[0] += n;
                    }
                    progress.update(off + len, total);
                });
                p.flush();
                return new CopyResult(written[0], total - written[0]);
            }
        }
    }

    /**
     * Flattens the chain ending at {@code child} into a new image {@code dst} (the chain is untouched). An
     * existing {@code dst} is replaced only with {@code force}, and never when it belongs to the chain.
     */
    public static CopyResult mergeInto(Path child, Path dst, DiskFormat format, DiskType type, boolean force,
                                       Progress progress) throws IOException {
        return convert(child, null, dst, format, type, 0, force, progress);
    }

    /** {@link #mergeInto(Path, Path, DiskFormat, DiskType, boolean, Progress)} without replacing. */
    public static CopyResult mergeInto(Path child, Path dst, DiskFormat format, DiskType type, Progress progress)
        throws IOException {
        return mergeInto(child, dst, format, type, false, progress);
    }

    /**
     * Creates a new image {@code dst} through a temporary file ({@link NewImage}): an existing file is
     * replaced only with {@code force}; a failed create leaves nothing behind. Returns the virtual size.
     */
    public static long create(Path dst, CreateOptions options, boolean force) throws IOException {
        List<Path> inputs = options.parent() == null ? List.of() : List.of(options.parent());
        NewImage target = NewImage.prepare(dst, force, inputs);
        long size;
        try {
            try (VirtualDisk d = VirtualDisks.create(target.tmp(), options)) {
                size = d.size();
                d.flush();
            }
            target.publish();
        } catch (IOException | RuntimeException | Error e) {
            target.abandon(e);
            throw e;
        }
        return size;
    }

    // ------------------------------------------------------------------------------------------ set-parent

    /**
     * Re-points differencing image {@code child} at {@code parent}, checking the linkage (the parent must be
     * the image the child was made from: VHD unique id, VHDX DataWriteGuid) unless {@code force}.
     */
    public static void setParent(Path child, Path parent, boolean force) throws IOException {
        switch (VirtualDisks.detect(child)) {
            case VHD -> VhdMaintenance.setParent(child, parent, force);
            case VHDX -> VhdxDisk.setParent(child, parent, force);
            default -> throw new IllegalArgumentException(child + " is a raw image, not a differencing one");
        }
    }

    static void replace(Path tmp, Path path) throws IOException {
        try {
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING);
        }
        try (PosixFile d = PosixFile.open(path.toAbsolutePath().getParent(), true)) {
            d.sync();
        } catch (IOException ignored) {
            // fsync on a directory is refused by some file systems
        }
    }

    /** True for the exceptions that mean "this file is not a valid image" (as opposed to I/O failures). */
    public static boolean isFormatError(Throwable t) {
        return t instanceof VhdFormatException || t instanceof VhdxFormatException
            || t instanceof io.phost.vhdx.UnsupportedImageException;
    }
}
