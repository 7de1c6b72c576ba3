package io.phost.storage.scsi;

import io.phost.qos.QosFlow;
import io.phost.storage.ChangeTracker;
import io.phost.storage.DiskStats;
import io.phost.storage.backend.SgIo;
import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.DiskCapabilities;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A SCSI logical unit over a {@link VirtualDisk}: its identity, capacity, QoS flow, statistics, and the
 * pause/swap seam checkpoints and live resizes use. How it answers commands is its {@link LunKind}, chosen
 * from the disk's capabilities: {@link EmulatedLun} (SBC commands and SPC pages emulated), or
 * {@link PassThroughLun} for a device that speaks SG_IO. Data commands become one engine operation (or a
 * short chain) that a {@link ScsiQueue} executes.
 */
public final class ScsiLun {
    static final int DONE = 0;
    static final int IO = 1;

    /** Largest single READ/WRITE we accept and advertise (VPD B0, storvsc, virtio-scsi), in bytes. */
    public static final int MAX_TRANSFER_BYTES = 2 << 20;
    /** Most UNMAP block descriptors in one command (VPD B0), and ranges in one block request. */
    public static final int MAX_UNMAP_DESCRIPTORS = 64;
    /** Largest UNMAP / WRITE SAME range in bytes (advertised in blocks). */
    public static final long MAX_UNMAP_BYTES = 1L << 30;
    /** Largest logical block size a LUN serves (the queue's WRITE SAME pattern chunk is a multiple of it). */
    static final int MAX_BLOCK_SIZE = 64 << 10;

    /** The backing disk; replaced only by {@link #swapDisk} while I/O is paused (a checkpoint's switch). */
    private volatile VirtualDisk disk;
    /** Bumped by every {@link #swapDisk}: a queue whose engine was opened on an older disk reopens it. */
    volatile int diskGeneration;
    /** While set, queues hold this LUN's new commands (not failed, not started) until {@link #resumeIo}. */
    private volatile boolean ioPaused;
    private final QosFlow qos;
    private final boolean readOnly;
    private final IoEngines.Kind engineKind;
    private final String name;
    private final int blockSize;
    private final int blockShift;
    /** Changes only in {@link #swapGrownDisk} (a live grow, I/O paused); volatile for GET_CONFIG's thread. */
    private volatile long blocks;
    /** Set by a live grow: the next command reports CAPACITY DATA HAS CHANGED once ({@link #reportCapacityChange}). */
    private volatile boolean capacityChanged;
    private final DiskStats stats = new DiskStats();
    final AtomicInteger inFlight = new AtomicInteger();
    /** Change tracking for incremental backup, or null (set while I/O is paused or before the first command). */
    private volatile ChangeTracker tracker;
    private final SbcCommands sbc;
    private final LunKind kind;

    /**
     * @param name     a short name for status ("vm1-disk0")
     * @param disk     the backend; its logical sector size becomes the SCSI block size
     * @param qos      the flow charged for each I/O ({@link QosFlow#UNLIMITED} for none)
     * @param readOnly reject writes with DATA PROTECT even when the disk is writable
     * @param engine   which engine queues use for this disk
     */
    public ScsiLun(String name, VirtualDisk disk, QosFlow qos, boolean readOnly, IoEngines.Kind engine) {
        this.name = name;
        this.disk = disk;
        this.qos = qos == null ? QosFlow.UNLIMITED : qos;
        this.readOnly = readOnly || disk.readOnly();
        this.engineKind = engine;
        this.blockSize = disk.logicalSectorSize();
        if (Integer.bitCount(blockSize) != 1 || blockSize < 512 || blockSize > MAX_BLOCK_SIZE) {
            throw new IllegalArgumentException("unsupported logical block size " + blockSize);
        }
        this.blockShift = Integer.numberOfTrailingZeros(blockSize);
        this.blocks = disk.size() >>> blockShift;
        int ratio = Math.max(1, disk.physicalSectorSize() / blockSize);
        DiskCapabilities caps = disk.capabilities();
        this.sbc = new SbcCommands(this, caps.discard(), Integer.numberOfTrailingZeros(ratio));
        EmulatedLun emulated = new EmulatedLun(this, sbc, new SpcPages(this, caps.discard(), disk.size()));
        this.kind = caps.passThrough() && SgIo.supported(caps.fd()) ? new PassThroughLun(this, emulated, caps.fd()) : emulated;
    }

