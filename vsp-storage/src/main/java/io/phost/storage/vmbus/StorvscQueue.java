package io.phost.storage.vmbus;

import io.phost.core.sys.EventFd;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.DoorbellIdleStrategy;
import io.phost.core.vmbus.GpaDirectRanges;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.HandoffSampler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.SpinGovernor;
import io.phost.core.vmbus.VmbusClient;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static io.phost.storage.vmbus.StorvscDescriptor.*;

/**
 * One queue of the storvsc-style client (a channel or sub-channel): {@code depth} command slots, each
 * with its own data buffer in guest memory that is granted to the host once (one GPADL per queue).
 * Single-threaded: one thread submits and polls. Nothing is allocated per I/O.
 *
 * <pre>
 *   q.tryRead(slot, lun, lba, blocks)  ... q.buffer(slot) receives the data
 *   q.poll(handler)  -> handler.onComplete(slot, scsiStatus, srbStatus, transferred, senseKey, ascq)
 * </pre>
 */
public final class StorvscQueue implements AutoCloseable, PacketHandler {
    /** Receives completed commands. */
    @FunctionalInterface
    public interface Completion {
        void onComplete(int slot, int scsiStatus, int srbStatus, long transferred, int senseKey, int ascq);
    }

    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    /**
     * How long {@link #await} polls the ring for a completion, while commands are in flight, before it
     * sleeps on the doorbell. Waking a sleeping thread costs a cross-CPU wakeup (tens to hundreds of µs on a
     * virtual machine: more than a fast disk's whole I/O), so a queue with I/O outstanding polls, as
     * blk-mq poll queues and SPDK do; the budget bounds the CPU spent on a slow device.
     */
    public static final int DEFAULT_POLL_MICROS = 1_000;
    /**
     * Whether {@link #await} lets a {@link SpinGovernor} skip the poll budget while polling does not pay
     * (the thread waits for a CPU, or its polls rarely find the completion): the default. Off
     * ({@code -Dphost.guest.adaptivePoll=false}) the budget is always polled, as before issue 19's
     * adaptive mode (kept for comparison runs).
     */
    static final boolean ADAPTIVE_POLL = !"false".equals(System.getProperty("phost.guest.adaptivePoll"));
    /**
     * How long {@link #await} spins before it yields between polls. Short: the host agent that serves this queue
     * may share this thread's CPU, and a spin keeps it from running (a QD1 disk request waited for the guest's
     * 20 µs spin after each completion; issue 19, twelfth session). A completion from a fast backend (null,
     * tmpfs: ~1-5 µs) still arrives during the spin; a yield costs ~0.7 µs when nothing else wants the CPU.
     */
    private static final long SPIN_NANOS = 5_000L;
    private static final long CONTENDED_NANOS = 20_000L;
    private static final int GPADL_PAGES = 4096;
    private final ClientChannel channel;
    private final int depth;
    private final int slotBytes;
    private final GuestRam.Buffer data;
    private final MemorySegment packet;
    private final MemorySegment ranges;
    private final long[] gpas = new long[1];
    private final int[] lengths = new int[1];
    private final boolean[] busy;
    private final DoorbellIdleStrategy idle;
    private final HandoffSampler sampler;
    private final SpinGovernor governor = ADAPTIVE_POLL ? SpinGovernor.forPollingThread() : null;
    private long pollNanos = DEFAULT_POLL_MICROS * 1_000L;
    private int inFlight;
    private long sleepsBefore;
    private Completion completion;

    StorvscQueue(VmbusClient bus, ClientChannel channel, int depth, int slotBytes) {
        this.channel = channel;
        this.depth = depth;
        this.slotBytes = slotBytes;
        this.data = bus.ram().allocate((long) depth * slotBytes);
        // One GPADL describes at most ~8K pages (range_buflen is a u16): grant the region in 16 MiB pieces.
        long[] all = data.pfns();
        for (int from = 0; from < all.length; from += GPADL_PAGES) {
            int n = Math.min(GPADL_PAGES, all.length - from);
            bus.createGpadl(channel.relid(), java.util.Arrays.copyOfRange(all, from, from + n), 0, (long) n * GuestRam.PAGE_SIZE);
        }
        Arena arena = Arena.ofAuto();
        this.packet = arena.allocate(PACKET_SIZE, 8);
        this.ranges = arena.allocate(8 + 8 + 8L * (slotBytes / GuestRam.PAGE_SIZE + 2), 8);
        this.busy = new boolean[depth];
        this.sampler = HandoffSampler.forChannel(channel.relid());
        // After the poll budget of await: a short spin, two yields, then sleep on the doorbell.
        this.idle = new DoorbellIdleStrategy(channel.inbound(), EventFd.adopt(channel.hostDoorbellFd()).view(),
            500, 2, 1_000);
    }

    public int depth() {
        return depth;
    }

    /** Sets the poll budget of {@link #await} (0: no polling, only the short spin before the doorbell). */
    public void pollMicros(int micros) {
        if (micros < 0) {
            throw new IllegalArgumentException("poll budget " + micros + " µs");
        }
        this.pollNanos = micros * 1_000L;
    }

