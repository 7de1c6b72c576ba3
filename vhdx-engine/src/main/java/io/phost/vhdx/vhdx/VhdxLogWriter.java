package io.phost.vhdx.vhdx;

import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.UUID;

import static io.phost.vhdx.vhdx.BatDescriptor.*;
import static io.phost.vhdx.vhdx.VhdxDisk.*;

/**
 * A {@link VhdxDisk}'s metadata writer: the write session (header GUIDs), log entries for dirty BAT and
 * sector-bitmap sectors, and their application in place. Every metadata change reaches the file through
 * here; the header state it guards lives in the disk under {@code commitLock}.
 *
 * <h2>Flush</h2>
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
 * durability waits for the next fdatasync (the log entry's). Writes that allocate only append blocks past
 * the end the image had at open: no BAT on disk points there until the flush that logs them, so the header
 * rewrite waits for that flush (for an image without a parent it even shares the log entry's fdatasync:
 * {@link #startSessionWithEntry}) and a fresh image's first writes cost about what a raw file's sparse
 * extension does. A crash before that flush leaves the header as it was and unreferenced space at the end.
 * On close the LogGuid is set back to zero (log empty), so qemu and Hyper-V see a clean image.
 */
final class VhdxLogWriter {
    private static final SplittableRandom GUIDS = new SplittableRandom(new SecureRandom().nextLong());

    private final VhdxDisk d;
    /**
     * Metadata was applied in place after the last fdatasync here: the log cannot be emptied before one more.
     * Guarded by commitLock; only this class's syncs clear it (another sync just costs one more at close).
     */
    private boolean inPlaceUnsynced;

    VhdxLogWriter(VhdxDisk d) {
        this.d = d;
    }

    public void flush() throws IOException {
        flush(true);
    }

    /**
     * {@code syncWhenClean} false: with no dirty metadata, skip the data fdatasync (for {@link #endSession},
     * whose header fdatasync follows and covers the data; nothing has to be durable before that header).
     */
    private void flush(boolean syncWhenClean) throws IOException {
        if (d.readOnly || d.closed) {
            return;
        }
        d.commitLock.lock();
        try {
            // Order matters: snapshot the dirty metadata first, then sync. Every block an entry in the
            // snapshot points to was extended and written before its entry was published, so this sync
            // makes it durable; a block allocated after the snapshot waits for the next flush.
            List<VhdxLog.Update> pages = collectDirty();
            long durableSize = d.file.size();
            int max = VhdxLog.maxPagesPerEntry(d.header.logLength());
            if (!d.sessionStarted && canStartSessionWithEntry(pages, durableSize, max)) {
                try {
                    startSessionWithEntry(pages, durableSize);
                } catch (IOException | RuntimeException e) {
                    remarkDirty(pages);
                    throw e;
                }
                return;
            }
            if (pages.isEmpty() ? syncWhenClean : d.sessionStarted) {
                sync();
            }
            if (pages.isEmpty()) {
                return;
            }
            if (!d.sessionStarted) {
                startSession(); // its first header fdatasync also makes the data written so far durable
            }
            try {
                for (int i = 0; i < pages.size(); i += max) {
                    List<VhdxLog.Update> batch = pages.subList(i, Math.min(pages.size(), i + max));
                    if (i > 0) {
                        sync(); // the previous batch's in-place writes must be durable before its entry is superseded
                    }
                    commit(batch, durableSize);
                }
            } catch (IOException | RuntimeException e) {
                remarkDirty(pages); // nothing is lost: the next flush retries these sectors
                throw e;
            }
        } finally {
            d.commitLock.unlock();
        }
    }

    /** Some BAT sector waits for a flush (an unmap or write-zeroes before the session started). */
    boolean anyDirty() {
        for (int i = 0; i < d.batDirty.length(); i++) {
            if (d.batDirty.get(i) != 0) {
                return true;
            }
        }
        return false;
    }

    void remarkDirty(List<VhdxLog.Update> pages) {
        long batOff = d.p.bat.fileOffset();
        for (VhdxLog.Update u : pages) {
            long off = u.fileOffset();
            if (off >= batOff && off < batOff + (long) d.batDirty.length() * 4096) {
                d.batDirty.set((int) ((off - batOff) / 4096), 1);
                continue;
            }
            for (int c = 0; c < d.bitmaps.length(); c++) {
                SectorBitmap bm = d.bitmaps.get(c);
                long base = fileOffset((long) LONGS.getAcquire(d.bat, (int) bitmapIndex(c, d.chunkRatio)));
                if (bm != null && base != 0 && off >= base && off < base + SECTOR_BITMAP_BLOCK_LENGTH) {
                    bm.dirty.set((int) ((off - base) / 4096), 1);
                }
            }
        }
    }

