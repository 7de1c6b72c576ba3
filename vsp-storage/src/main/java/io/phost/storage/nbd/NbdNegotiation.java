package io.phost.storage.nbd;

import io.phost.storage.nbd.NbdServer.Export;
import io.phost.vhdx.DiskCapabilities;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static io.phost.storage.nbd.NbdDescriptor.*;

/**
 * The NBD handshake (fixed newstyle, with structured replies, INFO/GO, LIST and base:allocation meta
 * contexts): option haggling until the client picks an export or leaves. Runs on the connection's reader
 * thread before transmission; allocates freely (it happens once per client). Its outcome is
 * {@link #export()}, {@link #structured()} and {@link #baseAllocation()}.
 */
final class NbdNegotiation {
    /** Largest option payload read into {@code in}; longer ones (up to 1 MiB) are skipped and refused. */
    static final int MAX_OPTION_LENGTH = 16 << 10;

    /** The connection's socket as the handshake needs it (reads count toward the stream offset). */
    interface Wire {
        void readFully(ByteBuffer b) throws IOException;

        void writeFully(ByteBuffer b) throws IOException;

        void writeFully(ByteBuffer... bufs) throws IOException;

        /** Bytes read from the client so far: protocol errors name where they happened. */
        long streamOffset();
    }

    private final Wire wire;
    private final ByteBuffer in;
    private final ByteBuffer out;
    private final Map<String, Export> exports;
    private boolean structured;
    private boolean baseAllocation;
    private NbdDirtyBitmap selectedBitmap;
    private Export export;

    NbdNegotiation(Wire wire, ByteBuffer in, ByteBuffer out, Map<String, Export> exports) {
        this.wire = wire;
        this.in = in;
        this.out = out;
        this.exports = exports;
    }

    Export export() {
        return export;
    }

    boolean structured() {
        return structured;
    }

    boolean baseAllocation() {
        return baseAllocation;
    }

    /** The dirty bitmap the client selected, if it belongs to the export it went on with; else null. */
    NbdDirtyBitmap dirtyBitmap() {
        return export != null && export.dirtyBitmap() == selectedBitmap ? selectedBitmap : null;
    }

    private ByteBuffer readIn(int n) throws IOException {
        in.clear().limit(n);
        wire.readFully(in);
        in.flip();
        return in;
    }

    private void skip(long n) throws IOException {
        while (n > 0) {
            int chunk = (int) Math.min(n, in.capacity());
            readIn(chunk);
            n -= chunk;
        }
    }


