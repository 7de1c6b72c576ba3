package io.phost.core.vmbus;

/** A control-socket message broke the channel-management protocol. */
public final class VmbusProtocolException extends RuntimeException {
    public enum Reason {
        /** Shorter than its type's fixed layout, or longer than {@link ChannelMessage#MAX_LENGTH}. */
        BAD_LENGTH,
        /** A message type this side never accepts, or not in the current state. */
        UNEXPECTED,
        /** A relid that names no offered channel, or a channel in the wrong state. */
        BAD_RELID,
        /** Wrong or missing descriptors (memfd, eventfds) with a message. */
        BAD_FDS,
        /** Attach refused: unknown partition, wrong credential, wrong peer pid, memory too small or unsealed. */
        NOT_AUTHORISED,
        /** No common protocol version. */
        VERSION,
        /** More control messages than the rate limit allows. */
        FLOOD,
        /** Ring GPADL or offsets unusable for a channel. */
        BAD_RING
    }

    private final Reason reason;

    public VmbusProtocolException(Reason reason, int msgType, String detail) {
        super(reason + " in " + ChannelMessage.name(msgType) + ": " + detail);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
