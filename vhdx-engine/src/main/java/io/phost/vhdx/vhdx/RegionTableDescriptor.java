package io.phost.vhdx.vhdx;

import java.util.UUID;

/**
 * Region table (two identical copies at 192 KiB and 256 KiB; 64 KiB each; CRC-32C over all 64 KiB).
 * <pre>
 *   0                   1                   2                   3
 *  +---------------------------------------------------------------+
 *  |                    Signature "regi"                           |  0
 *  |                    Checksum                                   |  4
 *  |                    EntryCount (u32, at most 2047)             |  8
 *  |                    reserved (u32)                             | 12
 *  +---------------------------------------------------------------+
 *  | entry i at 16 + 32*i:                                         |
 *  |   Guid (16)                                                   | +0
 *  |   FileOffset (u64, multiple of 1 MiB, >= 1 MiB)               | +16
 *  |   Length (u32, multiple of 1 MiB)                             | +24
 *  |   Required (bit 0 of u32)                                     | +28
 *  +---------------------------------------------------------------+
 * </pre>
 */
final class RegionTableDescriptor {
    static final long TABLE_1_FILE_OFFSET = 192 * 1024;
    static final long TABLE_2_FILE_OFFSET = 256 * 1024;
    static final int TABLE_LENGTH = 64 * 1024;
    static final int SIGNATURE = Le.sig4("regi");
    static final int CHECKSUM_OFFSET = 4;
    static final int ENTRY_COUNT_OFFSET = 8;
    static final int ENTRIES_OFFSET = 16;
    static final int ENTRY_LENGTH = 32;
    static final int MAX_ENTRIES = 2047;
    static final int ENTRY_GUID_OFFSET = 0;
    static final int ENTRY_FILE_OFFSET_OFFSET = 16;
    static final int ENTRY_LENGTH_OFFSET = 24;
    static final int ENTRY_REQUIRED_OFFSET = 28;

    static final UUID BAT_REGION = UUID.fromString("2DC27766-F623-4200-9D64-115E9BFD4A08");
    static final UUID METADATA_REGION = UUID.fromString("8B7CA206-4790-4B9A-B8FE-575F050F886E");

    static final long ALIGNMENT = 1024 * 1024;

    private RegionTableDescriptor() {}

    static long tableFileOffset(int copy) {
        return copy == 0 ? TABLE_1_FILE_OFFSET : TABLE_2_FILE_OFFSET;
    }
}
