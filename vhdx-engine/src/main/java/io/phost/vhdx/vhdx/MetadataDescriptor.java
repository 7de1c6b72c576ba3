package io.phost.vhdx.vhdx;

import java.util.UUID;

/**
 * Metadata region: a 64 KiB table followed by the items it points to (offsets relative to the region).
 * <pre>
 *  table header                                 table entry i at 32 + 32*i
 *  +-------------------------------------+      +--------------------------------------------+
 *  | Signature "metadata" (u64)       0  |      | ItemId (GUID, 16)                       +0 |
 *  | reserved (u16)                   8  |      | Offset (u32; >= 64 KiB, or 0 if empty)  +16|
 *  | EntryCount (u16, <= 2047)       10  |      | Length (u32; <= 1 MiB)                  +20|
 *  | reserved (20 bytes)             12  |      | flags: IsUser b0, IsVirtualDisk b1,     +24|
 *  +-------------------------------------+      |        IsRequired b2                       |
 *                                               | reserved (u32)                          +28|
 *                                               +--------------------------------------------+
 *  File parameters (8): BlockSize u32 | flags u32 (LeaveBlocksAllocated b0, HasParent b1)
 *  Virtual disk size (8): u64           Virtual disk id (16): GUID
 *  Logical sector size (4): u32         Physical sector size (4): u32
 *  Parent locator:
 *  +---------------------------------------------------------------+
 *  | LocatorType GUID (16) | reserved u16 | KeyValueCount u16      |  0
 *  | entry j at 20 + 12*j: KeyOffset u32 | ValueOffset u32 |       |
 *  |                       KeyLength u16 | ValueLength u16         |
 *  | keys and values: UTF-16LE, offsets relative to the locator    |
 *  +---------------------------------------------------------------+
 * </pre>
 */
final class MetadataDescriptor {
    static final long SIGNATURE = Le.sig8("metadata");
    static final int TABLE_LENGTH = 64 * 1024;
    static final int ENTRY_COUNT_OFFSET = 10;
    static final int ENTRIES_OFFSET = 32;
    static final int ENTRY_LENGTH = 32;
    static final int MAX_ENTRIES = 2047;
    static final int ENTRY_OFFSET_OFFSET = 16;
    static final int ENTRY_LENGTH_OFFSET = 20;
    static final int ENTRY_FLAGS_OFFSET = 24;
    static final int FLAG_IS_USER = 1;
    static final int FLAG_IS_VIRTUAL_DISK = 2;
    static final int FLAG_IS_REQUIRED = 4;
    static final int MAX_ITEM_LENGTH = 1024 * 1024;

    static final UUID FILE_PARAMETERS = UUID.fromString("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
    static final UUID VIRTUAL_DISK_SIZE = UUID.fromString("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
    /** The spec calls this item "Page 83 Data": the virtual disk id that SCSI page 0x83 reports. */
    static final UUID VIRTUAL_DISK_ID = UUID.fromString("BECA12AB-B2E6-4523-93EF-C309E000C746");
    static final UUID LOGICAL_SECTOR_SIZE = UUID.fromString("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
    static final UUID PHYSICAL_SECTOR_SIZE = UUID.fromString("CDA348C7-445D-4471-9CC9-E9885251C556");
    static final UUID PARENT_LOCATOR = UUID.fromString("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

    static final UUID VHDX_PARENT_LOCATOR_TYPE = UUID.fromString("B04AEFB7-D19E-4A81-B789-25B8E9445913");
    static final int LOCATOR_HEADER_LENGTH = 20;
    static final int LOCATOR_ENTRY_LENGTH = 12;

    static final int FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED = 1;
    static final int FILE_PARAMETERS_HAS_PARENT = 2;

    static final long MAX_VIRTUAL_DISK_SIZE = 64L << 40;
    static final int MIN_BLOCK_SIZE = 1 << 20;
    static final int MAX_BLOCK_SIZE = 256 << 20;

    private MetadataDescriptor() {}
}
