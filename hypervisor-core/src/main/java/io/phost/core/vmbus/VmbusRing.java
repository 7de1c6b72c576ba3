package io.phost.core.vmbus;

import static io.phost.core.vmbus.PacketDescriptor.HEADER_LENGTH;
import static io.phost.core.vmbus.PacketDescriptor.TRAILER_LENGTH;
import static io.phost.core.vmbus.PacketDescriptor.U32;
import static io.phost.core.vmbus.RingDescriptor.FEATURE_BITS_OFFSET;
import static io.phost.core.vmbus.RingDescriptor.FEATURE_PENDING_SEND_SZ;
import static io.phost.core.vmbus.RingDescriptor.INTERRUPT_MASK_OFFSET;
import static io.phost.core.vmbus.RingDescriptor.PENDING_SEND_SZ_OFFSET;
import static io.phost.core.vmbus.RingDescriptor.READ_INDEX_OFFSET;
import static io.phost.core.vmbus.RingDescriptor.WRITE_INDEX_OFFSET;

import java.lang.foreign.MemorySegment;
import org.agrona.UnsafeApi;

/**
 * A flyweight over one VMBus ring ({@link RingDescriptor}) used by exactly one side: the writer calls
 * {@code tryWrite*} (publish each packet) or {@link #tryQueue} + {@link #flush} (publish a burst once), the
 * reader calls {@link #tryRead}; each process builds its own instance over the same
 * shared pages. The side's own index (write index for the writer, read index for the reader) is kept in a
 * private field and only published (a reader may publish its index lazily, {@link #publishReadIndexLazily});
 * the peer's index is re-read from shared memory and validated every time, because the peer may be hostile.
 * Nothing here allocates or blocks.
 *
 * <p>Raw access: the descriptor, trailer and control-page accesses use {@link UnsafeApi} on the mapping's
 * addresses (what Agrona's buffers compile to: one {@code mov} each). A {@code MemorySegment} access pays a
 * liveness and a bounds check per field that the JIT cannot hoist for a segment held in a field (about 15%
 * of a packet), and a {@code MemorySegment.ofAddress(..).reinterpret(..)} view keeps the bounds check and
 * its session check. Raw access is safe only because (1) every offset is bounded before use: our own
 * indices, the peer's indices and descriptors are validated against {@code dataSize} (a bad one throws
 * {@link RingException}) and a caller's lengths are checked against the ring size before anything is
 * written; (2) the mapping is never unmapped under a thread using this ring ({@code HostChannel.shutdown}
 * unmaps after the agent thread has ended; a guest's rings are unmapped by the GC once unreachable,
 * {@link RingMapping#mapUntilUnreachable}; this ring keeps its data segment, and so the mapping, reachable). A
 * caller's source buffer gets every check {@code MemorySegment.copy} makes (bounds, alive, owning thread), and
 * is read raw only when no thread can free it during the copy ({@link PayloadCopy}: a shared arena's segment
 * still goes through {@code MemorySegment.copy}); handlers get the checked data segment.
 *
 * <p>Threading: one writer thread and one reader thread per ring (OneToOne), in different processes.
 * Byte order: VMBus is little-endian and the raw accesses use native order, so this class requires a
 * little-endian host (x86-64, aarch64), checked at class load.
 */
public final class VmbusRing {

    static {
        if (java.nio.ByteOrder.nativeOrder() != java.nio.ByteOrder.LITTLE_ENDIAN) {
            throw new ExceptionInInitializerError("VMBus rings need a little-endian host");
        }
    }

    private final MemorySegment data;
    /** Base addresses of the control page and of {@link #data}: the raw hot path (see the class comment). */
    private final long controlAddress;
    private final long dataAddress;
    private final int dataSize;
    private final boolean doubleMapped;
    private final MemorySegment scratch;
    private final Doorbell peer;

