package io.phost.core.vhost;

/**
 * Front-end → back-end requests (QEMU {@code docs/interop/vhost-user.rst}, "Front-end message types"),
 * with the payload size and descriptor count each must carry. {@link VhostUserDescriptor#VARIABLE} payloads are checked
 * by the handler (memory table: 8 + 32 * n; config: 12 + size). Codes not listed are rejected.
 */
public enum VhostUserRequest {
    GET_FEATURES(1, 0, 0),
    SET_FEATURES(2, 8, 0),
    SET_OWNER(3, 0, 0),
    RESET_OWNER(4, 0, 0),
    SET_MEM_TABLE(5, VhostUserDescriptor.VARIABLE, VhostUserDescriptor.VARIABLE),
    SET_LOG_BASE(6, VhostUserDescriptor.VARIABLE, VhostUserDescriptor.VARIABLE),
    SET_LOG_FD(7, 0, 1),
    SET_VRING_NUM(8, 8, 0),
    SET_VRING_ADDR(9, 40, 0),
    SET_VRING_BASE(10, 8, 0),
    GET_VRING_BASE(11, 8, 0),
    SET_VRING_KICK(12, 8, VhostUserDescriptor.VARIABLE),
    SET_VRING_CALL(13, 8, VhostUserDescriptor.VARIABLE),
    SET_VRING_ERR(14, 8, VhostUserDescriptor.VARIABLE),
    GET_PROTOCOL_FEATURES(15, 0, 0),
    SET_PROTOCOL_FEATURES(16, 8, 0),
    GET_QUEUE_NUM(17, 0, 0),
    SET_VRING_ENABLE(18, 8, 0),
    SEND_RARP(19, 8, 0),
    NET_SET_MTU(20, 8, 0),
    SET_BACKEND_REQ_FD(21, 0, 1),
    IOTLB_MSG(22, VhostUserDescriptor.VARIABLE, 0),
    SET_VRING_ENDIAN(23, 8, 0),
    GET_CONFIG(24, VhostUserDescriptor.VARIABLE, 0),
    SET_CONFIG(25, VhostUserDescriptor.VARIABLE, 0),
    GET_INFLIGHT_FD(31, VhostUserDescriptor.VARIABLE, 0),
    SET_INFLIGHT_FD(32, VhostUserDescriptor.VARIABLE, 1),
    RESET_DEVICE(34, 0, 0),
    VRING_KICK(35, 8, 0),
    GET_MAX_MEM_SLOTS(36, 0, 0),
    ADD_MEM_REG(37, 40, 1),
    REM_MEM_REG(38, 40, VhostUserDescriptor.VARIABLE),
    SET_STATUS(39, 8, 0),
    GET_STATUS(40, 0, 0);

    private static VhostUserRequest[] byCode;

    /** The 32-bit request code on the wire. */
    public final int code;
    /** Exact payload size, or {@link VhostUserDescriptor#VARIABLE}. */
    public final int payloadSize;
    /** Exact descriptor count, or {@link VhostUserDescriptor#VARIABLE}. */
    public final int fds;

    VhostUserRequest(int code, int payloadSize, int fds) {
        this.code = code;
        this.payloadSize = payloadSize;
        this.fds = fds;
    }

    /** The request for {@code code}, or null when unknown. */
    public static VhostUserRequest of(int code) {
        VhostUserRequest[] t = byCode;
        if (t == null) {
            t = new VhostUserRequest[64];
            for (VhostUserRequest r : values()) {
                t[r.code] = r;
            }
            byCode = t;
        }
        return code > 0 && code < t.length ? t[code] : null;
    }
}
