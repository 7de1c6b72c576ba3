package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.zip.CRC32C;

/**
 * One 4 KiB record of the SIGKILL soak: magic, round, record number, slot, a payload derived from those three,
 * and a CRC32C of everything before it. The slot (the record's 4 KiB place on the disk) is a hash of round and
 * number, so records overwrite earlier rounds' records now and then.
 */
final class KillSoakRecord {
    static final int SIZE = 4096;
    private static final long MAGIC = 0x50484F53_4B494C4CL; // "PHOSKILL"
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final int CRC_AT = SIZE - 8;

    /** What a slot holds: nothing (zeros), a record (round, number), or something else (corrupt). */
    record Content(boolean zero, long round, long number, String corruption) {
        boolean newerThanOrSame(long r, long n) {
            return round > r || (round == r && number >= n);
        }
    }

    private KillSoakRecord() {
    }

    static long slots(long diskSize) {
        return diskSize / SIZE;
    }

    static long slotOf(long round, long number, long slots) {
        long x = round * 0x9E3779B97F4A7C15L + number * 0xC2B2AE3D27D4EB4FL;
        x ^= x >>> 31;
        x *= 0xBF58476D1CE4E5B9L;
        x ^= x >>> 29;
        return Long.remainderUnsigned(x, slots);
    }

    static void fill(MemorySegment b, long round, long number, long slot) {
        b.set(U64, 0, MAGIC);
        b.set(U64, 8, round);
        b.set(U64, 16, number);
        b.set(U64, 24, slot);
        long x = round * 31 + number * 0x9E3779B97F4A7C15L + slot;
        for (int i = 32; i < CRC_AT; i += 8) {
            x = x * 6364136223846793005L + 1442695040888963407L;
            b.set(U64, i, x);
        }
        b.set(U64, CRC_AT, crc(b));
    }

    private static long crc(MemorySegment b) {
        CRC32C c = new CRC32C();
        c.update(b.asSlice(0, CRC_AT).asByteBuffer());
        return c.getValue();
    }

    /**
     * Reads what {@code b} holds at {@code slot} of a disk with {@code slots} slots: zeros, or a record whose
     * checksum, slot, hash and every payload byte are right; anything else is a corruption.
     */
    static Content parse(MemorySegment b, long slot, long slots, MemorySegment scratch) {
        if (b.mismatch(scratch.fill((byte) 0)) == -1) {
            return new Content(true, -1, -1, null);
        }
        long round = b.get(U64, 8);
        long number = b.get(U64, 16);
        String bad = null;
        if (b.get(U64, 0) != MAGIC) {
            bad = "no record magic";
        } else if (b.get(U64, CRC_AT) != crc(b)) {
            bad = "checksum mismatch";
        } else if (b.get(U64, 24) != slot || round < 0 || number < 0 || slotOf(round, number, slots) != slot) {
            bad = "record " + round + "/" + number + " in the wrong slot";
        } else {
            fill(scratch, round, number, slot);
            if (b.mismatch(scratch) != -1) {
                bad = "payload differs at byte " + b.mismatch(scratch);
            }
        }
        return new Content(false, round, number, bad == null ? null : "slot " + slot + ": " + bad);
    }
}
