package io.phost.storage.nbd;

import java.io.IOException;

/** A client broke the NBD protocol so badly that the connection must close (the server stays up). */
public final class NbdProtocolException extends IOException {
    /** What was wrong. */
    public enum Reason { BAD_CLIENT_FLAGS, BAD_OPTION_MAGIC, OPTION_TOO_LONG, BAD_REQUEST_MAGIC, PAYLOAD_TOO_LONG, EOF }

    private final Reason reason;

    public NbdProtocolException(Reason reason, long streamOffset, String detail) {
        super(reason + " at streamOffset=" + streamOffset + ": " + detail);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
