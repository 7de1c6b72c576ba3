package io.phost.core.vhost;

/**
 * A vhost-user front-end (the VMM) or its driver broke the protocol: a malformed message, a memory table
 * that cannot be trusted, or a virtqueue that points outside guest memory. Fatal for that device's
 * connection only; the backend logs it, drops the connection and waits for the next one.
 *
 * <p>The message names what and where: {@code BAD_SIZE: SET_VRING_ADDR payload 12 bytes, expected 40}.
 */
public final class VhostUserException extends RuntimeException {
    /** What went wrong. */
    public enum Reason {
        /** Header flags do not carry version 1, or a reply where a request was expected. */
        BAD_HEADER,
        /** Payload size differs from the request's fixed size, or exceeds the largest message. */
        BAD_SIZE,
        /** Wrong number of descriptors attached (SCM_RIGHTS) for the request. */
        BAD_FD_COUNT,
        /** A request code this backend does not know or does not implement. */
        UNSUPPORTED_REQUEST,
        /** A request that is not valid now (e.g. a ring address before its size). */
        BAD_STATE,
        /** A memory region that is empty, overlapping, wraps the address space or exceeds its file. */
        BAD_REGION,
        /** A guest or user address range not wholly inside the memory table. */
        ADDRESS_NOT_MAPPED,
        /** A queue index beyond the advertised queues. */
        BAD_QUEUE_INDEX,
        /** A queue size that is zero, above 32768 or not a power of two. */
        BAD_QUEUE_SIZE,
        /** A ring address not aligned as the virtio spec requires. */
        BAD_ALIGNMENT,
        /** Feature bits the backend did not offer. */
        BAD_FEATURES,
        /** A config-space access outside the device's config. */
        BAD_CONFIG,
        /** The driver's avail index moved by more than the queue size. */
        AVAIL_INDEX_JUMP,
        /** A head or next index not below the queue size. */
        BAD_DESCRIPTOR_INDEX,
        /** A chain longer than its table (a loop) or than the walker's capacity. */
        CHAIN_TOO_LONG,
        /** An indirect descriptor that is nested, chained, empty or not a multiple of 16 bytes. */
        BAD_INDIRECT,
        /** A device-readable descriptor after a device-writable one. */
        BAD_DESCRIPTOR_ORDER
    }

    private final Reason reason;

    public VhostUserException(Reason reason, String detail) {
        super(reason + ": " + detail);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
