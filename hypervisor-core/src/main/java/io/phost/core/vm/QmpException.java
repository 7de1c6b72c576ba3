package io.phost.core.vm;

/** A QMP failure: what went wrong, and where in the message when it is a parse error. */
public final class QmpException extends RuntimeException {
    public enum Reason {
        /** Not JSON, or JSON that is not a QMP message (offset is the character where parsing stopped). */
        MALFORMED,
        /** A message longer than the client accepts. */
        TOO_LONG,
        /** QEMU answered {"error": ...}. */
        COMMAND_FAILED,
        /** No answer within the timeout. */
        TIMEOUT,
        /** The socket could not be reached, or closed (QEMU exited). */
        DISCONNECTED
    }

    private final Reason reason;
    private final long offset;

    public QmpException(Reason reason, long offset, String message) {
        super(reason + (offset >= 0 ? " at offset=" + offset : "") + ": " + message);
        this.reason = reason;
        this.offset = offset;
    }

    public QmpException(Reason reason, String message) {
        this(reason, -1, message);
    }

    public Reason reason() {
        return reason;
    }

    /** Character offset in the message for MALFORMED, else -1. */
    public long offset() {
        return offset;
    }
}