    List<VhdxLog.Update> collectDirty() {
        List<VhdxLog.Update> pages = new ArrayList<>();
        long batOff = d.p.bat.fileOffset();
        for (int s = 0; s < d.batDirty.length(); s++) {
            if (d.batDirty.get(s) != 0 && d.batDirty.getAndSet(s, 0) != 0) {
                byte[] page = new byte[4096];
                int first = s * BAT_ENTRIES_PER_SECTOR;
                int last = Math.min(d.bat.length, first + BAT_ENTRIES_PER_SECTOR);
                for (int i = first; i < last; i++) {
                    Le.put64(page, (i - first) * 8, (long) LONGS.getAcquire(d.bat, i));
                }
                pages.add(new VhdxLog.Update(batOff + (long) s * 4096, page, 0));
            }
        }
        for (int c = 0; c < d.bitmaps.length(); c++) {
            SectorBitmap bm = d.bitmaps.get(c);
            if (bm == null) {
                continue;
            }
            long e = (long) LONGS.getAcquire(d.bat, (int) bitmapIndex(c, d.chunkRatio));
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
    boolean canStartSessionWithEntry(List<VhdxLog.Update> pages, long size, int max) {
        if (d.p.hasParent || pages.isEmpty() || pages.size() > max || size - d.openFileSize > VhdxLog.MAX_EXTENSION) {
            return false;
        }
        long batOff = d.p.bat.fileOffset();
        long batEnd = batOff + (long) d.batDirty.length() * 4096;
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
    void startSessionWithEntry(List<VhdxLog.Update> pages, long size) throws IOException {
        d.fileWriteGuid = sessionGuid();
        d.dataWriteGuid = sessionGuid();
        d.logGuid = sessionGuid();
        d.logPosition = 0;
        d.logSequence = 0;
        writeHeaders(1, 0);
        writeEntry(pages, d.openFileSize, size);
        sync();
        d.sessionStarted = true; // volatile write: publishes the GUIDs to lock-free writers' fast check
        writeHeaders(1, 0);
        applyInPlace(pages);
    }

    /**
     * Writes one log entry for {@code batch}, syncs it, applies it in place (unsynced).
     * {@code durableSize}: a file size already made durable that covers every block the batch references
     * (FlushedFileOffset; replay refuses a file shorter than it).
     */
    void commit(List<VhdxLog.Update> batch, long durableSize) throws IOException {
        writeEntry(batch, durableSize, durableSize);
        sync();
        applyInPlace(batch);
    }

    /** Writes the next log entry for {@code batch} at the log position (no sync). Under commitLock. */
    void writeEntry(List<VhdxLog.Update> batch, long flushedFileOffset, long lastFileOffset) throws IOException {
        int n = batch.size();
        long entryLength = (LogDescriptor.descriptorSectors(n) + n) * LogDescriptor.SECTOR;
        if (d.logPosition + entryLength > d.header.logLength()) {
            d.logPosition = 0;
        }
        byte[] entry = VhdxLog.buildEntry(batch, ++d.logSequence, d.logGuid, d.logPosition, flushedFileOffset, lastFileOffset);
        d.file.write(d.header.logOffset() + d.logPosition, entry, 0, entry.length);
        d.logPosition += entryLength;
        if (d.logPosition >= d.header.logLength()) {
            d.logPosition = 0;
        }
    }

    void applyInPlace(List<VhdxLog.Update> batch) throws IOException {
        inPlaceUnsynced = true;
        for (VhdxLog.Update u : batch) {
            d.file.write(u.fileOffset(), u.page(), 0, u.page().length);
        }
    }

    /** fdatasync of the image; after it no in-place metadata write waits for one. Under commitLock. */
    private void sync() throws IOException {
        d.file.dataSync();
        inPlaceUnsynced = false;
    }

    /** First write of this session: new FileWriteGuid, DataWriteGuid and LogGuid, durable before any data. */
    void startSession() throws IOException {
        startSession(true);
    }

    /**
     * Starts the write session. {@code newDataWriteGuid} false is for changes that leave every virtual
     * sector as it was (re-pointing the parent locator at the same parent): children made from this image
     * keep matching its DataWriteGuid (MS-VHDX 2.2.2: it changes on user-visible data changes only).
     */
    void startSession(boolean newDataWriteGuid) throws IOException {
        d.commitLock.lock();
        try {
            if (d.sessionStarted) {
                return;
            }
            d.fileWriteGuid = sessionGuid();
            if (newDataWriteGuid) {
                d.dataWriteGuid = sessionGuid();
            }
            d.logGuid = sessionGuid();
            d.logPosition = 0;
            d.logSequence = 0;
            // One fdatasync: the non-current slot gets sequence+1 and is current once durable (MS-VHDX
            // 2.2.2.1); a torn write leaves the older copy current, still the image as it was (no log entry
            // or in-place write precedes this sync). The other slot then gets sequence+2 without a sync of
            // its own: torn or lost, the copy just synced stays current; the flush's next fdatasync (the log
            // entry's) makes it durable, so both copies carry the session's LogGuid again.
            writeHeaders(2, 1);
            d.sessionStarted = true; // volatile write: publishes the GUIDs to lock-free writers' fast check
        } finally {
            d.commitLock.unlock();
        }
    }

    /**
     * A random (version 4) GUID for a session header. UUID.randomUUID takes SecureRandom's lock and reads
     * /dev/urandom per call, three times per session start, a measurable part of a fresh image's first flush;
     * these GUIDs need to be unique, not secret, so they come from a generator SecureRandom seeds once.
     */
    static UUID sessionGuid() {
        long hi;
        long lo;
        synchronized (GUIDS) {
            hi = GUIDS.nextLong();
            lo = GUIDS.nextLong();
        }
        return new UUID((hi & ~0xF000L) | 0x4000L, (lo & ~(3L << 62)) | (1L << 63));
    }

    /** Writes the header state to both slots (non-current first), fdatasync after each. Under commitLock. */
    void writeHeaders() throws IOException {
        writeHeaders(2, 2);
    }

    /**
     * Writes the header state to both slots, the non-current one first, with an fdatasync after each of the
     * first {@code synced} writes, so the newest durable valid copy is always a complete header. Under commitLock.
     */
    void writeHeaders(int copies, int synced) throws IOException {
        for (int step = 0; step < copies; step++) {
            int slot = 1 - d.currentSlot;
            byte[] h = VhdxImageWriter.header(++d.headerSequence, d.fileWriteGuid, d.dataWriteGuid, d.logGuid,
                d.header.logLength(), d.header.logOffset());
            d.file.write(VhdxHeaderDescriptor.headerFileOffset(slot), h, 0, h.length);
            if (step < synced) {
                sync();
            }
            d.currentSlot = slot;
        }
    }

    /** Makes everything written durable and empties the log (a read-write open, before close or demotion). */
    void endSession() throws IOException {
        if (!d.sessionStarted && (d.allocatedBeforeSession || anyDirty())) {
            flush(); // logs the blocks allocated before any flush; this starts the session
        }
        if (d.sessionStarted) {
            d.commitLock.lock();
            try {
                flush(false);
                if (inPlaceUnsynced) {
                    sync(); // the last commit's in-place metadata is durable before the log is emptied
                }
                d.logGuid = Le.ZERO_GUID;
                // One fdatasync, as at the session's start: the copy written first (non-current slot, higher
                // sequence) is current once durable, and it also makes this session's data durable; the
                // other copy is written without a sync of its own: lost or torn, the synced copy stays current.
                writeHeaders(2, 1);
                trimExtension();
            } finally {
                d.commitLock.unlock();
            }
        }
    }

    /**
     * Cuts the sparse tail {@link VhdxDataPath#allocate} extended ahead of the last block. Only once the log is empty
     * (an entry's FlushedFileOffset may name the longer size); not synced: a crash keeps the tail, as it
     * keeps blocks allocated and never flushed. Under commitLock.
     */
    void trimExtension() throws IOException {
        synchronized (d.extendedTo) {
            long end = d.fileEnd.get();
            if (d.extendedTo[0] > end && d.file.size() > end) {
                d.file.truncate(end);
                d.extendedTo[0] = end;
            }
        }
    }

    /** The 4 KiB page holding {@code item}'s u64 at {@code itemOffset}, with the new value. */
    VhdxLog.Update metadataPage(java.util.UUID item, int itemOffset, long value) throws IOException {
        long at = metadataItemFileOffset(item) + itemOffset;
        long pageOff = at & ~4095L;
        byte[] page = new byte[4096];
        d.file.read(pageOff, page, 0, 4096);
        Le.put64(page, (int) (at - pageOff), value);
        return new VhdxLog.Update(pageOff, page, 0);
    }

    long metadataItemFileOffset(java.util.UUID item) throws IOException {
        byte[] table = new byte[MetadataDescriptor.TABLE_LENGTH];
        d.file.read(d.p.metadata.fileOffset(), table, 0, table.length);
        int count = Le.u16(table, MetadataDescriptor.ENTRY_COUNT_OFFSET);
        for (int i = 0; i < count; i++) {
            int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
            if (Le.guid(table, e).equals(item)) {
                return d.p.metadata.fileOffset() + Le.u32(table, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
            }
        }
        throw new VhdxFormatException(Reason.MISSING_STRUCTURE, d.p.metadata.fileOffset(), "metadata item " + item);
    }

    /** Commits pages through the log in as many entries as needed, in order. Under commitLock. */
    void commitAll(List<VhdxLog.Update> pages) throws IOException {
        if (!d.sessionStarted) {
            startSession();
        }
        long durableSize = d.file.size();
        sync();
        int max = VhdxLog.maxPagesPerEntry(d.header.logLength());
        for (int i = 0; i < pages.size(); i += max) {
            if (i > 0) {
                sync();
            }
            commit(pages.subList(i, Math.min(pages.size(), i + max)), durableSize);
        }
        sync();
    }

}
