package io.phost.vhdx.vhdx;

import static io.phost.vhdx.vhdx.LogDescriptor.*;

import io.phost.vhdx.Crc32c;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.zip.CRC32C;

/**
 * Reads (search + replay plan) and writes VHDX log entries. Pure byte[] logic: the caller does the I/O.
 *
 * <p>Search follows MS-VHDX 2.3.3 and qemu: scan every 4 KiB position for a valid entry, extend it into a
 * run of entries with consecutive sequence numbers, and take the run whose newest entry has the highest
 * sequence number. Replay goes from the entry the newest entry's Tail names (or the start of the run if
 * the tail is outside it, as qemu does) through the newest entry.
 */
final class VhdxLog {
    /** One sector-level update: a 4 KiB page, or {@code zeroLength} bytes of zeros when page is null. */
    record Update(long fileOffset, byte[] page, long zeroLength) {}

    /** What replay must do: updates in order, and the file size the newest entry requires. */
    record Plan(List<Update> updates, long lastFileOffset, long flushedFileOffset, long newestSequence, int entries) {
        boolean isEmpty() {
            return entries == 0;
        }
    }

    private record Entry(long position, long sequence, long length, long tail, long flushed, long last) {}

    private VhdxLog() {}

    /**
     * Finds the active sequence in {@code log} (the whole log region, read into memory) and returns its
     * replay plan; an empty plan when no valid entry carries {@code logGuid}.
     *
     * @param logFileOffset where the log region starts in the file (for error offsets and target checks)
     * @param fileSize      current file size
     */
    static Plan plan(byte[] log, UUID logGuid, long logFileOffset, long fileSize) throws VhdxFormatException {
        int length = log.length;
        int sectors = length / SECTOR;
        List<Entry> best = null;
        int p = 0;
        int visited = 0;
        while (visited < sectors) {
            Entry first = validate(log, p, logGuid, -1);
            if (first == null) {
                p = (p + SECTOR) % length;
                visited++;
                continue;
            }
            List<Entry> run = new ArrayList<>();
            run.add(first);
            long runSectors = first.length / SECTOR;
            Entry last = first;
            while (runSectors < sectors) {
                int next = (int) ((last.position + last.length) % length);
                Entry e = validate(log, next, logGuid, last.sequence + 1);
                if (e == null) {
                    break;
                }
                run.add(e);
                runSectors += e.length / SECTOR;
                last = e;
            }
            if (best == null || last.sequence > best.getLast().sequence) {
                best = run;
            }
            // Skip past the run, as qemu does; a run can only be found once.
            visited += (int) Math.min(runSectors, sectors);
            p = (int) ((last.position + last.length) % length);
        }
        if (best == null) {
            return new Plan(List.of(), 0, 0, 0, 0);
        }
        Entry head = best.getLast();
        int from = 0;
        for (int i = 0; i < best.size(); i++) {
            if (best.get(i).position == head.tail) {
                from = i;
                break;
            }
        }
        List<Update> updates = new ArrayList<>();
        long maxLast = 0;
        for (int i = from; i < best.size(); i++) {
            Entry e = best.get(i);
            long entryFileOffset = logFileOffset + e.position;
            if (e.flushed > fileSize) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, entryFileOffset,
                    "FlushedFileOffset " + e.flushed + " beyond file size " + fileSize + " (file truncated)");
            }
            if (e.last < 0 || e.last > MAX_FILE_OFFSET || e.last - fileSize > MAX_EXTENSION) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, entryFileOffset,
                    "LastFileOffset " + Long.toUnsignedString(e.last) + " is more than " + MAX_EXTENSION
                        + " bytes beyond the file size " + fileSize);
            }
            maxLast = Math.max(maxLast, e.last);
            collect(log, e, updates, logFileOffset, Math.max(fileSize, e.last));
        }
        return new Plan(updates, maxLast, head.flushed, head.sequence, best.size() - from);
    }

    /** No file we accept is larger than 64 TiB of payload plus its metadata; anything beyond is hostile. */
    static final long MAX_FILE_OFFSET = (64L << 40) + (1L << 40);

    /**
     * How far replay may extend the file (LastFileOffset beyond the current size). A writer whose session
     * header and first entry share one fdatasync (VhdxDisk) records the size after its allocations, which
     * a crash may not have made durable: up to this much (its allocations since open; past it the writer
     * syncs the extension first). The extension is sparse; a hostile log still cannot make us create a
     * multi-terabyte file.
     */
    static final long MAX_EXTENSION = 64L << 30;

    private static int u32At(byte[] log, long pos) {
        return Le.i32(log, (int) (pos % log.length));
    }

    private static long u64At(byte[] log, long pos) {
        return Le.i64(log, (int) (pos % log.length));
    }

    /** Returns the entry at {@code pos} if fully valid (and, when {@code wantSeq >= 0}, with that sequence). */
    private static Entry validate(byte[] log, int pos, UUID logGuid, long wantSeq) {
        int length = log.length;
        if (Le.i32(log, pos) != ENTRY_SIGNATURE) {
            return null;
        }
        long entryLength = Le.u32(log, pos + ENTRY_LENGTH_OFFSET);
        long tail = Le.u32(log, pos + TAIL_OFFSET);
        long seq = Le.i64(log, pos + SEQUENCE_OFFSET);
        long descCount = Le.u32(log, pos + DESCRIPTOR_COUNT_OFFSET);
        if (entryLength == 0 || entryLength % SECTOR != 0 || entryLength > length) {
            return null;
        }
        if (seq == 0 || (wantSeq >= 0 && seq != wantSeq)) {
            return null;
        }
        if (tail % SECTOR != 0 || tail >= length) {
            return null;
        }
        if (!Le.guid(log, pos + LOG_GUID_OFFSET).equals(logGuid)) {
            return null;
        }
        long totalSectors = entryLength / SECTOR;
        long descSectors = descriptorSectors(descCount);
        if (descSectors > totalSectors) {
            return null;
        }
        // Checksum over the entry (which may wrap), checksum field read as zero.
        CRC32C crc = new CRC32C();
        long remaining = entryLength;
        int at = pos;
        boolean firstChunk = true;
        while (remaining > 0) {
            int chunk = (int) Math.min(remaining, length - at);
            if (firstChunk) {
                crc.update(log, at, CHECKSUM_OFFSET);
                crc.update(new byte[4], 0, 4);
                crc.update(log, at + CHECKSUM_OFFSET + 4, chunk - CHECKSUM_OFFSET - 4);
                firstChunk = false;
            } else {
                crc.update(log, at, chunk);
            }
            remaining -= chunk;
            at = (at + chunk) % length;
        }
        if ((int) crc.getValue() != Le.i32(log, pos + CHECKSUM_OFFSET)) {
            return null;
        }
        long dataSectors = 0;
        for (long i = 0; i < descCount; i++) {
            long d = pos + HEADER_LENGTH + i * DESCRIPTOR_LENGTH;
            int sig = u32At(log, d);
            long fileOffset = u64At(log, d + DESC_FILE_OFFSET_OFFSET);
            if (u64At(log, d + DESC_SEQUENCE_OFFSET) != seq || fileOffset % SECTOR != 0 || fileOffset < 0) {
                return null;
            }
            if (sig == ZERO_SIGNATURE) {
                long zl = u64At(log, d + DESC_ZERO_LENGTH_OFFSET);
                if (zl % SECTOR != 0 || zl < 0) {
                    return null;
                }
            } else if (sig == DESC_SIGNATURE) {
                long ds = pos + (descSectors + dataSectors) * SECTOR;
                dataSectors++;
                if (descSectors + dataSectors > totalSectors) {
                    return null;
                }
                long dseq = (Integer.toUnsignedLong(u32At(log, ds + DATA_SEQ_HIGH_OFFSET)) << 32)
                    | Integer.toUnsignedLong(u32At(log, ds + DATA_SEQ_LOW_OFFSET));
                if (u32At(log, ds) != DATA_SIGNATURE || dseq != seq) {
                    return null;
                }
            } else {
                return null;
            }
        }
        return new Entry(pos, seq, entryLength, tail, Le.i64(log, pos + FLUSHED_FILE_OFFSET_OFFSET),
            Le.i64(log, pos + LAST_FILE_OFFSET_OFFSET));
    }

    private static void collect(byte[] log, Entry e, List<Update> out, long logFileOffset, long limit)
        throws VhdxFormatException {
        long descCount = Le.u32(log, (int) e.position + DESCRIPTOR_COUNT_OFFSET);
        long descSectors = descriptorSectors(descCount);
        long dataSectors = 0;
        long logEnd = logFileOffset + log.length;
        for (long i = 0; i < descCount; i++) {
            long d = e.position + HEADER_LENGTH + i * DESCRIPTOR_LENGTH;
            int sig = u32At(log, d);
            long target = u64At(log, d + DESC_FILE_OFFSET_OFFSET);
            long len = sig == ZERO_SIGNATURE ? u64At(log, d + DESC_ZERO_LENGTH_OFFSET) : SECTOR;
            long end;
            try {
                end = Math.addExact(target, len);
            } catch (ArithmeticException ex) {
                end = Long.MAX_VALUE;
            }
            long descFileOffset = logFileOffset + (d % log.length);
            if (end > limit) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, descFileOffset,
                    "descriptor targets [" + target + ", +" + len + ") beyond file end " + limit);
            }
            if (target < RegionTableDescriptor.TABLE_1_FILE_OFFSET || (target < logEnd && end > logFileOffset)) {
                throw new VhdxFormatException(Reason.LOG_NOT_REPLAYABLE, descFileOffset,
                    "descriptor targets the header section or the log itself at " + target);
            }
            if (sig == ZERO_SIGNATURE) {
                if (len > 0) {
                    out.add(new Update(target, null, len));
                }
            } else {
                long ds = e.position + (descSectors + dataSectors) * SECTOR;
                dataSectors++;
                byte[] page = new byte[SECTOR];
                Le.put64(page, 0, u64At(log, d + DESC_LEADING_OFFSET));
                int start = (int) ((ds + DATA_PAYLOAD_OFFSET) % log.length);
                System.arraycopy(log, start, page, DATA_PAYLOAD_OFFSET, DATA_PAYLOAD_LENGTH);
                Le.put32(page, SECTOR - 4, u32At(log, d + DESC_TRAILING_OFFSET));
                out.add(new Update(target, page, 0));
            }
        }
    }

    /**
     * Builds one log entry carrying {@code pages} (each 4 KiB, written to its target offset on replay).
     * Tail = {@code position}: the entry depends on no earlier entry.
     */
    static byte[] buildEntry(List<Update> pages, long sequence, UUID logGuid, long position,
                             long flushedFileOffset, long lastFileOffset) {
        int n = pages.size();
        int descSectors = (int) descriptorSectors(n);
        int total = (descSectors + n) * SECTOR;
        byte[] e = new byte[total];
        Le.put32(e, 0, ENTRY_SIGNATURE);
        Le.put32(e, ENTRY_LENGTH_OFFSET, total);
        Le.put32(e, TAIL_OFFSET, (int) position);
        Le.put64(e, SEQUENCE_OFFSET, sequence);
        Le.put32(e, DESCRIPTOR_COUNT_OFFSET, n);
        Le.putGuid(e, LOG_GUID_OFFSET, logGuid);
        Le.put64(e, FLUSHED_FILE_OFFSET_OFFSET, flushedFileOffset);
        Le.put64(e, LAST_FILE_OFFSET_OFFSET, lastFileOffset);
        for (int i = 0; i < n; i++) {
            Update u = pages.get(i);
            int d = HEADER_LENGTH + i * DESCRIPTOR_LENGTH;
            Le.put32(e, d, DESC_SIGNATURE);
            Le.put32(e, d + DESC_TRAILING_OFFSET, Le.i32(u.page(), SECTOR - 4));
            Le.put64(e, d + DESC_LEADING_OFFSET, Le.i64(u.page(), 0));
            Le.put64(e, d + DESC_FILE_OFFSET_OFFSET, u.fileOffset());
            Le.put64(e, d + DESC_SEQUENCE_OFFSET, sequence);
            int ds = (descSectors + i) * SECTOR;
            Le.put32(e, ds, DATA_SIGNATURE);
            Le.put32(e, ds + DATA_SEQ_HIGH_OFFSET, (int) (sequence >>> 32));
            System.arraycopy(u.page(), DATA_PAYLOAD_OFFSET, e, ds + DATA_PAYLOAD_OFFSET, DATA_PAYLOAD_LENGTH);
            Le.put32(e, ds + DATA_SEQ_LOW_OFFSET, (int) sequence);
        }
        Le.put32(e, CHECKSUM_OFFSET, Crc32c.compute(e, 0, total, CHECKSUM_OFFSET));
        return e;
    }

    /** Most pages one entry can carry in a log of {@code logLength} bytes. */
    static int maxPagesPerEntry(long logLength) {
        long sectors = logLength / SECTOR;
        long n = sectors - 1;
        while (n > 0 && descriptorSectors(n) + n > sectors) {
            n--;
        }
        return (int) Math.min(n, 1 << 16);
    }
}