    public int inFlight() {
        return inFlight;
    }

    /** How many times {@link #await} slept on the host's doorbell (the rest found the completion polling). */
    public long doorbellSleeps() {
        return idle.sleeps();
    }

    /** Largest transfer one slot can carry. */
    public int slotBytes() {
        return slotBytes;
    }

    /** The guest-memory data buffer of {@code slot} (its first {@code length} bytes are transferred). */
    public MemorySegment buffer(int slot) {
        return data.segment().asSlice((long) slot * slotBytes, slotBytes);
    }

    public boolean isBusy(int slot) {
        return busy[slot];
    }

    /** READ(16) of {@code blocks} blocks of {@code blockSize} into the slot's buffer. False when the ring is full. */
    public boolean tryRead(int slot, int lun, long lba, int blocks, int blockSize) {
        return tryReadWrite(slot, lun, 0x88, lba, blocks, blockSize, DATA_READ);
    }

    /** WRITE(16) from the slot's buffer. False when the ring is full. */
    public boolean tryWrite(int slot, int lun, long lba, int blocks, int blockSize) {
        return tryReadWrite(slot, lun, 0x8A, lba, blocks, blockSize, DATA_WRITE);
    }

    private boolean tryReadWrite(int slot, int lun, int opcode, long lba, int blocks, int blockSize, int dataIn) {
        MemorySegment cdb = cdbScratch();
        cdb.fill((byte) 0);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) opcode);
        cdb.set(BE64, 2, lba);
        cdb.set(BE32, 10, blocks);
        return trySubmit(slot, lun, cdb, 16, dataIn, (long) blocks * blockSize);
    }

    private MemorySegment cdbScratch;

    private MemorySegment cdbScratch() {
        if (cdbScratch == null) {
            cdbScratch = Arena.ofAuto().allocate(16);
        }
        return cdbScratch;
    }

    /**
     * Sends EXECUTE_SRB with {@code cdb} for {@code lun}; {@code length} bytes of the slot's buffer are the
     * data (GPA-direct range), none when 0. False (nothing sent) when the ring is full.
     */
    public boolean trySubmit(int slot, int lun, MemorySegment cdb, int cdbLength, int dataIn, long length) {
        if (busy[slot]) {
            throw new IllegalStateException("slot " + slot + " is in flight");
        }
        if (length < 0 || length > slotBytes) {
            throw new IllegalArgumentException("transfer of " + length + " bytes; slot holds " + slotBytes);
        }
        packet.fill((byte) 0);
        packet.set(U32, OPERATION_OFFSET, OP_EXECUTE_SRB);
        packet.set(U32, FLAGS_OFFSET, REQUEST_COMPLETION_FLAG);
        packet.set(U16, SRB_LENGTH, (short) VMSCSI_REQUEST_LENGTH);
        packet.set(ValueLayout.JAVA_BYTE, SRB_LUN, (byte) lun);
        packet.set(ValueLayout.JAVA_BYTE, SRB_CDB_LENGTH, (byte) cdbLength);
        packet.set(ValueLayout.JAVA_BYTE, SRB_SENSE_INFO_LENGTH, (byte) SRB_SENSE_BUFFER_SIZE);
        packet.set(ValueLayout.JAVA_BYTE, SRB_DATA_IN, (byte) (length == 0 ? DATA_UNKNOWN : dataIn));
        packet.set(U32, SRB_DATA_TRANSFER_LENGTH, (int) length);
        MemorySegment.copy(cdb, 0, packet, SRB_CDB, cdbLength);
        if (HandoffSampler.ENABLED) {
            sampler.guestSubmit(slot);
        }
        boolean ok;
        if (length == 0) {
            ok = channel.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, slot,
                packet, 0, PACKET_SIZE);
        } else {
            gpas[0] = data.gpa() + (long) slot * slotBytes;
            lengths[0] = (int) length;
            int extLength = GpaDirectRanges.encode(ranges, 0, 1, gpas, lengths);
            ok = channel.tryWriteGpaDirect(PacketDescriptor.FLAG_COMPLETION_REQUESTED, slot, ranges, 0, extLength,
                packet, 0, PACKET_SIZE);
        }
        if (ok) {
            busy[slot] = true;
            inFlight++;
            if (HandoffSampler.ENABLED) {
                sampler.stamp(slot, HandoffSampler.GUEST_PUBLISHED);
            }
        }
        return ok;
    }

    /**
     * Starts a burst: requests submitted until {@link #endBatch} are published to the host together, with one
     * write_index store, one StoreLoad fence and at most one doorbell (Hyper-V's signalling rule applied to
     * the burst: signal if the ring was empty before it). Use it when several slots are free at once.
     */
    public void beginBatch() {
        channel.outbound().beginBatch();
    }

    /** Publishes the burst started by {@link #beginBatch} (the host sees none of it before). */
    public void endBatch() {
        channel.outbound().endBatch();
    }

    /** Sends a hand-made packet (hostile-guest tests): raw ranges and a raw vstor_packet. */
    public boolean trySubmitRaw(int slot, MemorySegment rawRanges, int rangesLength, MemorySegment vstor, int vstorLength) {
        boolean ok = rangesLength == 0
            ? channel.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, slot, vstor, 0, vstorLength)
            : channel.tryWriteGpaDirect(PacketDescriptor.FLAG_COMPLETION_REQUESTED, slot, rawRanges, 0, rangesLength,
                vstor, 0, vstorLength);
        if (ok) {
            busy[slot] = true;
            inFlight++;
        }
        return ok;
    }

    /** The guest-physical address of the slot's buffer (for hand-made range lists). */
    public long gpa(int slot) {
        return data.gpa() + (long) slot * slotBytes;
    }

    /** Delivers completions that have arrived; never blocks. */
    public int poll(Completion c) {
        completion = c;
        int n = channel.tryRead(this, 64);
        completion = null;
        return n;
    }

    /**
     * Waits until at least one completion arrives or the timeout passes: polls the ring for up to the poll
     * budget while commands are in flight (spinning for the first 5 µs, yielding the CPU between polls after
     * that, and giving up at once when a yield shows the CPU is contended), then sleeps on the doorbell.
     */
    public int await(Completion c, long timeoutNanos) {
        long start = System.nanoTime();
        boolean contended = governor != null && !governor.shouldSpin();
        boolean polled = false;
        while (true) {
            int n = poll(c);
            if (n > 0) {
                if (governor != null && polled) {
                    governor.episodeEnded(idle.sleeps() == sleepsBefore);
                }
                idle.reset();
                return n;
            }
            if (!polled) {
                polled = true;
                sleepsBefore = idle.sleeps();
            }
            long now = System.nanoTime();
            long waited = now - start;
            if (waited > timeoutNanos || !channel.isOpen()) {
                return 0;
            }
            if (inFlight > 0 && waited < pollNanos && !contended) {
                // Spin first (a ring round trip is ~1 µs), then yield between polls. A yield that took long
                // means another thread needed this CPU (perhaps the host agent we wait for): polling would
                // only steal its time, so sleep on the doorbell instead.
                if (waited < SPIN_NANOS) {
                    Thread.onSpinWait();
                } else {
                    Thread.yield();
                    contended = System.nanoTime() - now > CONTENDED_NANOS;
                }
            } else {
                idle.idle();
            }
        }
    }

    @Override
    public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
        long d = PacketDescriptor.dataOffset(buf, off);
        int n = PacketDescriptor.dataLength(buf, off, len);
        if (type == PacketDescriptor.TYPE_INBAND && n >= 4 && buf.get(U32, d) == OP_ENUMERATE_BUS) {
            rescanRequested = true;
            return true;
        }
        if (type != PacketDescriptor.TYPE_COMPLETION || transId < 0 || transId >= depth || !busy[(int) transId]) {
            return true; // not ours: ignore
        }
        int slot = (int) transId;
        if (HandoffSampler.ENABLED) {
            sampler.guestWake(slot);
        }
        busy[slot] = false;
        inFlight--;
        int status = n >= 12 ? buf.get(U32, d + STATUS_OFFSET) : -1;
        int srb = n > SRB_SRB_STATUS ? buf.get(ValueLayout.JAVA_BYTE, d + SRB_SRB_STATUS) & 0xFF : 0;
        int scsi = n > SRB_SCSI_STATUS ? buf.get(ValueLayout.JAVA_BYTE, d + SRB_SCSI_STATUS) & 0xFF : 0;
        long transferred = n >= SRB_DATA_TRANSFER_LENGTH + 4 ? buf.get(U32, d + SRB_DATA_TRANSFER_LENGTH) & 0xFFFFFFFFL : 0;
        int senseLen = n > SRB_SENSE_INFO_LENGTH ? buf.get(ValueLayout.JAVA_BYTE, d + SRB_SENSE_INFO_LENGTH) & 0xFF : 0;
        int key = 0;
        int ascq = 0;
        if (senseLen >= 14 && n >= SRB_SENSE + 14) {
            key = buf.get(ValueLayout.JAVA_BYTE, d + SRB_SENSE + 2) & 0x0F;
            ascq = ((buf.get(ValueLayout.JAVA_BYTE, d + SRB_SENSE + 12) & 0xFF) << 8)
                | (buf.get(ValueLayout.JAVA_BYTE, d + SRB_SENSE + 13) & 0xFF);
        }
        if (status != STATUS_SUCCESS) {
            srb = SRB_STATUS_ERROR;
        }
        if (completion != null) {
            completion.onComplete(slot, scsi, srb, transferred, key, ascq);
        }
        if (HandoffSampler.ENABLED) {
            sampler.guestHandled(slot);
        }
        return true;
    }

    private volatile boolean rescanRequested;

    /** True (once) after the host announced a LUN change (ENUMERATE_BUS). */
    public boolean takeRescanRequest() {
        boolean r = rescanRequested;
        rescanRequested = false;
        return r;
    }

    ClientChannel channel() {
        return channel;
    }

    @Override
    public void close() {
        channel.close();
    }
}
