package io.phost.vhdx.vhdx;

/**
 * The metadata log: a circular buffer of 4 KiB sectors at the header's LogOffset. Each entry is a header
 * sector holding descriptors, more descriptor sectors if needed, then one data sector per data descriptor.
 * <pre>
 *  entry header (64 bytes)                      descriptor (32 bytes), from byte 64 of the entry
 *  +----------------------------------+         +-----------------------------------------------+
 *  | "loge"                        0  |         | "desc": TrailingBytes u32 @4 | "zero": resvd |
 *  | Checksum (CRC-32C, entry)     4  |         | LeadingBytes u64 @8          | ZeroLength    |
 *  | EntryLength (mult. of 4K)     8  |         | FileOffset u64 @16 (4 KiB aligned)           |
 *  | Tail (offset of oldest       12  |         | SequenceNumber u64 @24 (= entry's)           |
 *  |       entry still needed)        |         +-----------------------------------------------+
 *  | SequenceNumber u64           16  |
 *  | DescriptorCount u32          24  |         data sector (4 KiB)
 *  | reserved u32                 28  |         +-----------------------------------------------+
 *  | LogGuid (= header's)         32  |         | "data" | SequenceHigh u32 | 4084 bytes of   |
 *  | FlushedFileOffset u64        48  |         | payload (bytes 8..4091 of the 4 KiB target) | |
 *  | LastFileOffset u64           56  |         | SequenceLow u32 @4092                         |
 *  +----------------------------------+         +-----------------------------------------------+
 *  A target sector = LeadingBytes (8) + data sector bytes 8..4091 (4084) + TrailingBytes (4).
 * </pre>
 * Log state as this engine writes it (tail = the entry itself, since every earlier entry was applied and
 * flushed before this one was written):
 * <pre>
 *   offset 0                                                     LogLength
 *   | e5 (seq 5, tail=e5) | e6 (seq 6, tail=e6) | e7 (torn) | ...old... |
 *                           ^ active sequence = highest valid seq = [e6]; replay writes e6's sectors
 * </pre>
 */
final class LogDescriptor {
    static final int SECTOR = 4096;
    static final int ENTRY_SIGNATURE = Le.sig4("loge");
    static final int ZERO_SIGNATURE = Le.sig4("zero");
    static final int DESC_SIGNATURE = Le.sig4("desc");
    static final int DATA_SIGNATURE = Le.sig4("data");

    static final int HEADER_LENGTH = 64;
    static final int CHECKSUM_OFFSET = 4;
    static final int ENTRY_LENGTH_OFFSET = 8;
    static final int TAIL_OFFSET = 12;
    static final int SEQUENCE_OFFSET = 16;
    static final int DESCRIPTOR_COUNT_OFFSET = 24;
    static final int LOG_GUID_OFFSET = 32;
    static final int FLUSHED_FILE_OFFSET_OFFSET = 48;
    static final int LAST_FILE_OFFSET_OFFSET = 56;

    static final int DESCRIPTOR_LENGTH = 32;
    static final int DESC_TRAILING_OFFSET = 4;
    static final int DESC_LEADING_OFFSET = 8;
    static final int DESC_ZERO_LENGTH_OFFSET = 8;
    static final int DESC_FILE_OFFSET_OFFSET = 16;
    static final int DESC_SEQUENCE_OFFSET = 24;

    static final int DATA_SEQ_HIGH_OFFSET = 4;
    static final int DATA_PAYLOAD_OFFSET = 8;
    static final int DATA_PAYLOAD_LENGTH = 4084;
    static final int DATA_SEQ_LOW_OFFSET = 4092;

    /** Largest log we read into memory; Hyper-V and qemu use 1 MiB. Larger logs are refused. */
    static final long MAX_LOG_LENGTH = 64L << 20;

    private LogDescriptor() {}

    /** Sectors holding the header and {@code count} descriptors (64 + 32 * count bytes, rounded up). */
    static long descriptorSectors(long count) {
        return (HEADER_LENGTH + DESCRIPTOR_LENGTH * count + SECTOR - 1) / SECTOR;
    }
}
