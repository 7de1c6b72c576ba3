package io.phost.storage.nbd;

import io.phost.storage.scsi.BlockOp;
import io.phost.storage.scsi.BlockResult;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.util.concurrent.ScheduledFuture;

import static io.phost.storage.nbd.NbdDescriptor.*;

/**
 * One NBD client of an {@link NbdServer}: the handshake ({@link NbdNegotiation}), then transmission on one
 * thread that decodes requests into storage-core block requests on the connection's own {@link ScsiQueue},
 * drives that queue and answers completions through {@link NbdReplyWriter}. See {@link #transmission}.
 * (About 600 lines: one room, the connection's buffers and the loop over them; negotiation, reply encoding
 * and slots live in their own classes.)
 */
final class NbdConnection implements Runnable, NbdNegotiation.Wire, ScsiQueue.Completion {
    private static final System.Logger LOG = System.getLogger(NbdServer.class.getName());
    /** Requests one connection runs at once (its core queue's depth). */
    static final int SLOTS = 64;
    private static final int MAX_EXTENTS = 256;
    private static final int REQUEST_LENGTH = 28;
    /** Read-ahead for requests: a QD32 burst of 4 KiB writes fits whole. */
    private static final int RX_BUFFER = 256 << 10;
    /** Smallest payload buffer a slot gets (most requests fit: 4-64 KiB). */
    private static final int MIN_PAYLOAD_BUFFER = 64 << 10;
    /** Longest wait for a disk completion before the connection looks at its socket again. */
    private static final long IO_WAIT_NANOS = 50_000;
    private static final long POLL_MIN_NANOS = 4_000;
    /** Longest poll for the next request before sleeping (see fill; 0: never poll). */
    private static final long POLL_MAX_NANOS = Long.getLong("phost.nbd.pollMicros", 100) * 1000;

    private final NbdServer server;
    private final SocketChannel ch;
    /** Owns every fixed buffer of this connection; closed (memory freed) when the connection ends. */
    private final Arena arena = Arena.ofShared();
    private long arenaBytes;
    private final ByteBuffer in;
    private final ByteBuffer out;
    /** The storage-core queue this connection's requests run on (created when transmission starts). */
    private ScsiQueue queue;
    private final NbdSlot[] slots = new NbdSlot[SLOTS];
    /** Payload buffer bytes of all slots (connection thread only). */
    private long payloadBytes;
    /** Cancels the handshake timeout; set by the acceptor before the reader starts. */
    volatile ScheduledFuture<?> deadline;
    private volatile boolean handshaking = true;
    private boolean released;
    private ByteBuffer rx;
    private ByteBuffer extents;
    private NbdReplyWriter replies;
    /** Current poll window in fill() (connection thread only). */
    private long pollNanos;
    private boolean nonBlocking;
    private long streamOffset;
    private boolean baseAllocation;
    /** The export's qemu:dirty-bitmap context when the client selected it, else null. */
    private NbdDirtyBitmap dirtyBitmap;
    private NbdServer.Export export;
    private volatile boolean dead;
    private volatile Thread thread;

    NbdConnection(NbdServer server, SocketChannel ch) throws IOException {
        this.server = server;
        this.ch = ch;
        try {
            if (ch.getLocalAddress() instanceof InetSocketAddress) {
                ch.setOption(StandardSocketOptions.TCP_NODELAY, true); // replies are whole; never wait for an ACK
            }
            in = allocate(NbdNegotiation.MAX_OPTION_LENGTH + 64);
            out = allocate(NbdNegotiation.MAX_OPTION_LENGTH + 256);
        } catch (IOException | RuntimeException | Error e) {
            release();
            throw e;
        }
    }

    private ByteBuffer allocate(int bytes) {
        ByteBuffer b = arena.allocate(bytes, 64).asByteBuffer().order(ByteOrder.BIG_ENDIAN);
        arenaBytes += bytes;
        server.bufferBytesChanged(bytes);
        return b;
    }

