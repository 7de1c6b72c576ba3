package io.phost.appliance.image;

/** A GUID partition table that cannot be used, with the reason and the byte offset it was found at. */
public final class GptException extends Exception {
    public enum Reason {
        /** The file ends before the structure the header points at. */
        TRUNCATED,
        /** LBA 1 does not start with "EFI PART". */
        BAD_SIGNATURE,
        /** Header size outside 92..512, entry size not a multiple of 128, or too many entries. */
        BAD_GEOMETRY,
        /** CRC-32 of the header or of the entry array does not match. */
        BAD_CHECKSUM,
        /** A partition's LBAs lie outside the usable range or end before they start. */
        BAD_PARTITION,
        /** No partition with the wanted name. */
        NOT_FOUND,
    }

    private final Reason reason;
    private final long fileOffset;

    public GptException(Reason reason, long fileOffset, String detail) {
        super(reason + " at fileOffset=" + fileOffset + ": " + detail);
        this.reason = reason;
        this.fileOffset = fileOffset;
    }

    public Reason reason() {
        return reason;
    }

    public long fileOffset() {
        return fileOffset;
    }
}
