package io.phost.vhdx;

import java.util.zip.CRC32C;

/** CRC-32C (Castagnoli) as VHDX uses it: the checksum field itself is taken as zero while summing. */
public final class Crc32c {
    private static final byte[] FOUR_ZEROS = new byte[4];

    private Crc32c() {}

    /** CRC-32C of {@code buf[off, off+len)} with the 4 bytes at {@code off + checksumOffset} read as zero. */
    public static int compute(byte[] buf, int off, int len, int checksumOffset) {
        CRC32C crc = new CRC32C();
        crc.update(buf, off, checksumOffset);
        crc.update(FOUR_ZEROS, 0, 4);
        int rest = off + checksumOffset + 4;
        crc.update(buf, rest, off + len - rest);
        return (int) crc.getValue();
    }

    /** Plain CRC-32C of {@code buf[off, off+len)}. */
    public static int compute(byte[] buf, int off, int len) {
        CRC32C crc = new CRC32C();
        crc.update(buf, off, len);
        return (int) crc.getValue();
    }
}
