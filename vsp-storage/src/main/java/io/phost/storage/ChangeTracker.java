package io.phost.storage;

import io.phost.core.sys.PosixFile;

import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;
import java.util.zip.CRC32C;

/**
 * Resilient change tracking of one disk: which {@link #GRANULARITY}-byte blocks were written since the last
 * backup point, kept in a file of its own (Hyper-V keeps {@code .rct} beside the VHDX; ours lives in the
 * data directory because the image under a disk changes with every checkpoint while the tracking belongs to
 * the disk). Crash consistency rests on an OPEN flag, not on write ordering alone:
 * <pre>
 *   open      : OPEN set and made durable before the first tracked write (a valid file read first)
 *   write     : bit set in memory before the write is dispatched (one bit test when already set)
 *   FLUSH     : new bits made durable before the guest's flush completes
 *   clean stop: bits written, OPEN cleared, fdatasync
 *   next open : OPEN still set, bad CRC or wrong size  →  INVALID (the next backup is full, and says why)
 * </pre>
 * An unclean stop never leaves a bitmap that looks valid but misses writes: page-cache writes survive a
 * killed process, so any stop without the clean close invalidates the bitmap.
 * <pre>
 *   File (little-endian), one pwrite + fdatasync per persist:
 *    0  magic "PHOSTRCT"           8  u32 version (1) | u32 flags (1 OPEN, 2 INVALID)
 *   16  u64 disk size             24  u32 granularity | u32 reason (see {@link Reason})
 *   32  u64 generation            40  generation id (16 bytes, UUID msb | lsb)
 *   56  u32 reserved              60  u32 CRC-32C of bytes 0..60 and the bitmap
 *   64  bitmap: bit b of u64 word w = block 64w+b written since the last backup point
 * </pre>
 */
