package io.phost.vhdx;

import java.io.IOException;

/**
 * A VHDX image is damaged, hostile or unsupported. Always names the {@link Reason} and the file offset of
 * the structure that failed, e.g. {@code BAD_CHECKSUM at fileOffset=65536: header 1 expected=0x… actual=0x…}.
 * Extends {@link IOException} so open paths declare one checked type; real I/O failures stay plain
 * {@code IOException}s.
 */
public final class VhdxFormatException extends IOException {
    /** Why the image was refused. */
    public enum Reason {
        /** A structure's signature (file identifier, "head", "regi", "metadata", "loge") is wrong. */
        BAD_SIGNATURE,
        /** A CRC-32C over a header, region table or log entry does not match. */
        BAD_CHECKSUM,
        /** Neither of the two headers is valid. */
        NO_VALID_HEADER,
        /** Header version, log version or another version field we do not implement. */
        UNSUPPORTED_VERSION,
        /** Neither region table copy is valid, or its entries are malformed. */
        BAD_REGION_TABLE,
        /** The region table names a region we do not know and marks it required. */
        UNKNOWN_REQUIRED_REGION,
        /** A region, log or metadata item lies outside the file or overlaps another structure. */
        OUT_OF_BOUNDS,
        /** Two regions (or a region and the header section or log) overlap. */
        OVERLAP,
        /** The BAT or metadata region, or a required metadata item, is absent. */
        MISSING_STRUCTURE,
        /** The metadata table or one of its items is malformed. */
        BAD_METADATA,
        /** The metadata table names an item we do not know and marks it required. */
        UNKNOWN_REQUIRED_METADATA,
        /** Block size not a power of two in 1..256 MiB. */
        BAD_BLOCK_SIZE,
        /** Virtual disk size zero, above 64 TiB, or not a multiple of the logical sector size. */
        BAD_VIRTUAL_SIZE,
        /** Logical or physical sector size other than 512 or 4096. */
        BAD_SECTOR_SIZE,
        /** The BAT region is too small for the virtual size and block size. */
        BAT_TOO_SMALL,
        /** A BAT entry has an invalid state or points outside the file or into metadata. */
        BAD_BAT_ENTRY,
        /** The log region or an entry in it is malformed in a way that prevents replay. */
        LOG_NOT_REPLAYABLE,
        /** The parent locator is missing keys, malformed, or names a parent that cannot be found. */
        BAD_PARENT_LOCATOR,
        /** The parent's DataWriteGuid matches neither parent_linkage nor parent_linkage2. */
        PARENT_LINKAGE_MISMATCH,
        /** The parent's size or sector size differs from the child's, or the chain is too deep or cyclic. */
        BAD_PARENT_CHAIN,
        /** The file is shorter than a structure it must contain. */
        TRUNCATED
    }

    private final Reason reason;
    private final long fileOffset;

    public VhdxFormatException(Reason reason, long fileOffset, String detail) {
        super(reason + " at fileOffset=" + fileOffset + ": " + detail);
        this.reason = reason;
        this.fileOffset = fileOffset;
    }

    public VhdxFormatException(Reason reason, long fileOffset, String detail, Throwable cause) {
        this(reason, fileOffset, detail);
        initCause(cause);
    }

    public Reason reason() {
        return reason;
    }

    /** Offset in the image file of the structure that failed (0 when the whole file is at fault). */
    public long fileOffset() {
        return fileOffset;
    }
}
