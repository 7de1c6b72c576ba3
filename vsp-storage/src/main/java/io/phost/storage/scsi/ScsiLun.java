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
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicInteger;

import static io.phost.storage.scsi.ScsiRequest.U16;
import static io.phost.storage.scsi.ScsiRequest.U32;
import static io.phost.storage.scsi.ScsiRequest.U64;

/**
 * A SCSI direct-access logical unit (SBC-3) over a {@link VirtualDisk}: decodes and validates CDBs,
 * answers the non-data commands itself, and turns READ/WRITE/SYNCHRONIZE CACHE/UNMAP/WRITE SAME into one
 * engine operation (or a short chain) that a {@link ScsiQueue} executes.
 *
 * <p>CDBs are hostile: every LBA range is checked with overflow-safe arithmetic against the capacity,
 * transfer lengths must equal the data buffer's length, reserved/unsupported bits are rejected with
 * ILLEGAL REQUEST and a field pointer, and nothing is allocated per command.
 */
public final class ScsiLun {
    static final int DONE = 0;
    static final int IO = 1;
    /** executeSgIo: the ioctl failed, translate the command instead. */
    private static final int SG_FAILED = -1;
    private static final int SG_TIMEOUT_MILLIS = 10_000;
    /** driver_status low bits (DRIVER_ERROR, DRIVER_TIMEOUT ...); 0x08 (DRIVER_SENSE) only says sense is valid. */
    private static final int SG_DRIVER_MASK = 0x07;


    /** Largest single READ/WRITE we accept and advertise (VPD B0), in bytes. */
    public static final int MAX_TRANSFER_BYTES = 2 << 20;
    public static final int MAX_UNMAP_DESCRIPTORS = 64;
    /** Largest UNMAP / WRITE SAME range in bytes (advertised in blocks). */
    public static final long MAX_UNMAP_BYTES = 1L << 30;

