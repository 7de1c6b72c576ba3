package io.phost.vhdx.vhdx;

/**
 * The header section: the first 1 MiB of every VHDX file.
 * <pre>
 *  file offset
 *  0        +-------------------------------------------+
 *           | File type identifier  (64 KiB)            |  "vhdxfile" (8) + Creator (UTF-16LE, 512)
 *  64 KiB   +-------------------------------------------+
 *           | Header 1              (4 KiB used of 64)  |
 *  128 KiB  +-------------------------------------------+
 *           | Header 2              (4 KiB used of 64)  |
 *  192 KiB  +-------------------------------------------+
 *           | Region table 1        (64 KiB)            |
 *  256 KiB  +-------------------------------------------+
 *           | Region table 2        (64 KiB)            |
 *  320 KiB  +-------------------------------------------+
 *           | reserved up to 1 MiB                      |
 *  1 MiB    +-------------------------------------------+
 * </pre>
 * One header (little-endian; CRC-32C over the 4 KiB with the checksum field taken as zero):
 * <pre>
 *   0                   1                   2                   3
 *  +---------------------------------------------------------------+
 *  |                    Signature "head"                           |  0
 *  |                    Checksum (CRC-32C over 4 KiB)              |  4
 *  |                    SequenceNumber (u64)                       |  8
 *  |  FileWriteGuid (16) | DataWriteGuid (16) | LogGuid (16)       | 16
 *  |  LogVersion (u16)   | Version (u16)                           | 64
 *  |                    LogLength (u32)                            | 68
 *  |                    LogOffset (u64)                            | 72
 *  |                    reserved (4016 bytes, zero)                | 80
 *  +---------------------------------------------------------------+
 * </pre>
 * Which header is current: the valid one with the larger SequenceNumber. An update writes the new header
 * (sequence + 1) over the non-current slot, flushes, and then does it once more so that both copies hold
 * the newest state:
 * <pre>
 *   before:  H1 seq=7 (current)   H2 seq=6
 *   step 1:  H1 seq=7             H2 seq=8 (current)   flush
 *   step 2:  H1 seq=9 (current)   H2 seq=8             flush
 * </pre>
 * A torn step leaves the other copy valid, so the file always has a current header.
 */
final class VhdxHeaderDescriptor {
    static final long FILE_IDENTIFIER_SIGNATURE = Le.sig8("vhdxfile");
    static final int CREATOR_OFFSET = 8;
    static final int CREATOR_LENGTH = 512;

    static final long HEADER_1_FILE_OFFSET = 64 * 1024;
    static final long HEADER_2_FILE_OFFSET = 128 * 1024;
    static final int HEADER_LENGTH = 4096;

    static final int SIGNATURE = Le.sig4("head");
    static final int SIGNATURE_OFFSET = 0;
    static final int CHECKSUM_OFFSET = 4;
    static final int SEQUENCE_NUMBER_OFFSET = 8;
    static final int FILE_WRITE_GUID_OFFSET = 16;
    static final int DATA_WRITE_GUID_OFFSET = 32;
    static final int LOG_GUID_OFFSET = 48;
    static final int LOG_VERSION_OFFSET = 64;
    static final int VERSION_OFFSET = 66;
    static final int LOG_LENGTH_OFFSET = 68;
    static final int LOG_OFFSET_OFFSET = 72;

    static final int VERSION = 1;
    static final int LOG_VERSION = 0;

    /** End of the header section; the first region may start here. */
    static final long HEADER_SECTION_LENGTH = 1024 * 1024;

    private VhdxHeaderDescriptor() {}

    static long headerFileOffset(int slot) {
        return slot == 0 ? HEADER_1_FILE_OFFSET : HEADER_2_FILE_OFFSET;
    }
}