    /** Runs the handshake; true when the client chose an export (transmission follows), false when it left. */
    boolean run() throws IOException {
        out.clear();
        out.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)).flip();
        wire.writeFully(out);
        int clientFlags = readIn(4).getInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new NbdProtocolException(NbdProtocolException.Reason.BAD_CLIENT_FLAGS, wire.streamOffset() - 4,
                "flags 0x" + Integer.toHexString(clientFlags));
        }
        boolean noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
        while (true) {
            ByteBuffer h = readIn(16);
            long magic = h.getLong();
            int option = h.getInt();
            long length = h.getInt() & 0xFFFFFFFFL;
            if (magic != IHAVEOPT) {
                throw new NbdProtocolException(NbdProtocolException.Reason.BAD_OPTION_MAGIC, wire.streamOffset() - 16,
                    "0x" + Long.toHexString(magic));
            }
            if (length > MAX_OPTION_LENGTH) {
                if (length > (1 << 20)) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.OPTION_TOO_LONG, wire.streamOffset() - 4,
                        "option " + option + " length " + length);
                }
                skip(length);
                optionReply(option, REP_ERR_TOO_BIG, null);
                continue;
            }
            ByteBuffer data = readIn((int) length);
            switch (option) {
                case OPT_EXPORT_NAME -> {
                    Export e = exports.get(string(data, (int) length));
                    if (e == null) {
                        return false; // the protocol's only answer here: disconnect
                    }
                    export = e;
                    out.clear();
                    out.putLong(e.disk().size()).putShort((short) transmissionFlags(e));
                    if (!noZeroes) {
                        out.put(new byte[124]);
                    }
                    out.flip();
                    wire.writeFully(out);
                    return true;
                }
                case OPT_ABORT -> {
                    optionReply(option, REP_ACK, null);
                    return false;
                }
                case OPT_LIST -> {
                    if (length != 0) {
                        optionReply(option, REP_ERR_INVALID, null);
                        continue;
                    }
                    for (String name : exports.keySet()) {
                        byte[] n = name.getBytes(StandardCharsets.UTF_8);
                        ByteBuffer b = ByteBuffer.allocate(4 + n.length).putInt(n.length).put(n).flip();
                        optionReply(option, REP_SERVER, b);
                    }
                    optionReply(option, REP_ACK, null);
                }
                case OPT_STRUCTURED_REPLY -> {
                    if (length != 0) {
                        optionReply(option, REP_ERR_INVALID, null);
                    } else {
                        structured = true;
                        optionReply(option, REP_ACK, null);
                    }
                }
                case OPT_INFO, OPT_GO -> {
                    if (infoOrGo(option, data, (int) length) && option == OPT_GO) {
                        return true;
                    }
                }
                case OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> metaContext(option, data, (int) length);
                default -> optionReply(option, REP_ERR_UNSUP, null);
            }
        }
    }

    private String string(ByteBuffer b, int n) {
        byte[] bytes = new byte[n];
        b.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private void optionReply(int option, int type, ByteBuffer payload) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(20).order(ByteOrder.BIG_ENDIAN);
        h.putLong(OPTION_REPLY_MAGIC).putInt(option).putInt(type).putInt(payload == null ? 0 : payload.remaining()).flip();
        if (payload == null) {
            wire.writeFully(h);
        } else {
            wire.writeFully(h, payload);
        }
    }

    private int transmissionFlags(Export e) {
        int f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_CAN_MULTI_CONN;
        if (e.readOnly()) {
            f |= TF_READ_ONLY;
        } else {
            DiskCapabilities caps = e.disk().capabilities();
            f |= (caps.discard() ? TF_SEND_TRIM : 0) | (caps.writeZeroes() ? TF_SEND_WRITE_ZEROES : 0);
        }
        if (structured) {
            f |= TF_SEND_DF;
        }
        return f;
    }

    /** NBD_OPT_INFO / NBD_OPT_GO: {@code u32 name length | name | u16 n | u16 info[n]}. */
    private boolean infoOrGo(int option, ByteBuffer data, int length) throws IOException {
        if (length < 6) {
            optionReply(option, REP_ERR_INVALID, null);
            return false;
        }
        long nameLen = data.getInt() & 0xFFFFFFFFL;
        if (nameLen > length - 6L) {
            optionReply(option, REP_ERR_INVALID, null);
            return false;
        }
        String name = string(data, (int) nameLen);
        int requests = data.getShort() & 0xFFFF;
        if (data.remaining() != 2 * requests) {
            optionReply(option, REP_ERR_INVALID, null);
            return false;
        }
        Export e = exports.get(name);
        if (e == null) {
            optionReply(option, REP_ERR_UNKNOWN, null);
            return false;
        }
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.BIG_ENDIAN);
        b.putShort((short) INFO_EXPORT).putLong(e.disk().size()).putShort((short) transmissionFlags(e)).flip();
        optionReply(option, REP_INFO, b);
        b.clear();
        b.putShort((short) INFO_BLOCK_SIZE).putInt(e.disk().logicalSectorSize())
            .putInt(Math.max(4096, e.disk().physicalSectorSize())).putInt(NbdServer.MAX_PAYLOAD).flip();
        optionReply(option, REP_INFO, b);
        for (int i = 0; i < requests; i++) {
            if ((data.getShort() & 0xFFFF) == INFO_NAME) {
                byte[] n = name.getBytes(StandardCharsets.UTF_8);
                optionReply(option, REP_INFO, ByteBuffer.allocate(2 + n.length).putShort((short) INFO_NAME).put(n).flip());
            }
        }
        optionReply(option, REP_ACK, null);
        if (option == OPT_GO) {
            export = e;
        }
        return true;
    }

    /** LIST/SET_META_CONTEXT: {@code u32 name length | name | u32 n | {u32 len | query}*n}. */
    private void metaContext(int option, ByteBuffer data, int length) throws IOException {
        if (option == OPT_SET_META_CONTEXT && !structured) {
            optionReply(option, REP_ERR_INVALID, null);
            return;
        }
        if (length < 8) {
            optionReply(option, REP_ERR_INVALID, null);
            return;
        }
        long nameLen = data.getInt() & 0xFFFFFFFFL;
        if (nameLen > length - 8L) {
            optionReply(option, REP_ERR_INVALID, null);
            return;
        }
        String name = string(data, (int) nameLen);
        long n = data.getInt() & 0xFFFFFFFFL;
        List<String> queries = new ArrayList<>();
        for (long i = 0; i < n; i++) {
            if (data.remaining() < 4) {
                optionReply(option, REP_ERR_INVALID, null);
                return;
            }
            long ql = data.getInt() & 0xFFFFFFFFL;
            if (ql > data.remaining()) {
                optionReply(option, REP_ERR_INVALID, null);
                return;
            }
            queries.add(string(data, (int) ql));
        }
        if (data.hasRemaining()) {
            optionReply(option, REP_ERR_INVALID, null);
            return;
        }
        Export e = exports.get(name);
        if (e == null) {
            optionReply(option, REP_ERR_UNKNOWN, null);
            return;
        }
        boolean list = option == OPT_LIST_META_CONTEXT;
        boolean match = list && queries.isEmpty();
        NbdDirtyBitmap bitmap = e.dirtyBitmap();
        boolean bitmapMatch = bitmap != null && list && queries.isEmpty();
        for (String q : queries) {
            if (q.equals(BASE_ALLOCATION) || (list && q.equals("base:"))) {
                match = true;
            }
            if (bitmap != null && (q.equals(bitmap.context())
                || list && (q.equals("qemu:") || q.equals(NbdDirtyBitmap.PREFIX)))) {
                bitmapMatch = true;
            }
        }
        if (option == OPT_SET_META_CONTEXT) {
            baseAllocation = match;
            selectedBitmap = bitmapMatch ? bitmap : null;
        }
        if (match) {
            contextReply(option, BASE_ALLOCATION_ID, BASE_ALLOCATION);
        }
        if (bitmapMatch) {
            contextReply(option, NbdDirtyBitmap.CONTEXT_ID, bitmap.context());
        }
        optionReply(option, REP_ACK, null);
    }

    private void contextReply(int option, int id, String context) throws IOException {
        byte[] ctx = context.getBytes(StandardCharsets.UTF_8);
        optionReply(option, REP_META_CONTEXT, ByteBuffer.allocate(4 + ctx.length).putInt(id).put(ctx).flip());
    }
}
