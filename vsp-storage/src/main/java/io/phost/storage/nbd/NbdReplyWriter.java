package io.phost.storage.nbd;

import java.io.IOException;
import java.nio.ByteBuffer;

import static io.phost.storage.nbd.NbdDescriptor.*;

/**
 * Encodes a connection's NBD replies and writes them. Replies go into a batch that the connection flushes
 * before anything that may wait (for the client, or for the disk): a burst of requests costs one write and
 * one client wakeup instead of one per reply. A reply too large for the batch follows the batch at once.
 * One connection thread only; nothing is allocated per reply.
 * <pre>
 *   simple:     | magic 0x67446698 | error u32 | cookie u64 |                              (+ data of a READ)
 *   structured: | magic 0x668e33ef | flags u16 | type u16 | cookie u64 | length u32 | payload ... |
 *               OFFSET_DATA payload: offset u64, data     ERROR: error u32, message length u16 (0)
 *               BLOCK_STATUS payload: context id u32, then { length u32, flags u32 } per extent
 * </pre>
 */
final class NbdReplyWriter {
    private final NbdNegotiation.Wire wire;
    private final ByteBuffer batch;
    private final ByteBuffer header;
    private final ByteBuffer[] gather = new ByteBuffer[2];
    private boolean structured;

    /** @param header at least 32 bytes, big-endian */
    NbdReplyWriter(NbdNegotiation.Wire wire, ByteBuffer batch, ByteBuffer header) {
        this.wire = wire;
        this.batch = batch.clear();
        this.header = header;
    }

    /** The client negotiated structured replies: READ data and errors of READ/BLOCK_STATUS use them. */
    void structured(boolean on) {
        structured = on;
    }

    /** The answer to a command without data, or an error; {@code readLike}: READ or BLOCK_STATUS. */
    void status(long cookie, int error, boolean readLike) throws IOException {
        ByteBuffer h = header.clear();
        if (error != 0 && structured && readLike) {
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_ERROR)
                .putLong(cookie).putInt(6).putInt(error).putShort((short) 0);
        } else {
            h.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(cookie);
        }
        send(h.flip(), null);
    }

    /** A successful READ of {@code data} (position..limit) from {@code offset}. */
    void read(long cookie, long offset, ByteBuffer data) throws IOException {
        ByteBuffer h = header.clear();
        if (structured) {
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_OFFSET_DATA)
                .putLong(cookie).putInt(data.remaining() + 8).putLong(offset);
        } else {
            h.putInt(SIMPLE_REPLY_MAGIC).putInt(0).putLong(cookie);
        }
        send(h.flip(), data);
    }

    /**
     * A BLOCK_STATUS chunk whose payload (context id and extents) is {@code extents}, flipped; one per selected
     * context, the {@code last} one carrying DONE.
     */
    void blockStatus(long cookie, ByteBuffer extents, boolean last) throws IOException {
        ByteBuffer h = header.clear();
        h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) (last ? REPLY_FLAG_DONE : 0)).putShort((short) REPLY_TYPE_BLOCK_STATUS)
            .putLong(cookie).putInt(extents.remaining());
        send(h.flip(), extents);
    }

    private void send(ByteBuffer h, ByteBuffer body) throws IOException {
        int need = h.remaining() + (body == null ? 0 : body.remaining());
        if (need <= batch.remaining()) {
            batch.put(h);
            if (body != null) {
                batch.put(body);
            }
            return;
        }
        flush();
        if (body == null) {
            wire.writeFully(h);
        } else {
            gather[0] = h;
            gather[1] = body;
            wire.writeFully(gather);
        }
    }

    /** Writes the batched replies; called before the connection waits for the client or the disk. */
    void flush() throws IOException {
        if (batch.position() == 0) {
            return;
        }
        batch.flip();
        wire.writeFully(batch);
        batch.clear();
    }

    /** Forgets unsent replies (the connection is gone). */
    void discard() {
        batch.clear();
    }
}