    /** Transmission buffers, slots and the core queue: only a client that finished the handshake costs this. */
    private void startTransmission(boolean structured) {
        rx = allocate(RX_BUFFER);
        extents = allocate(8 + 8 * MAX_EXTENTS);
        replies = new NbdReplyWriter(this, allocate(RX_BUFFER), allocate(64));
        replies.structured(structured);
        for (int i = 0; i < SLOTS; i++) {
            slots[i] = new NbdSlot();
        }
        ScsiTarget target = new ScsiTarget();
        target.add(0, export.lun());
        queue = new ScsiQueue(target, SLOTS, 1, this, export.engine()); // one iovec: a payload buffer is contiguous
    }

    /** The acceptor's timer: a client still haggling options after the limit is dropped. */
    void handshakeTimedOut() {
        if (handshaking) {
            server.dropped("nbd client dropped: no export chosen within " + server.limits().handshakeTimeoutMillis() + " ms");
            shutdown();
        }
    }

    /**
     * Makes {@code s}'s payload buffer hold {@code n} bytes (n <= NbdServer.MAX_PAYLOAD). When that would take the
     * connection past its buffer budget, finishes every outstanding request and frees the other slots'
     * buffers first, so one connection never holds more than the budget.
     */
    private void reserve(NbdSlot s, int n) throws IOException {
        int have = s.data.capacity();
        if (have >= n) {
            return;
        }
        int target = Math.max(n, Math.min(NbdServer.MAX_PAYLOAD, Math.max(MIN_PAYLOAD_BUFFER, have * 2)));
        if (payloadBytes - have + target > server.limits().connectionBufferBytes()) {
            target = n;
        }
        if (payloadBytes - have + target > server.limits().connectionBufferBytes()) {
            while (queue.outstanding() > 0) {
                if (dead) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "connection closed");
                }
                pump(); // only with nothing in flight may other slots' buffers go
            }
            for (NbdSlot o : slots) {
                if (o != s && o.data.capacity() > 0) {
                    long delta = o.resize(0);
                    payloadBytes += delta;
                    server.bufferBytesChanged(delta);
                }
            }
        }
        long delta = s.resize(target);
        payloadBytes += delta;
        server.bufferBytesChanged(delta);
    }

    /** Frees every buffer (once; after the reader ended and nothing is in flight). */
    void release() {
        if (released) {
            return;
        }
        released = true;
        for (NbdSlot s : slots) {
            if (s != null && s.data.capacity() > 0) {
                long delta = s.resize(0);
                payloadBytes += delta;
                server.bufferBytesChanged(delta);
            }
        }
        arena.close();
        server.bufferBytesChanged(-arenaBytes);
        arenaBytes = 0;
    }

    void shutdown() {
        dead = true;
        try {
            ch.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }

    /** Waits for the connection thread to end (server close: its requests are finished or abandoned then). */
    void join(long millis) throws InterruptedException {
        Thread t = thread;
        if (t != null) {
            t.join(millis);
        }
    }

    @Override
    public void run() {
        thread = Thread.currentThread();
        try {
            NbdNegotiation negotiation = new NbdNegotiation(this, in, out, server.exports());
            boolean go = negotiation.run();
            export = negotiation.export();
            if (export != null) {
                export.lun().followDiskSize(); // the client was given the disk's size now: the LUN must serve it
            }
            baseAllocation = negotiation.baseAllocation();
            dirtyBitmap = negotiation.dirtyBitmap();
            handshaking = false;
            ScheduledFuture<?> d = deadline;
            if (d != null) {
                d.cancel(false);
            }
            if (go && !dead) {
                startTransmission(negotiation.structured());
                transmission();
            }
        } catch (NbdProtocolException e) {
            if (e.reason() == NbdProtocolException.Reason.EOF) {
                LOG.log(System.Logger.Level.DEBUG, "nbd client dropped: " + e.getMessage());
            } else {
                server.dropped("nbd client dropped: " + e.getMessage());
            }
        } catch (IOException e) {
            if (!dead && !server.isClosed()) {
                LOG.log(System.Logger.Level.DEBUG, "nbd connection closed", e);
            }
        } catch (OutOfMemoryError e) {
            LOG.log(System.Logger.Level.WARNING, "nbd connection dropped: out of memory for its buffers", e);
        } catch (RuntimeException | Error e) {
            // A bug, or an Error such as a class that failed to initialise: only this client pays, the server
            // keeps accepting and serving the others.
            LOG.log(System.Logger.Level.WARNING, "nbd connection dropped: " + e, e);
        } finally {
            handshaking = false;
            shutdown();
            boolean idle = true;
            if (queue != null) {
                queue.close(); // lets running requests finish (their replies go nowhere now), closes the engines
                idle = queue.outstanding() == 0;
            }
            if (idle) {
                release();
            } else {
                LOG.log(System.Logger.Level.WARNING, "nbd connection closed with requests still running; its buffers are kept");
            }
            server.ended(this);
        }
    }

    // ---- low-level I/O ----

    @Override
    public long streamOffset() {
        return streamOffset;
    }

    @Override
    public void readFully(ByteBuffer b) throws IOException {
        blocking();
        while (b.hasRemaining()) {
            int n = ch.read(b);
            if (n < 0) {
                throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
            }
            streamOffset += n;
        }
    }

    /**
     * One buffer (not the varargs form: that allocates an array per reply). When the socket is full (a
     * non-blocking write took nothing) the rest is written blocking, as a slow reader of replies deserves.
     */
    @Override
    public void writeFully(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.write(b) == 0) {
                blocking();
            }
        }
    }

    @Override
    public void writeFully(ByteBuffer... bufs) throws IOException {
        long left = 0;
        for (ByteBuffer b : bufs) {
            left += b.remaining();
        }
        while (left > 0) {
            long n = ch.write(bufs);
            if (n == 0) {
                blocking();
            }
            left -= n;
        }
    }

    /** Switches the socket to blocking mode (one fcntl, only when it changes). */
    private void blocking() throws IOException {
        if (nonBlocking) {
            ch.configureBlocking(true);
            nonBlocking = false;
        }
    }

    private void nonBlocking() throws IOException {
        if (!nonBlocking) {
            ch.configureBlocking(false);
            nonBlocking = true;
        }
    }

    /** One read into rx of whatever the socket has (0 when non-blocking and nothing came). */
    private int readSome() throws IOException {
        int r = ch.read(rx);
        if (r < 0) {
            throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
        }
        streamOffset += r;
        return r;
    }

    // ---- transmission ----

    /**
     * Reads requests from {@link #rx} (filled by whatever one read() returns, so requests a client
     * pipelines arrive together), decodes each into a core request on this connection's {@link ScsiQueue}
     * and answers it when the queue completes it. One thread does everything: the disk's QoS flow admits
     * each request and the disk's I/O engine runs it (io_uring, inline for memory, threads ...), as for a
     * guest's I/O; BLOCK_STATUS, a metadata query, is answered at once.
     * <pre>
     *   rx (read mode):  | consumed | req 28 B | [write data] | next req ... | (free) |
     *                               ^position                              ^limit
     *   request ──decode/check──▶ ScsiRequest.block ──▶ queue.submit ──▶ QoS ──▶ engine
     *   engine completion ──▶ onScsiComplete ──▶ reply into the batch ──▶ flushed before any wait
     * </pre>
     */
    private void transmission() throws IOException {
        rx.clear().flip();
        try {
            serve();
        } catch (NbdProtocolException e) {
            answerOutstanding();
            throw e;
        }
        answerOutstanding();
    }

    /**
     * Sends the answers to the requests before a DISC or a protocol error. Not after anything else: an I/O error
     * means the client is gone, and after an unexpected exception or Error (a bug, or an engine whose class
     * failed to initialise) a request may be held by nothing, so waiting for it would spin forever.
     */
    private void answerOutstanding() throws IOException {
        while (queue.outstanding() > 0 && !dead) {
            pump();
        }
        if (!dead) {
            replies.flush();
        }
    }

    private void serve() throws IOException {
        while (!dead) {
            fill(REQUEST_LENGTH);
            long at = streamOffset - rx.remaining();
            int magic = rx.getInt();
            if (magic != REQUEST_MAGIC) {
                throw new NbdProtocolException(NbdProtocolException.Reason.BAD_REQUEST_MAGIC, at,
                    "0x" + Integer.toHexString(magic));
            }
            ScsiRequest r = acquire();
            NbdSlot s = slots[r.slot()];
            s.flags = rx.getShort() & 0xFFFF;
            s.type = rx.getShort() & 0xFFFF;
            s.cookie = rx.getLong();
            s.offset = rx.getLong();
            s.length = rx.getInt();
            long length = s.length & 0xFFFFFFFFL;
            if (s.type == CMD_DISC) {
                queue.release(r);
                return;
            }
            if (s.type == CMD_WRITE) {
                if (length > NbdServer.MAX_PAYLOAD) {
                    if (length > 2L * NbdServer.MAX_PAYLOAD) {
                        queue.release(r);
                        throw new NbdProtocolException(NbdProtocolException.Reason.PAYLOAD_TOO_LONG,
                            at + 24, "write of " + length + " bytes");
                    }
                    skipRx(length);
                    s.type = -1; // answered with EINVAL
                } else {
                    reserve(s, (int) length);
                    receive(s.payload((int) length));
                }
            } else if (s.type == CMD_READ && length > 0 && length <= NbdServer.MAX_PAYLOAD) {
                reserve(s, (int) length);
            }
            start(r, s);
        }
    }

    /** A free core request; when all {@value #SLOTS} are in flight, finishes some first. */
    private ScsiRequest acquire() throws IOException {
        ScsiRequest r;
        while ((r = queue.tryAcquire()) == null) {
            if (dead || server.isClosed()) {
                throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "connection closed");
            }
            pump();
        }
        return r;
    }

    /** Checks one request as NBD defines its errors, then submits it to the core (or answers it here). */
    private void start(ScsiRequest r, NbdSlot s) throws IOException {
        int error = check(s);
        if (error != 0 || s.type == CMD_BLOCK_STATUS) {
            try {
                if (error == 0) {
                    blockStatus(s);
                } else {
                    replies.status(s.cookie, error, s.type == CMD_READ || s.type == CMD_BLOCK_STATUS);
                }
            } finally {
                queue.release(r);
            }
            return;
        }
        long len = s.length & 0xFFFFFFFFL;
        boolean fua = (s.flags & CMD_FLAG_FUA) != 0;
        int tag = r.slot();
        switch (s.type) {
            case CMD_READ -> r.block(0, BlockOp.READ, s.offset, len, false, tag).data().tryAdd(s.dataAddress, len);
            case CMD_WRITE -> {
                r.block(0, BlockOp.WRITE, s.offset, len, fua, tag);
                if (len > 0) {
                    r.data().tryAdd(s.dataAddress, len);
                }
            }
            case CMD_FLUSH -> r.block(0, BlockOp.FLUSH, 0, 0, false, tag);
            case CMD_TRIM -> r.block(0, BlockOp.UNMAP, s.offset, len, fua, tag);
            default -> r.block(0, BlockOp.WRITE_ZEROES, s.offset, len, fua, tag);
        }
        queue.submit(r);
    }

    /** The NBD error a request gets before it reaches the disk, or 0. */
    private int check(NbdSlot s) {
        long len = s.length & 0xFFFFFFFFL;
        long size = export.disk().size();
        boolean write = s.type == CMD_WRITE || s.type == CMD_TRIM || s.type == CMD_WRITE_ZEROES;
        if (s.type < 0 || s.type == CMD_CACHE || s.type > CMD_BLOCK_STATUS) {
            return EINVAL;
        } else if ((s.flags & ~(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE)) != 0) {
            return EINVAL; // includes FAST_ZERO, which we do not advertise
        } else if (write && export.readOnly()) {
            return EPERM;
        } else if (s.type != CMD_FLUSH && (s.offset < 0 || len > size - s.offset)) {
            return write ? ENOSPC : EINVAL;
        } else if (s.type != CMD_FLUSH && s.type != CMD_BLOCK_STATUS
            && ((s.offset | len) % export.disk().logicalSectorSize()) != 0) {
            return EINVAL; // violates the minimum block size we advertised
        } else if ((s.type == CMD_READ || s.type == CMD_BLOCK_STATUS) && len == 0 || len > NbdServer.MAX_PAYLOAD && s.type == CMD_READ) {
            return EINVAL;
        } else if (s.type == CMD_BLOCK_STATUS && !baseAllocation && dirtyBitmap == null) {
            return EINVAL;
        }
        return 0;
    }

    /** The core finished a request: encode its reply (connection thread; the queue calls back from pump). */
    @Override
    public void onScsiComplete(ScsiRequest r) {
        NbdSlot s = slots[r.slot()];
        try {
            int error = errno(r.result());
            if (error == 0 && s.type == CMD_READ) {
                replies.read(s.cookie, s.offset, s.payload(s.length));
            } else {
                replies.status(s.cookie, error, s.type == CMD_READ);
            }
        } catch (IOException e) {
            shutdown(); // the client is gone; the serve loop ends on its next read
        } finally {
            queue.release(r);
        }
    }

    private static int errno(BlockResult result) {
        return switch (result) {
            case OK -> 0;
            case NO_SPACE -> ENOSPC; // the client sees a full disk, as from a local one
            case READ_ONLY -> EPERM;
            case INVALID, UNSUPPORTED -> EINVAL;
            case IO_ERROR -> EIO;
        };
    }

    /**
     * Drives the core queue while requests are outstanding: submits and reaps (replies go to the batch),
     * writes the batch, and when there was nothing to do waits up to {@link #IO_WAIT_NANOS} for a
     * completion, so a new request from the client is not kept waiting longer than that.
     */
    private void pump() throws IOException {
        int work = queue.doWork();
        replies.flush();
        if (work == 0 && queue.outstanding() > 0) {
            queue.awaitWork(IO_WAIT_NANOS);
            replies.flush();
        }
    }

    /**
     * Makes {@code rx} hold at least {@code n} unread bytes, reading as much as the socket has. While
     * requests are outstanding the socket is read without blocking, between turns of {@link #pump}.
     * With nothing outstanding it first polls the socket for up to {@link #pollNanos}, an adaptive window
     * (QEMU's aio polling works the same way): a QD1 client sends its next request one round trip
     * after our reply, and catching it awake saves the reader's wakeup (50-150 us on a VM whose vCPUs
     * idle). The window doubles (from 4 us up to {@code phost.nbd.pollMicros}, default 100) when the
     * request came within that maximum but after the window, and halves when the client took longer,
     * so an idle or slow client costs little CPU.
     */
    private void fill(int n) throws IOException {
        if (rx.remaining() >= n) {
            return;
        }
        rx.compact();
        try {
            while (rx.position() < n) {
                if (queue.outstanding() > 0) {
                    queue.doWork(); // submits what was decoded; an inline engine or a page-cache hit is done here
                    if (queue.outstanding() == 0) {
                        continue; // all answered: the idle path flushes the replies and waits for the client
                    }
                    nonBlocking();
                    if (readSome() == 0) {
                        pump();
                    }
                } else {
                    replies.flush(); // the read below may wait for the client, which may be waiting for these
                    idleFill(n);
                }
            }
        } finally {
            rx.flip();
        }
    }

    /** Fills rx to {@code n} bytes with nothing outstanding: the adaptive poll window, then a blocking read. */
    private void idleFill(int n) throws IOException {
        if (POLL_MAX_NANOS > 0) {
            long t0 = System.nanoTime();
            if (pollNanos == 0 || !poll(n, t0 + pollNanos)) {
                blockingFill(n);
                long waited = System.nanoTime() - t0;
                pollNanos = waited <= POLL_MAX_NANOS ? Math.min(POLL_MAX_NANOS, Math.max(2 * pollNanos, POLL_MIN_NANOS))
                    : pollNanos >> 1;
            }
        } else {
            blockingFill(n);
        }
    }

    /** Non-blocking reads into rx until it holds {@code n} bytes (true) or {@code deadline} passes. */
    private boolean poll(int n, long deadline) throws IOException {
        nonBlocking();
        while (rx.position() < n) {
            if (readSome() == 0) {
                if (System.nanoTime() - deadline > 0) {
                    return false;
                }
                Thread.onSpinWait();
            }
        }
        return true;
    }

    private void blockingFill(int n) throws IOException {
        blocking();
        while (rx.position() < n) {
            readSome();
        }
    }

    /** Fills {@code dst} from what {@code rx} already holds, then straight from the socket. */
    private void receive(ByteBuffer dst) throws IOException {
        int n = Math.min(rx.remaining(), dst.remaining());
        if (n > 0) {
            int limit = rx.limit();
            rx.limit(rx.position() + n);
            dst.put(rx);
            rx.limit(limit);
        }
        if (dst.hasRemaining()) {
            replies.flush();
            readFully(dst); // the client is sending this payload now: a blocking read ends
        }
    }

    /** Discards {@code n} payload bytes (an oversized WRITE we answer with EINVAL). */
    private void skipRx(long n) throws IOException {
        while (n > 0) {
            if (!rx.hasRemaining()) {
                fill(1);
            }
            int k = (int) Math.min(n, rx.remaining());
            rx.position(rx.position() + k);
            n -= k;
        }
    }

    /** Answers BLOCK_STATUS with one chunk per selected context (base:allocation, a backup's dirty bitmap). */
    private void blockStatus(NbdSlot s) throws IOException {
        long len = s.length & 0xFFFFFFFFL;
        int max = (s.flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
        NbdDirtyBitmap bitmap = dirtyBitmap;
        if (baseAllocation) {
            replies.blockStatus(s.cookie, allocation(s.offset, len, max), bitmap == null);
        }
        if (bitmap != null) {
            ByteBuffer x = extents.clear();
            x.putInt(NbdDirtyBitmap.CONTEXT_ID);
            bitmap.extents(s.offset, len, max, x);
            replies.blockStatus(s.cookie, x.flip(), true);
        }
    }

    /** base:allocation extents from the disk's allocation map (all data when it has none). */
    private ByteBuffer allocation(long offset, long len, int max) throws IOException {
        VirtualDisk disk = export.disk();
        ByteBuffer x = extents.clear();
        x.putInt(BASE_ALLOCATION_ID);
        long end = offset + len;
        if (disk instanceof AllocationMap map) {
            long at = offset;
            int n = 0;
            while (at < end && n < max) {
                long next = map.nextAllocated(at);
                long runEnd;
                int state;
                if (next > at) {
                    runEnd = Math.min(next, end);
                    state = STATE_HOLE | STATE_ZERO;
                } else {
                    runEnd = Math.min(Math.max(map.nextUnallocated(at), at + 1), end);
                    state = 0;
                }
                x.putInt((int) (runEnd - at)).putInt(state);
                at = runEnd;
                n++;
            }
        } else {
            x.putInt((int) len).putInt(0);
        }
        return x.flip();
    }
}