    private static final byte[] VENDOR = "PHOST   ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] PRODUCT = "Virtual Disk    ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] REVISION = "1.0 ".getBytes(StandardCharsets.US_ASCII);

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
    private final byte[] serial;
    private final long naa;
    private final int blockSize;
    private final int blockShift;
    /** Changes only in {@link #swapGrownDisk} (a live grow, I/O paused); volatile for GET_CONFIG's thread. */
    private volatile long blocks;
    /** Set by a live grow: the next command reports CAPACITY DATA HAS CHANGED once ({@link #reportCapacityChange}). */
    private volatile boolean capacityChanged;
    private final int physicalExponent;
    private final DiskStats stats = new DiskStats();
    final AtomicInteger inFlight = new AtomicInteger();
    /** Pass-through device fd when it speaks SG_IO, else -1 (then everything is translated). */
    private final int sgFd;
    /** The disk frees space on unmap: advertised as thin provisioning (LBPME, LBPU, LBPWS). */
    private final boolean discard;
    private final SgIo sg;
    volatile boolean removed;
    /** Change tracking for incremental backup, or null (set while I/O is paused or before the first command). */
    private volatile ChangeTracker tracker;

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
        if (Integer.bitCount(blockSize) != 1 || blockSize < 512 || blockSize > 65536) {
            throw new IllegalArgumentException("unsupported logical block size " + blockSize);
        }
        this.blockShift = Integer.numberOfTrailingZeros(blockSize);
        this.blocks = disk.size() >>> blockShift;
        int ratio = Math.max(1, disk.physicalSectorSize() / blockSize);
        this.physicalExponent = Integer.numberOfTrailingZeros(ratio);
        String s = Long.toHexString(name.hashCode() & 0xFFFFFFFFL) + Long.toHexString(disk.size());
        this.serial = ("PH" + s).getBytes(StandardCharsets.US_ASCII);
        // NAA 6 (IEEE registered extended): 4-bit NAA, 24-bit OUI (locally administered), 36-bit vendor id.
        DiskCapabilities caps = disk.capabilities();
        this.discard = caps.discard();
        this.sgFd = caps.passThrough() && SgIo.supported(caps.fd()) ? caps.fd() : -1;
        this.sg = sgFd >= 0 ? new SgIo() : null;
        this.naa = (0x6L << 60) | (0x02_50_F2L << 36) | ((name.hashCode() & 0xFFFFFFFFL) << 4) | (disk.size() & 0xF);
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
        if (sgFd >= 0) {
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
     * The disk grew in place (an RBD image resized by its cluster: same object, larger {@code size()}): the LUN
     * serves the new capacity from now on. Grow only, and no unit attention: a transport whose clients learn the
     * size when they connect (NBD) calls it for each new client.
     */
    public void followGrownDisk() {
        followGrownDisk(false);
    }

    /**
     * As {@link #followGrownDisk()}, for the LUN a guest uses: with {@code unitAttention} (a SCSI initiator) its next
     * command gets CAPACITY DATA HAS CHANGED, as after {@link #swapGrownDisk}. True when the capacity grew.
     */
    public boolean followGrownDisk(boolean unitAttention) {
        long now = disk.size() >>> blockShift;
        if (now <= blocks) {
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
        if (sgFd >= 0) {
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
        if (sgFd >= 0 && passThrough(r, opcode)) {
            int done = executeSgIo(r);
            if (done == DONE) {
                stats.recordOther();
                return DONE;
            }
            // The ioctl itself failed (e.g. the kernel could not map this iovec list): translate instead.
        }
        r.target = this;
        r.fua = false;
        r.fuaFlush = false;
        r.unmapCount = 0;
        r.unmapNext = 0;
        switch (opcode) {
            case Scsi.TEST_UNIT_READY -> {
                stats.recordOther();
                return noData(r);
            }
            case Scsi.REQUEST_SENSE -> {
                stats.recordOther();
                return requestSense(r, scratch);
            }
            case Scsi.INQUIRY -> {
                stats.recordOther();
                return inquiry(r, scratch);
            }
            case Scsi.MODE_SENSE_6, Scsi.MODE_SENSE_10 -> {
                stats.recordOther();
                return modeSense(r, scratch, opcode == Scsi.MODE_SENSE_10);
            }
            case Scsi.READ_CAPACITY_10 -> {
                stats.recordOther();
                return readCapacity10(r, scratch);
            }
            case Scsi.SERVICE_ACTION_IN_16 -> {
                if ((r.u8(1) & 0x1F) != Scsi.SAI_READ_CAPACITY_16) {
                    r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
                    return DONE;
                }
                stats.recordOther();
                return readCapacity16(r, scratch);
            }
            case Scsi.REPORT_LUNS -> {
                stats.recordOther();
                return target.reportLuns(r, scratch);
            }
            case Scsi.READ_6 -> {
                long lba = ((r.u8(1) & 0x1FL) << 16) | r.u16(2);
                int len = r.u8(4);
                return readWrite(r, true, lba, len == 0 ? 256 : len, false);
            }
            case Scsi.WRITE_6 -> {
                long lba = ((r.u8(1) & 0x1FL) << 16) | r.u16(2);
                int len = r.u8(4);
                return readWrite(r, false, lba, len == 0 ? 256 : len, false);
            }
            case Scsi.READ_10, Scsi.WRITE_10 -> {
                if (protectBits(r)) {
                    return DONE;
                }
                return readWrite(r, opcode == Scsi.READ_10, r.u32(2), r.u16(7), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.READ_12, Scsi.WRITE_12 -> {
                if (protectBits(r)) {
                    return DONE;
                }
                return readWrite(r, opcode == Scsi.READ_12, r.u32(2), r.u32(6), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.READ_16, Scsi.WRITE_16 -> {
                if (protectBits(r)) {
                    return DONE;
                }
                return readWrite(r, opcode == Scsi.READ_16, r.u64(2), r.u32(10), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.SYNCHRONIZE_CACHE_10 -> {
                return synchronizeCache(r, r.u32(2), r.u16(7));
            }
            case Scsi.SYNCHRONIZE_CACHE_16 -> {
                return synchronizeCache(r, r.u64(2), r.u32(10));
            }
            case Scsi.UNMAP -> {
                return unmap(r, scratch);
            }
            case Scsi.WRITE_SAME_16 -> {
                return writeSame16(r, scratch);
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE, 0, 1);
                return DONE;
            }
        }
    }

    /**
     * Pass-through disks that speak SG_IO answer these themselves (identity, mode and log pages), except
     * what must describe this VSP rather than the device: the block limits page (VPD B0: our transfer and
     * UNMAP limits, which the guest sizes its commands by) and, on a LUN configured read-only over a
     * writable device, MODE SENSE (its WP bit must say read-only).
     */
    private boolean passThrough(ScsiRequest r, int opcode) {
        return switch (opcode) {
            case Scsi.INQUIRY -> (r.u8(1) & 0x01) == 0 || r.u8(2) != 0xB0;
            case Scsi.MODE_SENSE_6, Scsi.MODE_SENSE_10 -> !readOnly;
            case Scsi.LOG_SENSE -> true;
            default -> false;
        };
    }

    /**
     * Runs a data-in management command on the device through SG_IO, straight into the request's iovecs
     * (an sg_iovec array has the iovec layout). Synchronous: these are rare, small commands. The LUN's one
     * {@link SgIo} (header, CDB and sense buffers) is shared by every queue of the target, hence the lock.
     *
     * <pre>
     *   ioctl failed (-errno)                      -> SG_FAILED: the caller translates the command
     *   host_status != 0 (DID_*) or driver error   -> CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE
     *   status GOOD                                -> GOOD, transferred = dxfer_len - resid (clamped)
     *   status CHECK CONDITION with sense          -> CHECK CONDITION, the device's sense (first 18 bytes)
     *   status CHECK CONDITION without sense       -> CHECK CONDITION, ABORTED COMMAND (the guest retries)
     *   any other status (BUSY, TASK SET FULL, RESERVATION CONFLICT ...) -> that status, no data
     * </pre>
     */
    private int executeSgIo(ScsiRequest r) {
        synchronized (sg) {
            int status = sg.execute(sgFd, r.cdb(), 0, r.cdbLength(), SgIo.DXFER_FROM_DEV, r.data().arrayAddress(),
                r.data().totalLength(), r.data().count(), SG_TIMEOUT_MILLIS);
            if (status < 0) {
                return SG_FAILED;
            }
            if (sg.hostStatus() != 0 || (sg.driverStatus() & SG_DRIVER_MASK) != 0) {
                r.checkCondition(Scsi.KEY_HARDWARE_ERROR, Scsi.ASC_INTERNAL_TARGET_FAILURE);
                return DONE;
            }
            long total = r.data().totalLength();
            if (status == Scsi.STATUS_GOOD) {
                r.good(Math.clamp(total - sg.resid(), 0, total));
            } else if (status == Scsi.STATUS_CHECK_CONDITION) {
                int n = Math.min(sg.senseLength(), Scsi.FIXED_SENSE_LENGTH);
                if (n >= 8) {
                    r.deviceCheckCondition(sg.sense(), n);
                } else {
                    r.checkCondition(Scsi.KEY_ABORTED_COMMAND, Scsi.ASC_NONE);
                }
            } else {
                r.deviceStatus((byte) status);
            }
            return DONE;
        }
    }

    /** True when SCSI management commands go to the device itself (SG_IO pass-through). */
    public boolean sgIoPassThrough() {
        return sgFd >= 0;
    }

    private static int noData(ScsiRequest r) {
        r.good(0);
        return DONE;
    }

    /** RDPROTECT/WRPROTECT (byte 1 bits 7-5) need protection information, which we do not format. */
    private static boolean protectBits(ScsiRequest r) {
        if ((r.u8(1) & 0xE0) != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return true;
        }
        return false;
    }

    /** True (and CHECK CONDITION set) when [lba, lba+count) is not inside the disk. Overflow-safe. */
    private boolean outOfRange(ScsiRequest r, long lba, long count) {
        // lba is unsigned 64-bit in the 16-byte CDBs: negative means >= 2^63, always past the end.
        if (lba < 0 || count < 0 || lba > blocks || count > blocks - lba) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
            return true;
        }
        return false;
    }

    private boolean directionMismatch(ScsiRequest r, int expected) {
        int d = r.direction();
        if (d != ScsiRequest.DIR_UNKNOWN && d != expected && r.data().totalLength() != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 0, 1);
            return true;
        }
        return false;
    }

    /**
     * Validates a block request a transport built with {@link ScsiRequest#block} (no CDB), with the checks a
     * decoded CDB gets: a write to a read-only LUN is DATA PROTECT; a range past the capacity or not in whole
     * blocks, or data that does not match the length, is ILLEGAL REQUEST. Returns {@link #IO} or {@link #DONE}.
     */
    int prepareBlock(ScsiRequest r) {
        r.target = this;
        r.fuaFlush = false;
        r.unmapNext = 1;
        r.read = r.op == BlockOp.READ;
        if (r.op.writes() && readOnly) {
            r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
            return DONE;
        }
        switch (r.op) {
            case BlockOp.READ, BlockOp.WRITE -> {
                if (badByteRange(r, r.ioOffset, r.ioLength)) {
                    return DONE;
                }
                if (r.ioLength != r.data().totalLength()) {
                    r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
                    return DONE;
                }
                r.fua &= !r.read;
                return r.ioLength == 0 ? noData(r) : IO;
            }
            case BlockOp.FLUSH -> {
                r.ioOffset = 0;
                r.ioLength = 0;
                return IO;
            }
            case BlockOp.UNMAP, BlockOp.WRITE_ZEROES -> {
                int count = 0;
                for (int i = 0; i < r.unmapCount; i++) {
                    if (badByteRange(r, r.unmapOffset[i], r.unmapLength[i])) {
                        return DONE;
                    }
                    if (r.unmapLength[i] > 0) { // empty ranges are no-ops: keep the rest packed
                        r.unmapOffset[count] = r.unmapOffset[i];
                        r.unmapLength[count] = r.unmapLength[i];
                        count++;
                    }
                }
                r.unmapCount = count;
                if (count == 0) {
                    return noData(r);
                }
                r.ioOffset = r.unmapOffset[0];
                r.ioLength = r.unmapLength[0];
                return IO;
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE);
                return DONE;
            }
        }
    }

    /** A byte range that is not whole blocks or not within the capacity: sets ILLEGAL REQUEST and returns true. */
    private boolean badByteRange(ScsiRequest r, long offset, long length) {
        if (((offset | length) & (blockSize - 1)) != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
            return true;
        }
        return outOfRange(r, offset >> blockShift, length >> blockShift); // negative stays negative: refused
    }

    private int readWrite(ScsiRequest r, boolean read, long lba, long count, boolean fua) {
        if (directionMismatch(r, read ? ScsiRequest.DIR_IN : ScsiRequest.DIR_OUT)) {
            return DONE;
        }
        if (!read && readOnly) {
            r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
            return DONE;
        }
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        long bytes = count << blockShift; // count < 2^32, blockShift <= 16: no overflow
        if (bytes != r.data().totalLength()) {
            // The CDB and the buffer the initiator described disagree: refuse rather than guess.
            int field = r.cdbLength() == 6 ? 4 : r.cdbLength() == 10 ? 7 : r.cdbLength() == 12 ? 6 : 10;
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, field, 1);
            return DONE;
        }
        if (bytes == 0) {
            return noData(r);
        }
        if (bytes > MAX_TRANSFER_BYTES) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, r.cdbLength() == 16 ? 10 : 7, 1);
            return DONE;
        }
        r.read = read;
        r.op = read ? BlockOp.READ : BlockOp.WRITE;
        r.ioOffset = lba << blockShift;
        r.ioLength = bytes;
        r.fua = fua && !read;
        return IO;
    }

    private int synchronizeCache(ScsiRequest r, long lba, long count) {
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        r.read = false;
        r.op = BlockOp.FLUSH;
        r.ioOffset = 0;
        r.ioLength = 0;
        return IO;
    }

    private int unmap(ScsiRequest r, MemorySegment scratch) {
        if ((r.u8(1) & 0x01) != 0) { // ANCHOR
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        if (readOnly) {
            r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
            return DONE;
        }
        int paramLen = r.u16(7);
        if (paramLen == 0) {
            return noData(r);
        }
        if (paramLen < 8 || paramLen > r.data().totalLength()) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR, 7, 1);
            return DONE;
        }
        int max = (int) Math.min(paramLen, Math.min(scratch.byteSize(), 8 + 16L * MAX_UNMAP_DESCRIPTORS));
        r.data().gatherTo(scratch, 0, max);
        int dataLen = scratch.get(U16, 0) & 0xFFFF;
        int descLen = scratch.get(U16, 2) & 0xFFFF;
        if (descLen % 16 != 0 || descLen + 8L > paramLen || dataLen + 2L < descLen + 8L) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 2, 0);
            return DONE;
        }
        int n = descLen / 16;
        if (n > MAX_UNMAP_DESCRIPTORS) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 2, 0);
            return DONE;
        }
        int count = 0;
        for (int i = 0; i < n; i++) {
            long lba = scratch.get(U64, 8 + 16L * i);
            long len = scratch.get(U32, 16 + 16L * i) & 0xFFFFFFFFL;
            if (outOfRange(r, lba, len)) {
                return DONE;
            }
            if ((len << blockShift) > MAX_UNMAP_BYTES) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 16 + 16 * i, 0);
                return DONE;
            }
            if (len > 0) {
                r.unmapOffset[count] = lba << blockShift;
                r.unmapLength[count] = len << blockShift;
                count++;
            }
        }
        if (count == 0) {
            return noData(r);
        }
        r.read = false;
        r.op = BlockOp.UNMAP;
        r.unmapCount = count;
        r.unmapNext = 1;
        r.ioOffset = r.unmapOffset[0];
        r.ioLength = r.unmapLength[0];
        return IO;
    }

    private int writeSame16(ScsiRequest r, MemorySegment scratch) {
        int flags = r.u8(1);
        boolean unmapBit = (flags & 0x08) != 0;
        boolean ndob = (flags & 0x01) != 0;
        if ((flags & 0x10) != 0 || (flags & 0xE0) != 0) { // ANCHOR, WRPROTECT
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        if (readOnly) {
            r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
            return DONE;
        }
        long lba = r.u64(2);
        long count = r.u32(10);
        if (count == 0 || (count << blockShift) > MAX_UNMAP_BYTES) { // WSNZ=1 in VPD B0
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 10, 1);
            return DONE;
        }
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        r.read = false;
        if (!ndob) {
            if (directionMismatch(r, ScsiRequest.DIR_OUT)) {
                return DONE;
            }
            if (r.data().totalLength() != blockSize) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR, 10, 1);
                return DONE;
            }
            if (!r.data().isZero(blockSize)) {
                // A pattern is written even with the UNMAP bit: unmapped blocks would read as zeros, not as
                // the pattern (SBC-3 5.45: the device unmaps only when that reads back the same). The
                // queue copies the block into its pattern buffer and writes [offset, offset+length) in
                // chunks; ioOffset advances per chunk.
                r.op = BlockOp.WRITE_PATTERN;
                r.unmapCount = 0;
                r.unmapOffset[0] = lba << blockShift;
                r.unmapLength[0] = count << blockShift;
                r.ioOffset = r.unmapOffset[0];
                r.ioLength = 0;
                return IO;
            }
        }
        r.op = unmapBit ? BlockOp.UNMAP : BlockOp.WRITE_ZEROES;
        r.unmapCount = 1;
        r.unmapNext = 1;
        r.unmapOffset[0] = lba << blockShift;
        r.unmapLength[0] = count << blockShift;
        r.ioOffset = r.unmapOffset[0];
        r.ioLength = r.unmapLength[0];
        return IO;
    }

    private static int respond(ScsiRequest r, MemorySegment scratch, int length, int allocation) {
        int n = (int) Math.min(Math.min(length, allocation), r.data().totalLength());
        r.data().scatterFrom(scratch, 0, n);
        r.good(n);
        return DONE;
    }

    private static int requestSense(ScsiRequest r, MemorySegment scratch) {
        if ((r.u8(1) & 0x01) != 0) { // DESC: descriptor-format sense is not supported
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        // Autosense delivers errors with each command, so there is never deferred sense: NO SENSE.
        SenseData.writeFixed(scratch, Scsi.KEY_NO_SENSE, Scsi.ASC_NONE, -1, -1);
        return respond(r, scratch, Scsi.FIXED_SENSE_LENGTH, r.u8(4));
    }

    private int inquiry(ScsiRequest r, MemorySegment scratch) {
        int flags = r.u8(1);
        int page = r.u8(2);
        int alloc = r.u16(3);
        if ((flags & 0x02) != 0) { // CMDDT (obsolete)
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        scratch.asSlice(0, 256).fill((byte) 0);
        if ((flags & 0x01) == 0) {
            if (page != 0) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
                return DONE;
            }
            return respond(r, scratch, standardInquiry(scratch, 0x00), alloc);
        }
        int len;
        switch (page) {
            case 0x00 -> {
                byte[] pages = {0x00, (byte) 0x80, (byte) 0x83, (byte) 0xB0, (byte) 0xB1, (byte) 0xB2};
                for (int i = 0; i < pages.length; i++) {
                    scratch.set(ValueLayout.JAVA_BYTE, 4 + i, pages[i]);
                }
                len = 4 + pages.length;
            }
            case 0x80 -> {
                MemorySegment.copy(MemorySegment.ofArray(serial), 0, scratch, 4, serial.length);
                len = 4 + serial.length;
            }
            case 0x83 -> {
                int at = 4;
                // Designator 1: NAA (binary, LU association, type 3), 8 bytes.
                scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x01);
                scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x03);
                scratch.set(ValueLayout.JAVA_BYTE, at + 3, (byte) 8);
                scratch.set(U64, at + 4, naa);
                at += 12;
                // Designator 2: T10 vendor ID (ASCII, type 1): vendor + serial.
                scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x02);
                scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x01);
                scratch.set(ValueLayout.JAVA_BYTE, at + 3, (byte) (8 + serial.length));
                MemorySegment.copy(MemorySegment.ofArray(VENDOR), 0, scratch, at + 4, 8);
                MemorySegment.copy(MemorySegment.ofArray(serial), 0, scratch, at + 12, serial.length);
                at += 12 + serial.length;
                len = at;
            }
            case 0xB0 -> { // Block limits
                scratch.set(ValueLayout.JAVA_BYTE, 4, (byte) 0x01); // WSNZ
                scratch.set(U32, 8, MAX_TRANSFER_BYTES >>> blockShift);
                scratch.set(U32, 12, Math.max(1, 65536 >>> blockShift));
                scratch.set(U32, 20, (int) (MAX_UNMAP_BYTES >>> blockShift));
                scratch.set(U32, 24, MAX_UNMAP_DESCRIPTORS);
                scratch.set(U32, 28, Math.max(1, 4096 >>> blockShift));
                scratch.set(U64, 36, MAX_UNMAP_BYTES >>> blockShift);
                len = 64;
            }
            case 0xB1 -> { // Block device characteristics: non-rotating medium
                scratch.set(U16, 4, (short) 1);
                len = 64;
            }
            case 0xB2 -> { // Logical block provisioning: LBPU, LBPWS (when the disk discards), LBPRZ; thin provisioned
                scratch.set(ValueLayout.JAVA_BYTE, 5, (byte) ((discard ? 0x80 | 0x40 : 0) | 0x04));
                scratch.set(ValueLayout.JAVA_BYTE, 6, (byte) (discard ? 0x02 : 0x00));
                len = 8;
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
                return DONE;
            }
        }
        scratch.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x00); // direct-access block device, connected
        scratch.set(ValueLayout.JAVA_BYTE, 1, (byte) page);
        scratch.set(U16, 2, (short) (len - 4));
        return respond(r, scratch, len, alloc);
    }

    /** Standard INQUIRY data (SPC-4 6.6.2), 96 bytes, with the given peripheral qualifier/type byte. */
    static int standardInquiry(MemorySegment s, int peripheral) {
        s.asSlice(0, 96).fill((byte) 0);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) peripheral);
        s.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x06);       // SPC-4
        s.set(ValueLayout.JAVA_BYTE, 3, (byte) 0x12);       // HISUP, response data format 2
        s.set(ValueLayout.JAVA_BYTE, 4, (byte) (96 - 5));
        s.set(ValueLayout.JAVA_BYTE, 7, (byte) 0x02);       // CMDQUE
        MemorySegment.copy(MemorySegment.ofArray(VENDOR), 0, s, 8, 8);
        MemorySegment.copy(MemorySegment.ofArray(PRODUCT), 0, s, 16, 16);
        MemorySegment.copy(MemorySegment.ofArray(REVISION), 0, s, 32, 4);
        return 96;
    }

    private int modeSense(ScsiRequest r, MemorySegment scratch, boolean ten) {
        boolean dbd = (r.u8(1) & 0x08) != 0;
        int pc = r.u8(2) >>> 6;
        int page = r.u8(2) & 0x3F;
        int subpage = r.u8(3);
        int alloc = ten ? r.u16(7) : r.u8(4);
        if (pc == 3) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_SAVING_PARAMETERS_NOT_SUPPORTED, 2, 1);
            return DONE;
        }
        if (subpage != 0 && !(page == 0x3F && subpage == 0xFF)) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 3, 1);
            return DONE;
        }
        if (page != 0x08 && page != 0x0A && page != 0x3F) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
            return DONE;
        }
        scratch.asSlice(0, 128).fill((byte) 0);
        boolean changeable = pc == 1;
        int header = ten ? 8 : 4;
        int at = header;
        if (!dbd) {
            scratch.set(U32, at, (int) Math.min(blocks, 0xFFFFFF)); // density 0 + 24-bit block count
            scratch.set(U32, at + 4, blockSize & 0xFFFFFF);
            at += 8;
        }
        if (page == 0x08 || page == 0x3F) { // Caching: write-back cache enabled (flushes via SYNCHRONIZE CACHE)
            scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x08);
            scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x12);
            scratch.set(ValueLayout.JAVA_BYTE, at + 2, (byte) (changeable ? 0 : 0x04));
            at += 20;
        }
        if (page == 0x0A || page == 0x3F) { // Control
            scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x0A);
            scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x0A);
            at += 12;
        }
        byte deviceSpecific = (byte) (readOnly ? 0x80 : 0x00);
        if (ten) {
            scratch.set(U16, 0, (short) (at - 2));
            scratch.set(ValueLayout.JAVA_BYTE, 3, deviceSpecific);
            scratch.set(U16, 6, (short) (dbd ? 0 : 8));
        } else {
            scratch.set(ValueLayout.JAVA_BYTE, 0, (byte) (at - 1));
            scratch.set(ValueLayout.JAVA_BYTE, 2, deviceSpecific);
            scratch.set(ValueLayout.JAVA_BYTE, 3, (byte) (dbd ? 0 : 8));
        }
        return respond(r, scratch, at, alloc);
    }

    private int readCapacity10(ScsiRequest r, MemorySegment scratch) {
        long last = blocks - 1;
        scratch.set(U32, 0, (int) Math.min(last, 0xFFFFFFFFL));
        scratch.set(U32, 4, blockSize);
        return respond(r, scratch, 8, 8);
    }

    private int readCapacity16(ScsiRequest r, MemorySegment scratch) {
        long alloc = r.u32(10);
        scratch.asSlice(0, 32).fill((byte) 0);
        scratch.set(U64, 0, blocks - 1);
        scratch.set(U32, 8, blockSize);
        scratch.set(ValueLayout.JAVA_BYTE, 13, (byte) physicalExponent);
        scratch.set(ValueLayout.JAVA_BYTE, 14, (byte) ((discard ? 0x80 : 0) | 0x40)); // LBPME (discards), LBPRZ
        return respond(r, scratch, 32, (int) Math.min(alloc, 32));
    }

    /**
     * A write that failed for lack of space on the host file system (-ENOSPC or -EDQUOT): counted, and logged
     * once per LUN, so a full host disk is visible in status and logs instead of passing for a medium error.
     */
    private boolean noSpace(long result) {
        if (result != -io.phost.core.sys.DiskFullException.ENOSPC && result != -io.phost.core.sys.DiskFullException.EDQUOT) {
            return false;
        }
        if (stats.recordNoSpace()) {
            System.getLogger("phost.storage").log(System.Logger.Level.WARNING, "no space left for disk=" + name
                + " (the file system holding it is full; writes fail with SPACE ALLOCATION FAILED until space is freed)");
        }
        return true;
    }

    /** Maps an engine result to status; returns true when the request is finished. */
    void completeIo(ScsiRequest r, long result, long nowNanos) {
        long latency = nowNanos - r.startNanos;
        switch (r.op) {
            case BlockOp.READ, BlockOp.WRITE -> {
                if (result == r.ioLength) {
                    r.good(result);
                    if (r.read) {
                        stats.recordRead(result, latency);
                    } else {
                        stats.recordWrite(result, latency);
                    }
                } else if (!r.read && noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                    r.senseInformation(r.ioOffset >>> blockShift);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, r.read ? Scsi.ASC_UNRECOVERED_READ_ERROR : Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
            case BlockOp.WRITE_PATTERN -> {
                if (result == r.ioLength) {
                    r.good(blockSize); // the one block of data-out the command carried
                    stats.recordWrite(r.unmapLength[0], latency);
                } else if (noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                    r.senseInformation(r.ioOffset >>> blockShift);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
            case BlockOp.FLUSH -> {
                if (result == 0) {
                    r.good(0);
                    stats.recordFlush(latency);
                } else if (noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                }
            }
            default -> {
                if (result == 0) {
                    r.good(0);
                    stats.recordUnmap(latency);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
        }
    }
}
