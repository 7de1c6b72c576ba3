package io.phost.storage.vhost;

import java.lang.foreign.ValueLayout;

/**
 * virtio-blk wire layouts (virtio 1.2 §5.2), little-endian.
 * <pre>
 *  request   { le32 type @0; le32 reserved @4; le64 sector @8 }  data ...  { u8 status }  (last writable byte)
 *            sector is in 512-byte units whatever blk_size says
 *  discard / write-zeroes segment (16)  { le64 sector @0; le32 num_sectors @8; le32 flags @12 }  flags bit 0 = unmap
 *  config    le64 capacity @0 | le32 size_max @8 | le32 seg_max @12 | geometry @16 (4) | le32 blk_size @20
 *            | u8 physical_block_exp @24 | u8 alignment_offset @25 | le16 min_io_size @26 | le32 opt_io_size @28
 *            | u8 writeback @32 | u8 unused @33 | le16 num_queues @34
 *            | le32 max_discard_sectors @36 | le32 max_discard_seg @40 | le32 discard_sector_alignment @44
 *            | le32 max_write_zeroes_sectors @48 | le32 max_write_zeroes_seg @52 | u8 write_zeroes_may_unmap @56
 *            (60 bytes)
 * </pre>
 */
final class VirtioBlkDescriptor {
    static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;
    static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    static final int HEADER_LENGTH = 16;
    static final int TYPE_OFFSET = 0;
    static final int SECTOR_OFFSET = 8;
    static final int SECTOR_SHIFT = 9;
    static final int SEGMENT_LENGTH = 16;
    static final int ID_BYTES = 20;

    /** Request types (enum values on the wire). */
    static final int T_IN = 0;
    static final int T_OUT = 1;
    static final int T_FLUSH = 4;
    static final int T_GET_ID = 8;
    static final int T_DISCARD = 11;
    static final int T_WRITE_ZEROES = 13;

    static final byte S_OK = 0;
    static final byte S_IOERR = 1;
    static final byte S_UNSUPP = 2;

    // Feature bits.
    static final int F_SEG_MAX = 2;
    static final int F_RO = 5;
    static final int F_BLK_SIZE = 6;
    static final int F_FLUSH = 9;
    static final int F_TOPOLOGY = 10;
    static final int F_MQ = 12;
    static final int F_DISCARD = 13;
    static final int F_WRITE_ZEROES = 14;

    static final int CONFIG_LENGTH = 60;
    static final int CAPACITY_OFFSET = 0;
    static final int SEG_MAX_OFFSET = 12;
    static final int BLK_SIZE_OFFSET = 20;
    static final int PHYSICAL_BLOCK_EXP_OFFSET = 24;
    static final int MIN_IO_SIZE_OFFSET = 26;
    static final int OPT_IO_SIZE_OFFSET = 28;
    static final int WRITEBACK_OFFSET = 32;
    static final int NUM_QUEUES_OFFSET = 34;
    static final int MAX_DISCARD_SECTORS_OFFSET = 36;
    static final int MAX_DISCARD_SEG_OFFSET = 40;
    static final int DISCARD_SECTOR_ALIGNMENT_OFFSET = 44;
    static final int MAX_WRITE_ZEROES_SECTORS_OFFSET = 48;
    static final int MAX_WRITE_ZEROES_SEG_OFFSET = 52;
    static final int WRITE_ZEROES_MAY_UNMAP_OFFSET = 56;

    /** Data segments per request we advertise (seg_max); a chain has two more (header, status). */
    static final int SEG_MAX = 126;
    /** Discard segments per request we advertise (the SCSI UNMAP parameter list takes up to 64). */
    static final int MAX_DISCARD_SEG = 16;

    private VirtioBlkDescriptor() {}
}
