package io.phost.storage.nbd;

/**
 * NBD protocol constants (newstyle fixed handshake, structured replies; see the NBD protocol document,
 * doc/proto.md in the nbd project). All integers are big-endian.
 *
 * <pre>
 * handshake (server):  "NBDMAGIC" u64 | "IHAVEOPT" u64 | u16 handshake flags (FIXED_NEWSTYLE|NO_ZEROES)
 * handshake (client):  u32 client flags
 * option  (client):    "IHAVEOPT" u64 | u32 option | u32 length | data[length]
 * option reply:        0x3e889045565a9 u64 | u32 option | u32 reply type | u32 length | data
 * request (28 bytes):  0x25609513 u32 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length | [write data]
 * simple reply (16):   0x67446698 u32 | u32 error | u64 cookie | [read data]
 * structured chunk:    0x668e33ef u32 | u16 flags (DONE=1) | u16 type | u64 cookie | u32 length | payload
 *   OFFSET_DATA (1):   u64 offset | data            ERROR (32769): u32 error | u16 msg length | msg
 *   BLOCK_STATUS (5):  u32 context id | { u32 extent length | u32 status flags } ...
 * </pre>
 */
final class NbdDescriptor {
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final long OPTION_REPLY_MAGIC = 0x3e889045565a9L;
    static final int REQUEST_MAGIC = 0x25609513;
    static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    static final int STRUCTURED_REPLY_MAGIC = 0x668e33ef;

    static final int FLAG_FIXED_NEWSTYLE = 1;
    static final int FLAG_NO_ZEROES = 2;
    static final int FLAG_C_FIXED_NEWSTYLE = 1;
    static final int FLAG_C_NO_ZEROES = 2;

    static final int OPT_EXPORT_NAME = 1;
    static final int OPT_ABORT = 2;
    static final int OPT_LIST = 3;
    static final int OPT_STARTTLS = 5;
    static final int OPT_INFO = 6;
    static final int OPT_GO = 7;
    static final int OPT_STRUCTURED_REPLY = 8;
    static final int OPT_LIST_META_CONTEXT = 9;
    static final int OPT_SET_META_CONTEXT = 10;

    static final int REP_ACK = 1;
    static final int REP_SERVER = 2;
    static final int REP_INFO = 3;
    static final int REP_META_CONTEXT = 4;
    static final int REP_ERR_UNSUP = 0x80000001;
    static final int REP_ERR_POLICY = 0x80000002;
    static final int REP_ERR_INVALID = 0x80000003;
    static final int REP_ERR_UNKNOWN = 0x80000006;
    static final int REP_ERR_TOO_BIG = 0x80000009;

    static final int INFO_EXPORT = 0;
    static final int INFO_NAME = 1;
    static final int INFO_DESCRIPTION = 2;
    static final int INFO_BLOCK_SIZE = 3;

    static final int TF_HAS_FLAGS = 1;
    static final int TF_READ_ONLY = 2;
    static final int TF_SEND_FLUSH = 4;
    static final int TF_SEND_FUA = 8;
    static final int TF_SEND_TRIM = 32;
    static final int TF_SEND_WRITE_ZEROES = 64;
    static final int TF_SEND_DF = 128;
    static final int TF_CAN_MULTI_CONN = 256;

    static final int CMD_READ = 0;
    static final int CMD_WRITE = 1;
    static final int CMD_DISC = 2;
    static final int CMD_FLUSH = 3;
    static final int CMD_TRIM = 4;
    static final int CMD_CACHE = 5;
    static final int CMD_WRITE_ZEROES = 6;
    static final int CMD_BLOCK_STATUS = 7;

    static final int CMD_FLAG_FUA = 1;
    static final int CMD_FLAG_NO_HOLE = 2;
    static final int CMD_FLAG_DF = 4;
    static final int CMD_FLAG_REQ_ONE = 8;
    static final int CMD_FLAG_FAST_ZERO = 16;

    static final int REPLY_FLAG_DONE = 1;
    static final int REPLY_TYPE_NONE = 0;
    static final int REPLY_TYPE_OFFSET_DATA = 1;
    static final int REPLY_TYPE_BLOCK_STATUS = 5;
    static final int REPLY_TYPE_ERROR = 32769;

    static final int STATE_HOLE = 1;
    static final int STATE_ZERO = 2;

    static final int EPERM = 1;
    static final int EIO = 5;
    static final int ENOMEM = 12;
    static final int EINVAL = 22;
    static final int ENOSPC = 28;
    static final int EOVERFLOW = 75;
    static final int ENOTSUP = 95;
    static final int ESHUTDOWN = 108;

    static final String BASE_ALLOCATION = "base:allocation";
    static final int BASE_ALLOCATION_ID = 1;

    private NbdDescriptor() {}
}