    public ScsiLun(String name, VirtualDisk disk) {
        this(name, disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
    }

    public String name() {
        return name;
    }

    public VirtualDisk disk() {
        return disk;
    }

    public QosFlow qos() {
        return qos;
    }

    public boolean readOnly() {
        return readOnly;
    }

    public IoEngines.Kind engineKind() {
        return engineKind;
    }

    public DiskStats stats() {
        return stats;
    }

    public int blockSize() {
        return blockSize;
    }

    public long blocks() {
        return blocks;
    }

    /**
     * Stops new commands from starting (queues hold them) and waits until none of this LUN's commands is
     * executing: the seam a checkpoint uses to switch the backing disk under a short pause. False (and
     * still paused: call {@link #resumeIo}) when commands were still executing at the timeout.
     * <pre>
     *   pauseIo ── ioPaused=true ── wait inFlight==0 ──▶ flush / swapDisk ──▶ resumeIo: held commands start
     * </pre>
     */
    public boolean pauseIo(long timeoutMillis) throws InterruptedException {
        ioPaused = true; // volatile write before reading inFlight: pairs with the queue's increment-then-check
        return ScsiTarget.awaitIdle(this, timeoutMillis);
    }

    public void resumeIo() {
        ioPaused = false;
    }

    public boolean ioPaused() {
        return ioPaused;
    }

    /**
     * Replaces the backing disk (I/O must be paused and drained). The new disk must look the same to the
     * initiator: same size and sector sizes (a checkpoint's differencing child of the old disk does).
     * Returns the old disk, still open: the caller closes it.
     */
    public VirtualDisk swapDisk(VirtualDisk next) {
        if (!ioPaused || inFlight.get() != 0) {
            throw new IllegalStateException("LUN " + name + ": pause and drain I/O before swapping its disk");
        }
        VirtualDisk old = disk;
        if (next.size() != old.size() || next.logicalSectorSize() != old.logicalSectorSize()
            || next.physicalSectorSize() != old.physicalSectorSize()) {
            throw new IllegalArgumentException("LUN " + name + ": the new disk (" + next.size() + " bytes, "
                + next.logicalSectorSize() + "/" + next.physicalSectorSize() + ") differs from the old one ("
                + old.size() + " bytes, " + old.logicalSectorSize() + "/" + old.physicalSectorSize() + ")");
        }
        if (kind.passesThrough()) {
            throw new IllegalStateException("LUN " + name + " passes SCSI commands through to a device; its disk cannot be swapped");
        }
        disk = next;
        diskGeneration++;
        return old;
    }

    /** Starts (or, with null, stops) recording which blocks the initiator writes; see {@link ChangeTracker}. */
    public void trackChanges(ChangeTracker t) {
        tracker = t;
    }

    public ChangeTracker changeTracker() {
        return tracker;
    }

    /**
     * Marks what {@code r} (a prepared data command, counted in flight) will write, before it is dispatched:
     * a backup point cut while I/O is paused thus finds every write in exactly one generation.
     */
    void markChanged(ScsiRequest r) {
        ChangeTracker t = tracker;
        if (t == null || r.read) {
            return;
        }
        switch (r.op) {
            case WRITE -> t.mark(r.ioOffset, r.ioLength);
            case WRITE_PATTERN -> t.mark(r.unmapOffset[0], r.unmapLength[0]);
            case UNMAP, WRITE_ZEROES -> {
                if (r.unmapCount == 0) {
                    t.mark(r.ioOffset, r.ioLength);
                }
                for (int i = 0; i < r.unmapCount; i++) {
                    t.mark(r.unmapOffset[i], r.unmapLength[i]);
                }
            }
            default -> { }
        }
    }

    /** A flush succeeded on the disk: makes the change bits durable before it completes; 0 or -EIO. */
    long persistChanges() {
        ChangeTracker t = tracker;
        if (t == null) {
            return 0;
        }
        try {
            t.persistIfChanged();
            return 0;
        } catch (IOException | RuntimeException e) {
            System.getLogger("phost.storage").log(System.Logger.Level.ERROR, "disk=" + name
                + ": change tracking bitmap not stored; the flush fails: " + e);
            return -5;
        }
    }

    /**
     * The disk changed size in place (an RBD image resized by its cluster, or rolled back to a smaller snapshot: same
     * object, another {@code size()}): the LUN serves the new capacity from now on. No unit attention: a transport
     * whose clients learn the size when they connect (NBD) calls it for each new client.
     */
    public void followDiskSize() {
        followDiskSize(false);
    }

    /**
     * As {@link #followDiskSize()}, for the LUN a guest uses: with {@code unitAttention} (a SCSI initiator) its next
     * command gets CAPACITY DATA HAS CHANGED, as after {@link #swapGrownDisk}. True when the capacity changed (a
     * rollback shrinks it: I/O past the new end then fails as out of range instead of reaching the image).
     */
    public boolean followDiskSize(boolean unitAttention) {
        long now = disk.size() >>> blockShift;
        if (now == blocks) {
            return false;
        }
        blocks = now;
        capacityChanged = unitAttention;
        return true;
    }

    /**
     * Replaces the backing disk with the same image grown (a live resize; I/O paused and drained): same sector
     * sizes, not smaller. The LUN's capacity follows. With {@code unitAttention} (a SCSI initiator: VMBus storvsc,
     * virtio-scsi) its next command other than INQUIRY, REPORT LUNS or REQUEST SENSE gets a CAPACITY DATA HAS
     * CHANGED unit attention (SBC-4), so the initiator re-reads READ CAPACITY; a virtio-blk LUN, whose driver
     * never sees sense data, learns it from the config change instead. Returns the old disk, still open.
     */
    public VirtualDisk swapGrownDisk(VirtualDisk next, boolean unitAttention) {
        VirtualDisk old = disk;
        if (next.size() < old.size() || next.logicalSectorSize() != old.logicalSectorSize()
            || next.physicalSectorSize() != old.physicalSectorSize()) {
            throw new IllegalArgumentException("LUN " + name + ": the grown disk (" + next.size() + " bytes, "
                + next.logicalSectorSize() + "/" + next.physicalSectorSize() + ") is smaller or has other sector sizes than the old one ("
                + old.size() + " bytes, " + old.logicalSectorSize() + "/" + old.physicalSectorSize() + ")");
        }
        if (!ioPaused || inFlight.get() != 0) {
            throw new IllegalStateException("LUN " + name + ": pause and drain I/O before swapping its disk");
        }
        if (kind.passesThrough()) {
            throw new IllegalStateException("LUN " + name + " passes SCSI commands through to a device; its disk cannot be swapped");
        }
        disk = next;
        diskGeneration++;
        blocks = next.size() >>> blockShift;
        capacityChanged = unitAttention; // before resumeIo's volatile write: the queues' next command sees it
        return old;
    }

    /**
     * The unit attention a live grow left, on the first command that may carry it (SPC-4 §5.14: not INQUIRY,
     * REPORT LUNS, REQUEST SENSE); true when {@code r} was answered with it.
     */
    private boolean reportCapacityChange(ScsiRequest r, int opcode) {
        if (opcode == Scsi.INQUIRY || opcode == Scsi.REPORT_LUNS || opcode == Scsi.REQUEST_SENSE) {
            return false;
        }
        capacityChanged = false;
        r.checkCondition(Scsi.KEY_UNIT_ATTENTION, Scsi.ASC_CAPACITY_DATA_HAS_CHANGED);
        stats.recordOther();
        return true;
    }

    /** Requests of this LUN currently executing (a hot-remove waits for zero). */
    public int inFlight() {
        return inFlight.get();
    }

    /**
     * Decodes {@code r}'s CDB. Non-data commands complete here (response scattered into {@code r.data()},
     * status and sense set) and return {@link #DONE}; data commands fill r.op/ioOffset/ioLength and return
     * {@link #IO}. {@code scratch} is the queue's response buffer (at least 1 KiB).
     */
    int prepare(ScsiRequest r, MemorySegment scratch, ScsiTarget target) {
        int opcode = r.opcode();
        int need = Scsi.cdbLength(opcode);
        if (need == 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE, 0, 1);
            return DONE;
        }
        if (r.cdbLength() < need) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, r.cdbLength(), 1);
            return DONE;
        }
        if (capacityChanged && reportCapacityChange(r, opcode)) {
            return DONE;
        }
        r.target = this;
        r.fua = false;
        r.fuaFlush = false;
        r.unmapCount = 0;
        r.unmapNext = 0;
        return kind.prepare(r, opcode, scratch, target);
    }

    /** Validates a block request a transport built with {@link ScsiRequest#block}; see {@link SbcCommands#prepareBlock}. */
    int prepareBlock(ScsiRequest r) {
        return sbc.prepareBlock(r);
    }

    /** Maps an engine result to {@code r}'s status and sense, and counts it in the LUN's statistics. */
    void completeIo(ScsiRequest r, long result, long nowNanos) {
        sbc.complete(r, result, nowNanos);
    }

    /** True when SCSI management commands go to the device itself (SG_IO pass-through). */
    public boolean sgIoPassThrough() {
        return kind.passesThrough();
    }
}
