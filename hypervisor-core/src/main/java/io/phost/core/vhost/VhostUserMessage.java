package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.core.vhost.VhostUserDescriptor.*;

/**
 * A flyweight over one received message (header + payload) in a buffer the connection owns. The parse
 * step owns validation: {@link #parseHeader} checks version, direction, size limit and request code;
 * {@link #checkShape} checks the payload size and descriptor count the request requires. Handlers then
 * read fields without re-checking lengths.
 */
public final class VhostUserMessage {
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    private final MemorySegment buffer;
    private VhostUserRequest request;
    private int flags;
    private int size;
    private int fdCount;

    /** @param buffer at least {@code HEADER_LENGTH + MAX_PAYLOAD} bytes */
    public VhostUserMessage(MemorySegment buffer) {
        if (buffer.byteSize() < HEADER_LENGTH + MAX_PAYLOAD) {
            throw new IllegalArgumentException("message buffer too small: " + buffer.byteSize());
        }
        this.buffer = buffer;
    }

    public MemorySegment buffer() {
        return buffer;
    }

    /**
     * Decodes the 12-byte header at the start of the buffer.
     *
     * @return the payload size the header announces (to be read next)
     */
    public int parseHeader() {
        int code = buffer.get(U32, REQUEST_OFFSET);
        flags = buffer.get(U32, FLAGS_OFFSET);
        long announced = buffer.get(U32, SIZE_OFFSET) & 0xFFFFFFFFL;
        request = null;
        size = 0;
        if ((flags & VERSION_MASK) != VERSION) {
            throw new VhostUserException(VhostUserException.Reason.BAD_HEADER,
                "request " + Integer.toUnsignedString(code) + " flags 0x" + Integer.toHexString(flags) + ": version " + (flags & VERSION_MASK) + ", expected 1");
        }
        if ((flags & FLAG_REPLY) != 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_HEADER,
                "request " + Integer.toUnsignedString(code) + " has the REPLY flag: the front-end sends requests, not replies");
        }
        if (announced > MAX_PAYLOAD) {
            throw new VhostUserException(VhostUserException.Reason.BAD_SIZE,
                "request " + Integer.toUnsignedString(code) + " payload " + announced + " bytes, at most " + MAX_PAYLOAD);
        }
        VhostUserRequest r = VhostUserRequest.of(code);
        if (r == null) {
            throw new VhostUserException(VhostUserException.Reason.UNSUPPORTED_REQUEST, "request code " + Integer.toUnsignedString(code));
        }
        request = r;
        size = (int) announced;
        return size;
    }

    /** Checks the payload size and descriptor count against what {@link #request()} requires. */
    public void checkShape(int fds) {
        this.fdCount = fds;
        if (request.payloadSize != VARIABLE && request.payloadSize != size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_SIZE,
                request + " payload " + size + " bytes, expected " + request.payloadSize);
        }
        if (request.fds != VARIABLE && request.fds != fds) {
            throw new VhostUserException(VhostUserException.Reason.BAD_FD_COUNT,
                request + " carried " + fds + " descriptors, expected " + request.fds);
        }
    }

    public VhostUserRequest request() {
        return request;
    }

    public int flags() {
        return flags;
    }

    public boolean needReply() {
        return (flags & FLAG_NEED_REPLY) != 0;
    }

    /** Payload size in bytes. */
    public int size() {
        return size;
    }

    public int fdCount() {
        return fdCount;
    }

    /** u32 at {@code offset} into the payload (the caller checked the size). */
    public int u32(int offset) {
        return buffer.get(U32, HEADER_LENGTH + offset);
    }

    /** Unsigned u16 at {@code offset} into the payload. */
    public int u16(int offset) {
        return buffer.get(ValueLayout.JAVA_SHORT_UNALIGNED, HEADER_LENGTH + offset) & 0xFFFF;
    }

    /** u64 at {@code offset} into the payload. */
    public long u64(int offset) {
        return buffer.get(U64, HEADER_LENGTH + offset);
    }

    /** Requires at least {@code min} payload bytes. */
    public void requireSize(int min) {
        if (size < min) {
            throw new VhostUserException(VhostUserException.Reason.BAD_SIZE, request + " payload " + size + " bytes, need at least " + min);
        }
    }
}
