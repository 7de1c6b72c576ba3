package io.phost.vhdx.vhd;

import java.io.IOException;

/**
 * A VHD file that does not follow the format (or that we refuse to trust): names the reason and the file
 * offset of the offending field, e.g. {@code VhdFormatException: BAD_FOOTER_CHECKSUM at fileOffset=1073741824: ...}.
 */
public final class VhdFormatException extends IOException {
    /** Why the file was refused. */
    public enum Reason {
        /** No "conectix" cookie in the footer or its copy. */
        BAD_FOOTER_COOKIE,
        BAD_FOOTER_CHECKSUM,
        /** File format version is not 1.0. */
        BAD_VERSION,
        /** Disk type is not fixed (2), dynamic (3) or differencing (4). */
        BAD_DISK_TYPE,
        /** Current size is zero, not a multiple of 512, or does not match the file. */
        BAD_SIZE,
        /** Virtual size over the 2040 GiB VHD limit. */
        TOO_LARGE,
        /** Data offset of a dynamic disk does not point inside the file at a dynamic header. */
        BAD_DATA_OFFSET,
        /** No "cxsparse" cookie in the dynamic header. */
        BAD_HEADER_COOKIE,
        BAD_HEADER_CHECKSUM,
        BAD_HEADER_VERSION,
        /** Block size not a power of two between 512 bytes and 256 MiB. */
        BAD_BLOCK_SIZE,
        /** The BAT has fewer entries than the virtual size needs. */
        BAT_TOO_SMALL,
        /** The BAT does not fit inside the file, or overlaps the headers. */
        BAT_OUT_OF_FILE,
        /** A BAT entry points at a block that does not lie wholly inside the file's data area. */
        BLOCK_OUT_OF_FILE,
        /** Two BAT entries point at overlapping blocks, or a block overlaps the BAT or headers. */
        BLOCK_OVERLAP,
        /** A parent locator entry points outside the file or holds an impossible length. */
        BAD_LOCATOR,
        /** A differencing disk whose parent cannot be found through any locator. */
        PARENT_NOT_FOUND,
        /** The parent found does not carry the unique id the child was made from. */
        PARENT_MISMATCH,
        /** The parent chain is longer than we follow, or loops. */
        CHAIN_TOO_DEEP,
        /** The file is too short to hold the structures its headers describe. */
        TRUNCATED,
        /** An operation this VHD cannot do (e.g. shrink, 4 KiB sectors). */
        UNSUPPORTED
    }

    private final Reason reason;
    private final long fileOffset;
    private final String detail;

    public VhdFormatException(Reason reason, long fileOffset, String detail) {
        super(reason + " at fileOffset=" + fileOffset + ": " + detail);
        this.reason = reason;
        this.fileOffset = fileOffset;
        this.detail = detail;
    }

    /** The message without the reason code and offset, for users (a refused request is not a damaged file). */
    public String detail() {
        return detail;
    }

    public Reason reason() {
        return reason;
    }

    public long fileOffset() {
        return fileOffset;
    }
}