    private int writeIndex;
    private int readIndex;
    /** Reader: the read index last stored to read_index; behind {@link #readIndex} only in the lazy mode. */
    private int readPublished;
    /** Reader: publish read_index lazily ({@link #publishReadIndexLazily}). */
    private boolean lazyReadIndex;
    /** Writer: the last validated read_index seen (only ever behind the reader's, so free space is never over-stated). */
    private int readIndexCache;
    /** Writer: the write index last made visible (published); packets beyond it are queued. */
    private int published;
    private boolean batching;
    private long signalsSent;
    private long packetsWritten;
    private long packetsRead;

    /**
     * @param control  the 4 KiB control page
     * @param data     the data area: {@code dataSize} bytes, or {@code 2 * dataSize} when double-mapped
     * @param dataSize bytes in the data area (multiple of 4 KiB)
     * @param peer     rung when the rules say the peer must be woken
     */
    public VmbusRing(MemorySegment control, MemorySegment data, int dataSize, Doorbell peer) {
        if (control.byteSize() < RingDescriptor.CONTROL_LENGTH || dataSize < RingDescriptor.MIN_DATA_SIZE
            || dataSize > RingDescriptor.MAX_DATA_SIZE || dataSize % RingDescriptor.PAGE_SIZE != 0
            || (data.byteSize() != dataSize && data.byteSize() != 2L * dataSize)) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0,
                "control=" + control.byteSize() + " data=" + data.byteSize() + " dataSize=" + dataSize);
        }
        if (!control.isNative() || !data.isNative()) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0, "ring memory must be native (raw access)");
        }
        this.data = data;
        this.controlAddress = control.address();
        this.dataAddress = data.address();
        this.dataSize = dataSize;
        this.doubleMapped = data.byteSize() == 2L * dataSize;
        this.scratch = doubleMapped ? null : MemorySegment.ofArray(new long[dataSize / 8]);
        this.peer = peer;
        this.writeIndex = checkedIndex(getIntVolatile(WRITE_INDEX_OFFSET), "write_index");
        this.readIndex = checkedIndex(getIntVolatile(READ_INDEX_OFFSET), "read_index");
        this.readIndexCache = readIndex;
        this.readPublished = readIndex;
        this.published = writeIndex;
    }

    /** Zeroes a fresh control page and advertises pending_send_sz support (done by the ring's allocator). */
    public static void initialise(MemorySegment control) {
        control.asSlice(0, RingDescriptor.CONTROL_LENGTH).fill((byte) 0);
        control.set(U32, FEATURE_BITS_OFFSET, FEATURE_PENDING_SEND_SZ);
        UnsafeApi.fullFence(); // the zeroed page is visible before the GPADL that publishes it is sent
    }

    public int dataSize() {
        return dataSize;
    }

    public boolean doubleMapped() {
        return doubleMapped;
    }

    /** Largest data length one {@link #tryWrite} can ever accept on this ring. */
    public int maxDataLength() {
        return Math.min(PacketDescriptor.MAX_PACKET_LENGTH, dataSize - TRAILER_LENGTH - 8) - HEADER_LENGTH;
    }

    // ------------------------------------------------------------------ writer side

    /** Writes an inband/completion packet carrying {@code length} bytes of {@code src}; false when full. */
    public boolean tryWrite(int type, int flags, long transId, MemorySegment src, long srcOffset, int length) {
        return tryWrite(type, flags, transId, null, 0, 0, src, srcOffset, length);
    }

    /**
     * Writes a packet whose descriptor is extended by {@code extLength} bytes (a multiple of 8; e.g. the
     * GPA-direct range list) followed by {@code length} data bytes, and publishes it together with any
     * packets {@linkplain #tryQueue queued} before it (unless inside {@link #beginBatch}). Returns false,
     * with nothing written, when the ring lacks space (it never becomes completely full); queued packets are
     * published either way, so a caller that waits for space never waits on its own unpublished bytes.
     * Signals the peer only if the ring went from empty to non-empty and the reader has not masked interrupts.
     */
    public boolean tryWrite(int type, int flags, long transId, MemorySegment ext, long extOffset, int extLength,
                            MemorySegment src, long srcOffset, int length) {
        final boolean written = tryQueue(type, flags, transId, ext, extOffset, extLength, src, srcOffset, length);
        if (!batching) {
            flush();
        }
        return written;
    }

    /**
     * Burst API, step 1: writes the packet like {@link #tryWrite} but does not publish it: the reader cannot
     * see it (and the peer is not signalled) until {@link #flush}, {@link #endBatch} or the next publishing
     * {@link #tryWrite}. A sender with several packets ready queues them and flushes once: one write_index
     * store and one StoreLoad fence (the one Hyper-V's signalling rule needs per publish) for the whole burst
     * instead of one per packet. Queued packets use ring space; false when the ring lacks space for this one.
     */
    public boolean tryQueue(int type, int flags, long transId, MemorySegment src, long srcOffset, int length) {
        return tryQueue(type, flags, transId, null, 0, 0, src, srcOffset, length);
    }

    /** {@link #tryQueue(int, int, long, MemorySegment, long, int)} with a descriptor extension (see {@link #tryWrite}). */
    public boolean tryQueue(int type, int flags, long transId, MemorySegment ext, long extOffset, int extLength,
                            MemorySegment src, long srcOffset, int length) {
        // the caller's lengths, bounded once against the ring before any raw write (and before the sums
        // below could overflow); the caller's offsets are bounded by MemorySegment.copy on its own buffers
        if (length < 0 || extLength < 0 || (extLength & 7) != 0 || length >= dataSize || extLength >= dataSize) {
            throw new IllegalArgumentException("length " + length + " / extension " + extLength + " cannot fit a ring of " + dataSize);
        }
        final int headerLength = HEADER_LENGTH + extLength;
        final int packetLength = headerLength + ((length + 7) & ~7);
        if (packetLength > PacketDescriptor.MAX_PACKET_LENGTH || packetLength + TRAILER_LENGTH >= dataSize) {
            throw new IllegalArgumentException("packet of " + packetLength + " bytes cannot fit a ring of " + dataSize);
        }
        final int total = packetLength + TRAILER_LENGTH;
        final int oldWrite = writeIndex;
        // Space from the cached read index first (Agrona's head cache): the control page's cache line is
        // written by the reader on every batch, so reading read_index per packet costs a line transfer. A
        // stale cache only under-states the free space; the fresh value is read when it looks too small.
        int free = freeSpace(readIndexCache, oldWrite);
        if (total >= free) {
            free = freeSpace(refreshReadIndex(), oldWrite);
            if (total >= free) {
                return false; // never full: read == write must keep meaning "empty"
            }
        }
        // the four u16 descriptor fields as one little-endian u64 (type @0, offset8 @2, len8 @4, flags @6)
        putLong(oldWrite, (type & 0xffffL) | (long) (headerLength >>> 3) << 16
            | (long) (packetLength >>> 3) << 32 | (flags & 0xffffL) << 48);
        putLong(oldWrite + PacketDescriptor.TRANS_ID_OFFSET, transId);
        if (extLength > 0) {
            copyIn(oldWrite + HEADER_LENGTH, ext, extOffset, extLength);
        }
        if (length > 0) {
            copyIn(oldWrite + headerLength, src, srcOffset, length);
        }
        putLong(oldWrite + packetLength, (long) oldWrite << 32); // trailer: previous write index
        int newWrite = oldWrite + total;
        if (newWrite >= dataSize) {
            newWrite -= dataSize;
        }
        writeIndex = newWrite;
        packetsWritten++;
        return true;
    }

    /**
     * Burst API, step 2: publishes every packet queued since the last publish with one write_index store and
     * one fence, and signals the peer at most once: if the reader had consumed everything published before
     * (the ring went from empty to non-empty) and has not masked interrupts, the rule Hyper-V applies per
     * publish, applied to the burst. Returns false (and does nothing) when nothing is queued.
     *
     * @throws RingException when the reader's read_index, read for the signal decision, is impossible
     */
    public boolean flush() {
        if (writeIndex == published) {
            return false;
        }
        publish();
        return true;
    }

    /** Writer: true when packets are written but not yet published ({@link #tryQueue}, {@link #beginBatch}). */
    public boolean hasQueued() {
        return writeIndex != published;
    }

    /**
     * Starts a batch: until {@link #endBatch}, {@link #tryWrite} queues instead of publishing, so code that
     * only knows {@code tryWrite} (a handler completing requests during a VSP agent's duty cycle) still
     * publishes once per cycle. The signal rule is applied to the batch as a whole (see {@link #flush}).
     */
    public void beginBatch() {
        batching = true;
    }

    /** Ends the batch and publishes what it queued (no-op if none). */
    public void endBatch() {
        if (batching) {
            batching = false;
            flush();
        }
    }

    private void publish() {
        final int previouslyPublished = published;
        published = writeIndex;
        // release: every packet byte written so far is visible before the index that publishes it
        putIntRelease(WRITE_INDEX_OFFSET, writeIndex);
        // StoreLoad: our write_index store must be globally visible before we sample interrupt_mask and
        // read_index; otherwise a reader arming its interrupt could miss both the index and the signal.
        UnsafeApi.fullFence();
        if (getIntVolatile(INTERRUPT_MASK_OFFSET) == 0) {
            // the read index is read here anyway: validate it, so a corrupted one is seen on this path too
            // (tryWrite only re-reads it when its cached copy says the ring is full)
            final int read = getIntVolatile(READ_INDEX_OFFSET);
            if (read < 0 || read >= dataSize || (read & 7) != 0) {
                throw new RingException(RingException.Reason.BAD_INDEX, read, "read_index " + read + " (dataSize " + dataSize + ")");
            }
            if (read == previouslyPublished) {
                signalsSent++;
                peer.ring();
            }
        }
    }

    /**
     * Asks the reader to signal once {@code bytes} are free (pending_send_sz) and re-checks: returns true
     * if the space is already there (retry the write now), false if the caller may block on its doorbell.
     */
    public boolean requestSpace(int bytes) {
        putIntVolatile(PENDING_SEND_SZ_OFFSET, bytes); // volatile: StoreLoad before re-reading read_index
        if (bytesFree() > bytes) {
            return true;
        }
        // the reader can only free space it can see: a writer must never wait on its own queued packets
        // (published only here, when the space is missing: a VSP that calls this as a space check on every
        // packet keeps its duty-cycle batch)
        flush();
        return false;
    }

    /**
     * Writer: true when a packet with {@code extLength} extension and {@code length} data bytes fits now
     * (queued packets count as used). Reads read_index only when the cached one says it does not fit; an
     * impossible read_index reads as "no space" (the next write reports it).
     */
    public boolean hasSpaceFor(int extLength, int length) {
        final int need = spaceFor(extLength, length);
        return need < freeSpace(readIndexCache, writeIndex) || need < bytesFree();
    }

    /** Clears pending_send_sz after a successful write (the reader stops checking). */
    public void clearPendingSend() {
        if (getIntVolatile(PENDING_SEND_SZ_OFFSET) != 0) {
            putIntRelease(PENDING_SEND_SZ_OFFSET, 0);
        }
    }

    /** Bytes a writer could use now (including the trailer), from the validated read index. */
    public int bytesFree() {
        int read = getIntAcquire(READ_INDEX_OFFSET);
        if (read < 0 || read >= dataSize || (read & 7) != 0) {
            return 0;
        }
        readIndexCache = read;
        return freeSpace(read, writeIndex);
    }

    private int freeSpace(int read, int write) {
        return read > write ? read - write : dataSize - write + read;
    }

    /** Writer: re-reads and validates read_index into the cache. */
    private int refreshReadIndex() {
        // acquire: the reader's reads of the bytes it released happen-before we overwrite them
        final int read = getIntAcquire(READ_INDEX_OFFSET);
        if (read < 0 || read >= dataSize || (read & 7) != 0) {
            // the peer corrupted its own read index: the owner resets the channel
            throw new RingException(RingException.Reason.BAD_INDEX, read, "read_index " + read + " (dataSize " + dataSize + ")");
        }
        readIndexCache = read;
        return read;
    }

    /** Packet bytes (with trailer) needed to write {@code length} data bytes with {@code extLength} extension. */
    public static int spaceFor(int extLength, int length) {
        return HEADER_LENGTH + extLength + ((length + 7) & ~7) + TRAILER_LENGTH;
    }

    // ------------------------------------------------------------------ reader side

    /**
     * Hands up to {@code limit} packets to {@code handler} in place and publishes the new read index.
     * Returns how many were consumed (0 when empty). Every descriptor is checked against the write index
     * before the handler sees it.
     *
     * @throws RingException when the peer wrote an impossible index or descriptor; nothing after the bad
     *         value is consumed and the ring must be reset.
     */
    public int tryRead(PacketHandler handler, int limit) {
        // acquire: the packet bytes written before this index are visible to the loads below
        final int write = getIntAcquire(WRITE_INDEX_OFFSET);
        final int start = readIndex;
        if (write == start) {
            if (start != readPublished) {
                publishIfAsked(); // lazy: a writer blocked on space asks through pending_send_sz
            }
            return 0;
        }
        if (write < 0 || write >= dataSize || (write & 7) != 0) {
            throw new RingException(RingException.Reason.BAD_INDEX, write, "write_index " + write + " (dataSize " + dataSize + ")");
        }
        int read = start;
        int available = write > read ? write - read : dataSize - read + write;
        int count = 0;
        while (available > 0 && count < limit) {
            if (available < HEADER_LENGTH + TRAILER_LENGTH) {
                throw new RingException(RingException.Reason.SHORT_PACKET, read, available + " bytes before write_index");
            }
            // read the descriptor once, as one u64 (a consistent snapshot: the guest can rewrite it under us)
            final long word = getLong(read);
            final int type = (int) word & 0xffff;
            final int offset8 = (int) (word >>> 16) & 0xffff;
            final int len8 = (int) (word >>> 32) & 0xffff;
            final int flags = (int) (word >>> 48);
            final long transId = getLong(read + PacketDescriptor.TRANS_ID_OFFSET);
            final int packetLength = len8 << 3;
            if (offset8 < 2 || offset8 > len8) {
                throw new RingException(RingException.Reason.BAD_DESCRIPTOR, read, "offset8=" + offset8 + " len8=" + len8);
            }
            if (packetLength + TRAILER_LENGTH >= dataSize) {
                throw new RingException(RingException.Reason.PACKET_TOO_LARGE, read, "len8=" + len8 + " dataSize=" + dataSize);
            }
            if (packetLength + TRAILER_LENGTH > available) {
                throw new RingException(RingException.Reason.BAD_DESCRIPTOR, read,
                    "len8=" + len8 + " runs past write_index " + write + " (" + available + " bytes available)");
            }
            final boolean consumed;
            if (doubleMapped || read + packetLength <= dataSize) {
                consumed = handler.onPacket(data, read, packetLength, type, flags, transId);
            } else {
                int first = dataSize - read;
                MemorySegment.copy(data, read, scratch, 0, first);
                MemorySegment.copy(data, 0, scratch, first, packetLength - first);
                consumed = handler.onPacket(scratch, 0, packetLength, type, flags, transId);
            }
            if (!consumed) {
                break;
            }
            final int total = packetLength + TRAILER_LENGTH;
            read += total;
            if (read >= dataSize) {
                read -= dataSize;
            }
            available -= total;
            count++;
        }
        if (count > 0) {
            readIndex = read;
            packetsRead += count;
            if (!lazyReadIndex || unpublishedBytes() >= dataSize >>> 2) {
                publishReadIndex();
                return count;
            }
        }
        if (readIndex != readPublished) {
            publishIfAsked();
        }
        return count;
    }

    /**
     * Reader: publish read_index lazily (on) or after every read batch (off, the default). A lazy reader stores
     * read_index only (1) once a quarter of the ring has been consumed since the last store, (2) whenever the
     * writer has set pending_send_sz (read on every {@link #tryRead}, the empty ones included: it sits on the
     * cache line the read of write_index just loaded), and (3) always in {@link #armInterrupt}, before the
     * interrupt is unmasked. A busy reader then only reads the control cache line and the writer only writes
     * it: the line no longer bounces back for a read_index store after every batch.
     *
     * <p>Why Hyper-V's rules still hold (a real VSC sees no difference it could act on):
     * <ul>
     *   <li>Signal on write: the writer reads read_index to signal only when interrupt_mask is 0. A polling reader
     *       keeps the mask at 1; before it clears the mask it publishes read_index ({@link #armInterrupt}:
     *       read_index store, mask store, StoreLoad, re-check write_index), so a writer that sees mask 0 sees the
     *       reader's true position, and "read_index == the write index before my publish" means exactly what it
     *       means with an eager reader. A reader that never masks still publishes before it sleeps, and while it
     *       polls a missed signal costs nothing.</li>
     *   <li>pending_send_sz: the writer stores it (StoreLoad) and re-reads read_index. Either that re-read sees the
     *       space, or the reader sees pending_send_sz at its next poll (it keeps polling until it arms, and arming
     *       publishes with the same store-fence-check), publishes and signals once the free space crosses the
     *       request, measured from the index the writer could last see, as Linux's {@code hv_pkt_iter_close}
     *       does. A reader going to sleep always publishes, so a blocked writer is never left behind a sleeping
     *       reader.</li>
     *   <li>A writer that polls for space without pending_send_sz (old hosts "simply poll if full") sees free
     *       space that lags the truth by less than a quarter of the ring while the reader polls, and the exact
     *       value once it sleeps.</li>
     * </ul>
     * A hostile writer that keeps pending_send_sz set only makes this reader publish after every batch (the
     * eager cost), on its own channel. Reader thread only; turning it off publishes what is pending.
     */
    public void publishReadIndexLazily(boolean on) {
        lazyReadIndex = on;
        if (!on && readIndex != readPublished) {
            publishReadIndex();
        }
    }

    /** Reader: whether read_index is published lazily ({@link #publishReadIndexLazily}). */
    public boolean readIndexLazy() {
        return lazyReadIndex;
    }

    /** Reader: bytes consumed but not yet published in read_index (0 unless lazy). */
    public int unpublishedBytes() {
        final int from = readPublished;
        final int to = readIndex;
        return to >= from ? to - from : dataSize - from + to;
    }

    /** Lazy reader: publish now if the writer asked for space (pending_send_sz set). */
    private void publishIfAsked() {
        if (getIntAcquire(PENDING_SEND_SZ_OFFSET) != 0) {
            publishReadIndex();
        }
    }

    /** Stores read_index, then applies the pending_send_sz rule to the space freed since the last store. */
    private void publishReadIndex() {
        final int from = readPublished;
        final int read = readIndex;
        readPublished = read;
        // release: our loads of the consumed packets complete before the writer may reuse their bytes
        putIntRelease(READ_INDEX_OFFSET, read);
        signalBlockedWriter(from, read);
    }

    /**
     * Honours pending_send_sz: wake a blocked writer once free space crosses what it asked for. {@code start} is
     * the read_index the writer could see before this store (the previous publish), {@code read} the new one.
     */
    private void signalBlockedWriter(int start, int read) {
        // StoreLoad: publish read_index before sampling pending_send_sz; pairs with requestSpace()'s
        // volatile store + re-read, so either the writer sees our space or we see its request.
        UnsafeApi.fullFence();
        int pending = getIntVolatile(PENDING_SEND_SZ_OFFSET);
        if (pending == 0) {
            return;
        }
        int write = getIntVolatile(WRITE_INDEX_OFFSET);
        if (write < 0 || write >= dataSize) {
            return; // the next tryRead reports the bad index
        }
        int freeNow = read > write ? read - write : dataSize - write + read;
        int consumed = read >= start ? read - start : dataSize - start + read;
        if (freeNow - consumed > pending || freeNow <= pending) {
            return; // was already enough before this read, or still not enough
        }
        signalsSent++;
        peer.ring();
    }

    /** Reader: true when there is nothing to read. */
    public boolean isEmpty() {
        return getIntAcquire(WRITE_INDEX_OFFSET) == readIndex;
    }

    /** Reader: tell the writer not to signal (we are polling). Plain ordered store; a stale 0 only costs a signal. */
    public void maskInterrupts() {
        putIntRelease(INTERRUPT_MASK_OFFSET, 1);
    }

    /**
     * Reader about to sleep: publishes read_index (if a {@linkplain #publishReadIndexLazily lazy} reader held it
     * back), clears interrupt_mask, then re-checks the ring. Returns true when it is still empty (safe to block
     * on the doorbell), false when a packet slipped in (keep polling).
     */
    public boolean armInterrupt() {
        if (readIndex != readPublished) {
            // before the mask is cleared: a writer that sees mask 0 must see where we really are, or its
            // "ring was empty before my publish" check (read_index == its old write index) fails and it never signals
            publishReadIndex();
        }
        putIntVolatile(INTERRUPT_MASK_OFFSET, 0);
        // volatile store then volatile load = StoreLoad: pairs with the writer's fullFence, so either it
        // sees mask == 0 and signals, or we see its new write_index here.
        return getIntVolatile(WRITE_INDEX_OFFSET) == readIndex;
    }

    public long signalsSent() {
        return signalsSent;
    }

    public long packetsWritten() {
        return packetsWritten;
    }

    public long packetsRead() {
        return packetsRead;
    }

    /** The writer's private write index (for tests and status). */
    public int writeIndex() {
        return writeIndex;
    }

    /** The reader's private read index. */
    public int readIndex() {
        return readIndex;
    }

    // ------------------------------------------------------------------ wrap-aware accessors

    private int checkedIndex(int index, String name) {
        if (index < 0 || index >= dataSize || (index & 7) != 0) {
            throw new RingException(RingException.Reason.BAD_INDEX, index, name + " " + index + " (dataSize " + dataSize + ")");
        }
        return index;
    }

    private long at(int pos) {
        // double-mapped: any pos < 2*dataSize is addressable directly; single-mapped: fields never straddle
        // the end (8-aligned packet starts, fields of 2 or 8 bytes at aligned offsets), so wrap the start.
        return doubleMapped || pos < dataSize ? pos : pos - dataSize;
    }

    private void putLong(int pos, long v) {
        UnsafeApi.putLong(null, dataAddress + at(pos), v);
    }

    private long getLong(int pos) {
        return UnsafeApi.getLong(null, dataAddress + at(pos));
    }

    private int getIntVolatile(int controlOffset) {
        return UnsafeApi.getIntVolatile(null, controlAddress + controlOffset);
    }

    private int getIntAcquire(int controlOffset) {
        return UnsafeApi.getIntAcquire(null, controlAddress + controlOffset);
    }

    private void putIntRelease(int controlOffset, int v) {
        UnsafeApi.putIntRelease(null, controlAddress + controlOffset, v);
    }

    private void putIntVolatile(int controlOffset, int v) {
        UnsafeApi.putIntVolatile(null, controlAddress + controlOffset, v);
    }

    private void copyIn(int pos, MemorySegment src, long srcOffset, int length) {
        int p = (int) at(pos);
        if (doubleMapped || p + length <= dataSize) {
            // within data: double-mapped, p + length <= write index + packet length < 2 * dataSize (tryQueue bounds the
            // packet below dataSize); single-mapped, the condition above
            PayloadCopy.copy(src, srcOffset, data, dataAddress, p, length);
        } else {
            int first = dataSize - p;
            MemorySegment.copy(src, srcOffset, data, p, first);
            MemorySegment.copy(src, srcOffset + first, data, 0, length - first);
        }
    }
}
