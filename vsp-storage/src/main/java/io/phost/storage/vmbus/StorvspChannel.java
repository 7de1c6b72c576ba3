package io.phost.storage.vmbus;

import io.phost.core.sys.DeviceWait;
import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.GpaDirectRanges;
import io.phost.core.vmbus.GuestMemory;
import io.phost.core.vmbus.GuestMemoryException;
import io.phost.core.vmbus.HandoffSampler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.scsi.Scsi;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.SenseData;
import io.phost.storage.scsi.TaskFunction;
import io.phost.storage.scsi.TaskResponse;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vmbus.StorvscDescriptor.*;

/**
 * One storvsc channel (queue) of the storage VSP, run by that channel's agent thread. Decodes
 * {@code vstor_packet}s, runs the initialization handshake on the primary channel, and turns EXECUTE_SRB
 * into {@link ScsiRequest}s whose data buffers are the guest's own pages: every page of the GPA-direct
 * range is resolved through {@link GuestMemory} (GPADL-granted, not a ring page) and added to the
 * request's iovec list, which the engine reads and writes in place (zero copy).
 *
 * <pre>
 *  guest ring ──onPacket──▶ copy 64-byte vstor_packet once (guest may rewrite it) ──▶ validate
 *       EXECUTE_SRB ──▶ resolve pages ──▶ ScsiQueue.submit ──▶ engine ──▶ onScsiComplete
 *       ◀── COMPLETE_IO (completion packet, same transId) ◀── pending list if the ring is full
 * </pre>
 * A request the guest got wrong (bad LUN, CDB length, transfer length that disagrees with the page list,
 * a page outside its GPADLs) is answered with an SRB error and sense data; nothing else is touched.
 */
public final class StorvspChannel implements ChannelHandler, ScsiQueue.Completion {
    /** Largest transfer we accept and advertise (QUERY_PROPERTIES.max_transfer_bytes): the storage core's limit. */
    public static final int MAX_TRANSFER_BYTES = ScsiLun.MAX_TRANSFER_BYTES;
    private static final long WAIT_NANOS = 50_000L;
    private static final int NO_FORCED_STATUS = 0x7FFFFFFF;
    private static final long FOLLOW_UP_NANOS = 10_000L;
    private static final int MAX_SEGMENTS = MAX_TRANSFER_BYTES / GuestMemory.PAGE_SIZE + 1;

    /** How long a reset waits for commands already in the kernel before it reports failure. */
    private static final long RESET_TIMEOUT_MILLIS = 30_000;
    private final ChannelContext ctx;
    private final ScsiQueue queue;
    private final int subChannels;
    private final Runnable onChannelClosed;
    private final GpaDirectRanges ranges = new GpaDirectRanges();
    private final MemorySegment request;
    private final MemorySegment reply;
    private final MemorySegment guest;
    private final long guestBase;
    private final long[] transIds;
    private final boolean[] wantsCompletion;
    private final byte[] srbEcho;
    private final int[] replyLength;
    private final int[] pending;
    private int pendingHead;
    private int pendingCount;
    private boolean begun;
    private boolean ready;
    private int version;
    private volatile boolean enumerateBus;
    private long hostileRequests;
    private long lastActivity;
    private boolean sawPacket;
    private final HandoffSampler sampler;
    private final long[] toEngine;
    private int toEngineCount;
    /** Non-null once the agent can sleep through the queue's engines and the doorbell together (DeviceWait). */
    private DeviceWait deviceWait;

    public StorvspChannel(ChannelContext ctx, ScsiTarget target, int depth, int subChannels, Runnable onChannelClosed) {
        this(ctx, target, target.newInitiator(), depth, subChannels, onChannelClosed);
    }

