package io.phost.core.vmbus;

/** A guest-written ring value failed validation; the channel owning the ring is reset. */
public final class RingException extends RuntimeException {
    public enum Reason {
        /** write_index (reader side) or read_index (writer side) outside the data area or not 8-aligned. */
        BAD_INDEX,
        /** Fewer bytes between read and write index than a descriptor plus trailer. */
        SHORT_PACKET,
        /** len8/offset8 inconsistent: offset8 < 2, offset8 > len8, or the packet runs past the write index. */
        BAD_DESCRIPTOR,
        /** Packet (plus trailer) at least as large as the ring. */
        PACKET_TOO_LARGE,
        /** Control page or data area shaped wrongly (size not a page multiple, too small or too large). */
        BAD_GEOMETRY
    }

    private final Reason reason;
    private final long ringOffset;

    public RingException(Reason reason, long ringOffset, String detail) {
        super(reason + " at ringOffset=" + ringOffset + ": " + detail);
        this.reason = reason;
        this.ringOffset = ringOffset;
    }

    public Reason reason() {
        return reason;
    }

    /** Byte offset in the data area where the bad value was found. */
    public long ringOffset() {
        return ringOffset;
    }
}
