package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.scsi.ScsiRequest.U16;

/**
 * Fixed-format sense data (SPC-4 4.5.3), the one writer of it: CHECK CONDITION autosense, REQUEST SENSE, and
 * the errors a transport reports before a command reaches the core (storvsc).
 * <pre>
 *   0: 0x70 (current, fixed)   2: sense key   7: additional length (10)
 *  12: ASC   13: ASCQ          15: SKSV | C/D  16-17: field pointer (ILLEGAL REQUEST only)
 * </pre>
 */
public final class SenseData {
    private SenseData() {}

    /**
     * Writes {@link Scsi#FIXED_SENSE_LENGTH} bytes to {@code dst}; a non-negative {@code fieldByte} adds the
     * sense-key-specific field pointer (SKSV=1, C/D = {@code inCdb > 0}) naming the offending byte.
     */
    public static void writeFixed(MemorySegment dst, int senseKey, int ascAscq, int fieldByte, int inCdb) {
        dst.asSlice(0, Scsi.FIXED_SENSE_LENGTH).fill((byte) 0);
        dst.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x70);
        dst.set(ValueLayout.JAVA_BYTE, 2, (byte) senseKey);
        dst.set(ValueLayout.JAVA_BYTE, 7, (byte) (Scsi.FIXED_SENSE_LENGTH - 8));
        dst.set(ValueLayout.JAVA_BYTE, 12, (byte) (ascAscq >>> 8));
        dst.set(ValueLayout.JAVA_BYTE, 13, (byte) ascAscq);
        if (fieldByte >= 0) {
            dst.set(ValueLayout.JAVA_BYTE, 15, (byte) (0x80 | (inCdb > 0 ? 0x40 : 0)));
            dst.set(U16, 16, (short) fieldByte);
        }
    }
}