    /** A channel of {@code initiator}: the guest's primary channel and its sub-channels are one I_T nexus. */
    public StorvspChannel(ChannelContext ctx, ScsiTarget target, ScsiTarget.Initiator initiator, int depth, int subChannels,
                          Runnable onChannelClosed) {
        this.ctx = ctx;
        this.subChannels = subChannels;
        this.onChannelClosed = onChannelClosed;
        this.queue = new ScsiQueue(target, depth, MAX_SEGMENTS, this, null, initiator);
        Arena arena = Arena.ofAuto();
        this.request = arena.allocate(PACKET_SIZE, 8);
        this.reply = arena.allocate(PACKET_SIZE, 8);
        this.guest = ctx.guestMemory().segment();
        this.guestBase = guest.address();
        this.transIds = new long[depth];
        this.wantsCompletion = new boolean[depth];
        this.srbEcho = new byte[depth * 8];
        this.replyLength = new int[depth];
        this.pending = new int[depth];
        // Sub-channels need no handshake: the primary already negotiated (as in Linux storvsc).
        this.ready = ctx.subChannelIndex() != 0;
        this.begun = ready;
        this.version = VERSION_WIN10;
        this.sampler = HandoffSampler.forChannel(ctx.relid());
        this.toEngine = HandoffSampler.ENABLED ? new long[depth] : null;
    }

    /** Asks the guest to rescan the bus (LUN hot-add/remove); safe from any thread. */
    public void requestBusRescan() {
        enumerateBus = true;
        ctx.wakeup();
    }

    public long hostileRequests() {
        return hostileRequests;
    }

    public ScsiQueue queue() {
        return queue;
    }

