package io.phost.core.vmbus;

/** A guest-supplied guest-physical address, page list or GPADL failed validation. */
public final class GuestMemoryException extends RuntimeException {
    public enum Reason {
        /** Address or page frame number beyond the partition's memory. */
        OUT_OF_RANGE,
        /** A page the guest has not granted in a live GPADL. */
        NOT_GRANTED,
        /** A data range that overlaps the pages of an open channel's ring. */
        RING_OVERLAP,
        /** A malformed range: offset in page >= 4096, zero or negative length, page count mismatch. */
        BAD_RANGE,
        /** More ranges or pages than the limits allow (the message's size never sizes an allocation). */
        TOO_MANY,
        /** GPADL handle unknown, duplicate, or still in use by an open channel. */
        BAD_GPADL
    }

    private final Reason reason;
    private final long gpa;

    public GuestMemoryException(Reason reason, long gpa, String detail) {
        super(reason + " at gpa=0x" + Long.toHexString(gpa) + ": " + detail);
        this.reason = reason;
        this.gpa = gpa;
    }

    public Reason reason() {
        return reason;
    }

    /** The guest-physical address (or page number * 4096) that failed. */
    public long gpa() {
        return gpa;
    }
}
