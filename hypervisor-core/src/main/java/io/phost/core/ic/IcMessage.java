package io.phost.core.ic;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.UUID;

/**
 * Integration-service messages, one per inband VMBus packet (a simplified {@code icmsg_hdr}).
 * <pre>
 *  0            2            4                  8                          16
 *  | msgtype u16 | status u16 | payload_len u32  | seq u64                  | payload ...
 *
 *  HEARTBEAT (1)  host→guest payload: u64 sequence; guest completes (type 11, same trans_id) with sequence+1
 *  SHUTDOWN  (2)  host→guest payload: u32 flags (1 = reboot), reason UTF-8; guest completes with status 0,
 *                 then shuts itself down
 *  TIMESYNC  (3)  host→guest payload: u64 host wall clock (ns since the epoch) @16, u64 flags @24 (1 = sync now)
 *  KVP       (4)  payload: u8 op @16 (1 SET, 2 DELETE, 3 GUEST_SET, 4 GUEST_DELETE) | u8 pool @17 |
 *                 u16 key_len @18 | u16 value_len @20 | u16 reserved @22 | key @24 | value
 *                 SET/DELETE host→guest (the "external" pool); GUEST_* guest→host (the guest's own pairs)
 *  VSS       (5)  host→guest payload: u32 op @16 (1 FREEZE, 2 THAW), u32 timeout_ms @20 (FREEZE: the guest thaws
 *                 by itself after it); guest completes with status 0 (done: FREEZE = writes flushed and held),
 *                 1 (the guest has nothing that can freeze), 2 (freezing failed or timed out), 3 (THAW: was not frozen)
 * </pre>
 * Keys are at most 512 bytes and values 2048 (Hyper-V's HV_KVP_EXCHANGE_MAX_*_SIZE); a side receiving
 * more treats it as a protocol fault.
 */
public final class IcMessage {
    public static final int HEARTBEAT = 1;
    public static final int SHUTDOWN = 2;
    public static final int TIMESYNC = 3;
    public static final int KVP = 4;
    public static final int VSS = 5;
    public static final int VSS_OP = 16;
    public static final int VSS_TIMEOUT_MS = 20;
    public static final int VSS_FREEZE = 1;
    public static final int VSS_THAW = 2;
    public static final int VSS_OK = 0;
    public static final int VSS_UNSUPPORTED = 1;
    public static final int VSS_FAILED = 2;
    public static final int VSS_NOT_FROZEN = 3;

    public static final int MSGTYPE = 0;
    public static final int STATUS = 2;
    public static final int PAYLOAD_LEN = 4;
    public static final int SEQ = 8;
    public static final int PAYLOAD = 16;

    public static final int KVP_OP = 16;
    public static final int KVP_POOL = 17;
    public static final int KVP_KEY_LEN = 18;
    public static final int KVP_VALUE_LEN = 20;
    public static final int KVP_KEY = 24;
    public static final int KVP_SET = 1;
    public static final int KVP_DELETE = 2;
    public static final int KVP_GUEST_SET = 3;
    public static final int KVP_GUEST_DELETE = 4;
    public static final int MAX_KEY = 512;
    public static final int MAX_VALUE = 2048;
    public static final int MAX_ENTRIES = 1024;
    public static final int MAX_MESSAGE = KVP_KEY + MAX_KEY + MAX_VALUE;

    /** Hyper-V's integration-service device class GUIDs. */
    public static final UUID HEARTBEAT_TYPE = UUID.fromString("57164f39-9115-4e78-ab55-382f3bd5422d");
    public static final UUID SHUTDOWN_TYPE = UUID.fromString("0e0b6031-5213-4934-818b-38d90ced39db");
    public static final UUID TIMESYNC_TYPE = UUID.fromString("9527e630-d0ae-497b-adce-e80ab0175caf");
    public static final UUID KVP_TYPE = UUID.fromString("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6");
    public static final UUID VSS_TYPE = UUID.fromString("35fa2e29-ea23-4236-96ae-3a6ebacba440");

    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private IcMessage() {}

    static void header(MemorySegment m, int type, int payloadLength, long seq) {
        m.set(U16, MSGTYPE, (short) type);
        m.set(U16, STATUS, (short) 0);
        m.set(U32, PAYLOAD_LEN, payloadLength);
        m.set(U64, SEQ, seq);
    }

    static UUID instanceFor(String partition, UUID type) {
        return UUID.nameUUIDFromBytes((partition + "/" + type).getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }
}