    @Override
    public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
        sawPacket = true;
        if (HandoffSampler.ENABLED) {
            sampler.stamp(transId, HandoffSampler.HOST_PICKUP);
        }
        long data;
        int n;
        boolean gpa = type == PacketDescriptor.TYPE_GPA_DIRECT;
        if (gpa) {
            ranges.wrap(buf, off, len);
            data = ranges.dataOffset();
            n = ranges.dataLength();
        } else if (type == PacketDescriptor.TYPE_INBAND) {
            data = PacketDescriptor.dataOffset(buf, off);
            n = PacketDescriptor.dataLength(buf, off, len);
        } else {
            ctx.fault("storvsc: unexpected packet type " + type);
            return true;
        }
        boolean completion = (flags & PacketDescriptor.FLAG_COMPLETION_REQUESTED) != 0;
        if (n < UNION_OFFSET) {
            hostileRequests++;
            ctx.fault("storvsc: vstor_packet of " + n + " bytes");
            return true;
        }
        // Read the guest's packet exactly once: from here on we only look at our copy.
        int copied = Math.min(n, PACKET_SIZE);
        request.fill((byte) 0);
        MemorySegment.copy(buf, data, request, 0, copied);
        int op = request.get(U32, OPERATION_OFFSET);
        if (op == OP_EXECUTE_SRB) {
            return executeSrb(gpa, transId, completion, copied);
        }
        if (gpa) {
            return control(op, transId, completion, copied, STATUS_INVALID_DEVICE_REQUEST);
        }
        return control(op, transId, completion, copied, NO_FORCED_STATUS);
    }

    /** The initialization handshake and other non-SRB operations. Always completes inline. */
    private boolean control(int op, long transId, boolean completion, int length, int forcedStatus) {
        int status = STATUS_SUCCESS;
        reply.fill((byte) 0);
        MemorySegment.copy(request, 0, reply, 0, PACKET_SIZE);
        if (forcedStatus != NO_FORCED_STATUS) {
            status = forcedStatus;
        } else {
            switch (op) {
                case OP_BEGIN_INITIALIZATION -> {
                    begun = true;
                    ready = false;
                }
                case OP_QUERY_PROTOCOL_VERSION -> {
                    int v = request.get(U16, VERSION_MAJOR_MINOR) & 0xFFFF;
                    if (!begun || (v != VERSION_WIN10 && v != VERSION_WIN8_1 && v != VERSION_WIN8)) {
                        status = STATUS_REVISION_MISMATCH;
                    } else {
                        version = v;
                    }
                }
                case OP_QUERY_PROPERTIES -> {
                    if (!begun) {
                        status = STATUS_INVALID_DEVICE_REQUEST;
                    } else {
                        reply.asSlice(UNION_OFFSET, PACKET_SIZE - UNION_OFFSET).fill((byte) 0);
                        reply.set(U16, PROP_MAX_CHANNEL_CNT, (short) subChannels);
                        reply.set(U32, PROP_FLAGS, subChannels > 0 ? PROP_MULTI_CHANNEL : 0);
                        reply.set(U32, PROP_MAX_TRANSFER_BYTES, MAX_TRANSFER_BYTES);
                    }
                }
                case OP_END_INITIALIZATION -> {
                    if (!begun) {
                        status = STATUS_INVALID_DEVICE_REQUEST;
                    } else {
                        ready = true;
                    }
                }
                case OP_CREATE_SUB_CHANNELS -> {
                    int count = request.get(U16, SUB_CHANNEL_COUNT) & 0xFFFF;
                    if (!ready || ctx.subChannelIndex() != 0 || count == 0 || count > subChannels) {
                        status = STATUS_INVALID_DEVICE_REQUEST;
                    } else {
                        ctx.offerSubChannels(count);
                    }
                }
                case OP_RESET_LUN, OP_RESET_ADAPTER, OP_RESET_BUS -> {
                    // storvsc names no LUN in a reset: it resets the adapter, i.e. the whole target. This queue
                    // keeps completing (and replying through `reply`) while the core aborts, so rebuild it after.
                    TaskResponse done = queue.target().manage(TaskFunction.I_T_NEXUS_RESET, 0, 0, RESET_TIMEOUT_MILLIS, queue);
                    reply.fill((byte) 0);
                    MemorySegment.copy(request, 0, reply, 0, PACKET_SIZE);
                    status = done == TaskResponse.FUNCTION_COMPLETE ? STATUS_SUCCESS : STATUS_UNSUCCESSFUL;
                }
                default -> {
                    hostileRequests++;
                    status = STATUS_INVALID_DEVICE_REQUEST;
                }
            }
        }
        reply.set(U32, OPERATION_OFFSET, OP_COMPLETE_IO);
        reply.set(U32, FLAGS_OFFSET, 0);
        reply.set(U32, STATUS_OFFSET, status);
        if (!completion) {
            return true;
        }
        if (ctx.tryComplete(transId, reply, 0, Math.max(length, UNION_OFFSET + 4))) {
            return true;
        }
        ctx.requestSpace(PACKET_SIZE + 64);
        return false; // ring full: leave the packet, redo it later (idempotent)
    }

    private boolean executeSrb(boolean gpa, long transId, boolean completion, int length) {
        if (!ready) {
            hostileRequests++;
            return control(OP_EXECUTE_SRB, transId, completion, length, STATUS_INVALID_DEVICE_REQUEST);
        }
        if (pendingCount > 0) {
            return false; // completions are waiting for ring space: do not take more work
        }
        ScsiRequest r = queue.tryAcquire();
        if (r == null) {
            return false; // queue full: leave the packet in the ring (back-pressure)
        }
        int slot = r.slot();
        transIds[slot] = transId;
        wantsCompletion[slot] = completion;
        replyLength[slot] = Math.max(length, UNION_OFFSET + VMSCSI_REQUEST_LENGTH - 16);
        MemorySegment.copy(request, ValueLayout.JAVA_BYTE, SRB_PORT, srbEcho, slot * 8, 8);
        int lun = request.get(ValueLayout.JAVA_BYTE, SRB_LUN) & 0xFF;
        int target = request.get(ValueLayout.JAVA_BYTE, SRB_TARGET_ID) & 0xFF;
        int path = request.get(ValueLayout.JAVA_BYTE, SRB_PATH_ID) & 0xFF;
        int cdbLength = request.get(ValueLayout.JAVA_BYTE, SRB_CDB_LENGTH) & 0xFF;
        int dataIn = request.get(ValueLayout.JAVA_BYTE, SRB_DATA_IN) & 0xFF;
        long transfer = request.get(U32, SRB_DATA_TRANSFER_LENGTH) & 0xFFFFFFFFL;
        if (target != 0 || path != 0 || lun >= ScsiTarget.MAX_LUNS) {
            return early(r, SRB_STATUS_INVALID_LUN, 0, 0);
        }
        if (cdbLength < 1 || cdbLength > 16) {
            hostileRequests++;
            return early(r, SRB_STATUS_INVALID_REQUEST, Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        }
        int direction = switch (dataIn) {
            case DATA_WRITE -> ScsiRequest.DIR_OUT;
            case DATA_READ -> ScsiRequest.DIR_IN;
            default -> ScsiRequest.DIR_UNKNOWN;
        };
        r.reset(lun, request, SRB_CDB, cdbLength, direction, transId);
        if (transfer > MAX_TRANSFER_BYTES) {
            hostileRequests++;
            return early(r, SRB_STATUS_INVALID_REQUEST, Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        }
        if (gpa) {
            if (!addPages(r.data(), transfer)) {
                hostileRequests++;
                return early(r, SRB_STATUS_INVALID_REQUEST, Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
            }
        } else if (transfer != 0) {
            hostileRequests++; // data promised but no pages described
            return early(r, SRB_STATUS_INVALID_REQUEST, Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        }
        if (HandoffSampler.ENABLED) {
            toEngine[Math.min(toEngineCount++, toEngine.length - 1)] = transId; // stamped when doWork hands the batch to the engine
        }
        queue.submit(r);
        return true;
    }

    /**
     * Resolves every page of the GPA-direct ranges into iovecs over guest memory. False when a page is not
     * granted (or is a ring page, or out of range) or the ranges do not add up to {@code transfer} bytes.
     */
    private boolean addPages(IoVecs vecs, long transfer) {
        GuestMemory memory = ctx.guestMemory();
        long total = 0;
        try {
            for (int i = 0; i < ranges.rangeCount(); i++) {
                int pages = ranges.pageCount(i);
                for (int p = 0; p < pages; p++) {
                    long at = ranges.resolve(memory, i, p);
                    int n = ranges.pageLength(i, p);
                    total += n;
                    if (total > transfer || !vecs.tryAdd(guestBase + at, n)) {
                        return false;
                    }
                }
            }
        } catch (GuestMemoryException e) {
            return false;
        }
        return total == transfer;
    }

    /** Completes a request that failed validation before reaching the SCSI layer. */
    private boolean early(ScsiRequest r, int srbStatus, int senseKey, int ascq) {
        int slot = r.slot();
        buildReply(slot, srbStatus, senseKey == 0 ? Scsi.STATUS_GOOD : Scsi.STATUS_CHECK_CONDITION, 0);
        if (senseKey != 0) {
            SenseData.writeFixed(reply.asSlice(SRB_SENSE, Scsi.FIXED_SENSE_LENGTH), senseKey, ascq, -1, -1);
            reply.set(ValueLayout.JAVA_BYTE, SRB_SENSE_INFO_LENGTH, (byte) Scsi.FIXED_SENSE_LENGTH);
            reply.set(ValueLayout.JAVA_BYTE, SRB_SRB_STATUS, (byte) (srbStatus | SRB_STATUS_AUTOSENSE_VALID));
        }
        sendOrQueue(slot);
        return true;
    }

    private void buildReply(int slot, int srbStatus, int scsiStatus, long transferred) {
        reply.fill((byte) 0);
        reply.set(U32, OPERATION_OFFSET, OP_COMPLETE_IO);
        reply.set(U32, STATUS_OFFSET, STATUS_SUCCESS);
        reply.set(U16, SRB_LENGTH, (short) VMSCSI_REQUEST_LENGTH);
        MemorySegment.copy(srbEcho, slot * 8, reply, ValueLayout.JAVA_BYTE, SRB_PORT, 8);
        reply.set(ValueLayout.JAVA_BYTE, SRB_SRB_STATUS, (byte) srbStatus);
        reply.set(ValueLayout.JAVA_BYTE, SRB_SCSI_STATUS, (byte) scsiStatus);
        reply.set(ValueLayout.JAVA_BYTE, SRB_SENSE_INFO_LENGTH, (byte) 0);
        reply.set(U32, SRB_DATA_TRANSFER_LENGTH, (int) transferred);
    }

    @Override
    public void onScsiComplete(ScsiRequest r) {
        int slot = r.slot();
        if (HandoffSampler.ENABLED) {
            sampler.stamp(transIds[slot], HandoffSampler.COMPLETION_SEEN);
        }
        boolean good = r.status() == Scsi.STATUS_GOOD;
        buildReply(slot, good ? SRB_STATUS_SUCCESS : SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID,
            r.status(), r.transferred());
        if (!good && r.senseLength() > 0) {
            int sl = Math.min(r.senseLength(), SRB_SENSE_BUFFER_SIZE);
            MemorySegment.copy(r.sense(), 0, reply, SRB_SENSE, sl);
            reply.set(ValueLayout.JAVA_BYTE, SRB_SENSE_INFO_LENGTH, (byte) sl);
        }
        sendOrQueue(slot);
    }

    /** Sends the reply in {@link #reply} for {@code slot}, or parks the slot until the ring has room. */
    private void sendOrQueue(int slot) {
        if (!wantsCompletion[slot]) {
            queue.release(queue.slot(slot));
            return;
        }
        if (HandoffSampler.ENABLED) {
            sampler.stamp(transIds[slot], HandoffSampler.COMPLETION_POSTED);
        }
        if (pendingCount == 0 && ctx.tryComplete(transIds[slot], reply, 0, replyLength[slot])) {
            queue.release(queue.slot(slot));
            return;
        }
        pending[(pendingHead + pendingCount) % pending.length] = slot;
        pendingCount++;
        savePending(slot);
        ctx.requestSpace(PACKET_SIZE + 64);
    }

    /** Finished replies waiting for ring space, by slot; allocated once, only if the ring ever fills. */
    private byte[][] saved;

    private void savePending(int slot) {
        if (saved == null) {
            saved = new byte[pending.length][PACKET_SIZE]; // allocated once, only if the ring ever fills
        }
        MemorySegment.copy(reply, ValueLayout.JAVA_BYTE, 0, saved[slot], 0, PACKET_SIZE);
    }

    private int flushPending() {
        int sent = 0;
        while (pendingCount > 0) {
            int slot = pending[pendingHead];
            MemorySegment.copy(saved[slot], 0, reply, ValueLayout.JAVA_BYTE, 0, PACKET_SIZE);
            if (!ctx.tryComplete(transIds[slot], reply, 0, replyLength[slot])) {
                ctx.requestSpace(PACKET_SIZE + 64);
                break;
            }
            pendingHead = (pendingHead + 1) % pending.length;
            pendingCount--;
            queue.release(queue.slot(slot));
            sent++;
        }
        return sent;
    }

    @Override
    public int doWork() {
        int work = 0;
        if (pendingCount > 0) {
            work += flushPending();
        }
        if (enumerateBus && ctx.subChannelIndex() == 0 && ready) {
            reply.fill((byte) 0);
            reply.set(U32, OPERATION_OFFSET, OP_ENUMERATE_BUS);
            if (ctx.tryWrite(PacketDescriptor.TYPE_INBAND, 0, 0, reply, 0, PACKET_SIZE)) {
                enumerateBus = false;
                work++;
            }
        }
        if (HandoffSampler.ENABLED) {
            for (int i = 0; i < toEngineCount; i++) {
                sampler.stamp(toEngine[i], HandoffSampler.ENGINE_SUBMIT);
            }
            toEngineCount = 0;
        }
        work += queue.doWork();
        if (deviceWait != null && deviceWait.busy()) {
            return work; // idle: the agent sleeps on the completions and the doorbell in one call (io_uring_enter, ppoll)
        }
        // The clock only where it is needed: an empty cycle with nothing in flight (a spinning agent between
        // two QD1 requests, or an inline engine's) reads none (~24 ns per read on the 2-vCPU test VM).
        if (work > 0 || sawPacket) {
            sawPacket = false;
            lastActivity = System.nanoTime();
        } else if (queue.outstanding() > 0 && System.nanoTime() - lastActivity > FOLLOW_UP_NANOS) {
            // Nothing on the ring and I/O in flight: wait for it in the engine (io_uring_enter with a
            // timeout) instead of spinning; io_uring completions raise no doorbell, so the agent must not sleep.
            // Right after activity it polls the ring a little longer first: a guest answering completions
            // with new requests would otherwise wait in the ring for the next device completion.
            work += queue.awaitWork(WAIT_NANOS);
        }
        return work > 0 || queue.outstanding() > 0 ? work + 1 : 0;
    }

    @Override
    public DeviceWait deviceWait() {
        deviceWait = queue.deviceWait(); // busy() only while the engines in flight hand off (librbd; io_uring opt-in)
        return deviceWait;
    }

    @Override
    public void onClose() {
        queue.close(); // drains in-flight I/O before the guest pages can go away
        onChannelClosed.run();
    }
}