public final class ChangeTracker implements AutoCloseable {
    public static final int GRANULARITY = 64 << 10;
    private static final int SHIFT = Integer.numberOfTrailingZeros(GRANULARITY);
    private static final byte[] MAGIC = "PHOSTRCT".getBytes(StandardCharsets.US_ASCII);
    private static final int HEADER = 64;
    private static final int FLAG_OPEN = 1;
    private static final int FLAG_INVALID = 2;
    /** Atomic access to the bitmap's words: queues of one LUN mark concurrently. */
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);

    /** Why the bitmap cannot be trusted: the next backup copies everything. */
    public enum Reason {
        NONE("the bitmap is valid"),
        NEW("no earlier backup point: tracking starts with this one"),
        UNCLEAN_STOP("the host stopped without closing the bitmap (killed or crashed)"),
        CORRUPT("the bitmap file is unreadable (bad checksum, size or magic)"),
        REVERTED("a checkpoint was applied: the disk went back to an older state"),
        BACKUP_INTERRUPTED("the host stopped during a backup: its changes were never confirmed copied"),
        /** Appended last: the ordinal is stored in the bitmap file. */
        ADDED_LIVE("the partition was added or moved here while the host ran: its disk may have been written elsewhere");

        public final String text;

        Reason(String text) {
            this.text = text;
        }
    }

    /** The changes up to a backup point, handed to its export; {@code full} when the tracking was invalid. */
    public record Cut(long generation, UUID generationId, boolean full, Reason reason, long[] words, long size) {
        public long dirtyBytes() {
            if (full) {
                return size;
            }
            long n = 0;
            for (long w : words) {
                n += Long.bitCount(w);
            }
            return Math.min(size, n * GRANULARITY);
        }
    }

    private final Path path;
    private final PosixFile file;
    private final long size;
    private final int wordCount;
    private final long[] bits;
    /** Bumped by every newly set bit: a flush persists only when it moved. */
    private final java.util.concurrent.atomic.AtomicLong changes = new java.util.concurrent.atomic.AtomicLong();
    private final byte[] image;
    private final ByteBuffer imageBuf;
    private final CRC32C crc = new CRC32C();
    private long persistedChanges;
    private long generation;
    private UUID generationId;
    private volatile Reason invalid;
    private boolean closed;

    private ChangeTracker(Path path, PosixFile file, long size) {
        this.path = path;
        this.file = file;
        this.size = size;
        this.wordCount = (int) (((size + GRANULARITY - 1) >>> SHIFT) + 63 >>> 6);
        this.bits = new long[wordCount];
        this.image = new byte[HEADER + 8 * wordCount];
        this.imageBuf = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * Opens (or creates, with reason {@link Reason#NEW}) the tracking file of a {@code size}-byte disk and
     * marks it OPEN durably, so that from here an unclean stop is detected at the next open.
     */
    public static ChangeTracker open(Path path, long size) throws IOException {
        if (size <= 0 || (size >>> SHIFT) >= Integer.MAX_VALUE) {
            throw new IllegalArgumentException("disk size " + size + " cannot be tracked");
        }
        boolean exists = Files.exists(path);
        PosixFile f = exists ? PosixFile.open(path, false) : PosixFile.createNew(path);
        ChangeTracker t = new ChangeTracker(path, f, size);
        try {
            t.generation = 0;
            t.generationId = UUID.randomUUID();
            t.invalid = exists ? t.load() : Reason.NEW;
            if (f.size() != t.image.length) {
                f.truncate(t.image.length); // a file of another disk size: rewritten whole, no stale tail
            }
            t.persist(true);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
        return t;
    }

    /** Reads the file into memory; returns why it cannot be trusted, or NONE. */
    private Reason load() throws IOException {
        if (file.size() != image.length) {
            return Reason.CORRUPT;
        }
        file.read(0, image, 0, image.length);
        crc.reset();
        crc.update(image, 0, 60);
        crc.update(image, HEADER, image.length - HEADER);
        ByteBuffer b = imageBuf;
        if (!java.util.Arrays.equals(image, 0, 8, MAGIC, 0, 8) || b.getInt(8) != 1 || b.getLong(16) != size
            || b.getInt(24) != GRANULARITY || (int) crc.getValue() != b.getInt(60)) {
            return Reason.CORRUPT;
        }
        generation = b.getLong(32);
        generationId = new UUID(b.getLong(40), b.getLong(48));
        for (int w = 0; w < wordCount; w++) {
            bits[w] = b.getLong(HEADER + 8 * w);
        }
        int flags = b.getInt(12);
        if ((flags & FLAG_OPEN) != 0) {
            return Reason.UNCLEAN_STOP;
        }
        if ((flags & FLAG_INVALID) != 0) {
            int r = b.getInt(28);
            return r > 0 && r < Reason.values().length ? Reason.values()[r] : Reason.CORRUPT;
        }
        return Reason.NONE;
    }

    public Path path() {
        return path;
    }

    /**
     * Marks {@code [offset, offset + length)} written. Called for every write before it is dispatched; a
     * region whose bits are set costs one read per 64 blocks and no store.
     */
    public void mark(long offset, long length) {
        if (length <= 0) {
            return;
        }
        long first = offset >>> SHIFT;
        long last = Math.min(offset + length - 1, size - 1) >>> SHIFT;
        for (long b = first; b <= last; b++) {
            int w = (int) (b >>> 6);
            long bit = 1L << b;
            if (((long) WORD.getOpaque(bits, w) & bit) == 0) {
                // Concurrent queues set neighbouring bits of one word: an atomic OR never loses one.
                if (((long) WORD.getAndBitwiseOr(bits, w, bit) & bit) == 0) {
                    changes.incrementAndGet();
                }
            }
        }
    }

    /** Makes new bits durable (a FLUSH completes after this). Cheap when nothing new was marked. */
    public void persistIfChanged() throws IOException {
        if (changes.get() != persistedChanges) {
            synchronized (this) {
                if (!closed) {
                    persist(true);
                }
            }
        }
    }

    /**
     * Ends the current generation at a backup point: returns its changes (everything when the tracking was
     * invalid) and starts a new, valid, empty generation. Call while the disk's I/O is paused, so that each
     * write lands in exactly one generation; {@link #persistIfChanged} (or the next flush) stores it.
     */
    public synchronized Cut cut() {
        long[] words = new long[wordCount];
        for (int w = 0; w < wordCount; w++) {
            words[w] = (long) WORD.getAndSet(bits, w, 0L);
        }
        Reason r = invalid;
        Cut c = new Cut(generation, generationId, r != Reason.NONE, r, words, size);
        generation++;
        generationId = UUID.randomUUID();
        invalid = Reason.NONE;
        changes.incrementAndGet(); // the empty generation must reach the file
        return c;
    }

    /** Gives back a cut whose backup was abandoned: its blocks count as changed again in the next one. */
    public synchronized void restore(Cut c) {
        if (c.full()) {
            invalidate(c.reason());
            return;
        }
        for (int w = 0; w < wordCount; w++) {
            WORD.getAndBitwiseOr(bits, w, c.words()[w]);
        }
        changes.incrementAndGet();
    }

    /** The disk changed in a way writes do not describe: the next backup is full. */
    public void invalidate(Reason why) {
        invalid = why;
        changes.incrementAndGet();
    }

    public Reason invalidReason() {
        return invalid;
    }

    public synchronized long generation() {
        return generation;
    }

    public synchronized UUID generationId() {
        return generationId;
    }

    /** Bytes written since the last backup point (whole blocks). */
    public long dirtyBytes() {
        long n = 0;
        for (int w = 0; w < wordCount; w++) {
            n += Long.bitCount((long) WORD.getOpaque(bits, w));
        }
        return Math.min(size, n * GRANULARITY);
    }

    /** Writes header and bitmap in one pwrite and syncs them. */
    private void persist(boolean open) throws IOException {
        long seen = changes.get();
        ByteBuffer b = imageBuf;
        System.arraycopy(MAGIC, 0, image, 0, 8);
        Reason r = invalid;
        b.putInt(8, 1).putInt(12, (open ? FLAG_OPEN : 0) | (r != Reason.NONE ? FLAG_INVALID : 0));
        b.putLong(16, size).putInt(24, GRANULARITY).putInt(28, r.ordinal());
        b.putLong(32, generation).putLong(40, generationId.getMostSignificantBits())
            .putLong(48, generationId.getLeastSignificantBits()).putInt(56, 0);
        for (int w = 0; w < wordCount; w++) {
            b.putLong(HEADER + 8 * w, (long) WORD.getVolatile(bits, w));
        }
        crc.reset();
        crc.update(image, 0, 60);
        crc.update(image, HEADER, image.length - HEADER);
        b.putInt(60, (int) crc.getValue());
        file.write(0, image, 0, image.length);
        file.dataSync();
        persistedChanges = seen;
    }

    /** The clean stop: bits stored, OPEN cleared. Call once no write reaches the disk any more. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            persist(false);
        } finally {
            file.close();
        }
    }
}
