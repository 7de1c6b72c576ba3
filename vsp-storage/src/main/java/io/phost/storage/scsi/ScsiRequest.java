package io.phost.storage.scsi;

import io.phost.storage.engine.IoVecs;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * One preallocated SCSI command slot, transport-independent: the transport fills the CDB, the LUN and
 * the data buffer list, submits it to a {@link ScsiQueue} and gets it back, completed, through its
 * {@link ScsiQueue.Completion}. Reused for every command; nothing is allocated per command.
 *
 * <pre>
 *   in:  cdb[16] cdbLength lun data(IoVecs) direction tag          (SCSI transports: {@link #reset})
 *    or: lun BlockOp offset length fua ranges data(IoVecs) tag     (block transports: {@link #block})
 *   out: status senseLength sense[18] transferred         (fixed-format sense, SPC-4 4.5.3)
 * </pre>
 */
public final class ScsiRequest {
    public static final int MAX_CDB = 16;
    /** Direction the transport declared (storvsc's data_in): must agree with the command if not UNKNOWN. */
    public static final int DIR_NONE = 0;
    public static final int DIR_IN = 1;
    public static final int DIR_OUT = 2;
    public static final int DIR_UNKNOWN = 3;

    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    final int slot;
    private final MemorySegment cdb;
    private int cdbLength;
    private int lun;
    private final IoVecs data;
    private int direction = DIR_UNKNOWN;
    private long tag;

    private byte status;
    private final MemorySegment sense;
    private int senseLength;
    private long transferred;

    // Execution state, owned by the queue.
    ScsiLun target;
    /** Built by {@link #block} (no CDB to decode) rather than {@link #reset}. */
    boolean block;
    BlockOp op;
    /** While the flush a FUA request chained runs: the request's own operation and its result. */
    BlockOp fuaOp;
    long fuaResult;
    long ioOffset;
    long ioLength;
    long startNanos;
    long notBefore;
    boolean fua;
    boolean fuaFlush;
    boolean read;
    boolean admitted;
    /** An engine has taken this request (or a step of its chain): a task management function cannot recall it. */
    boolean started;
    /** The task management order waiting for this started request to complete, or null. */
    TaskOrder taskOrder;
    int unmapCount;
    int unmapNext;
    final long[] unmapOffset;
    final long[] unmapLength;

    ScsiRequest(int slot, int maxSegments, int maxUnmapDescriptors) {
        this.slot = slot;
        Arena arena = Arena.ofAuto();
        this.cdb = arena.allocate(MAX_CDB);
        this.sense = arena.allocate(Scsi.FIXED_SENSE_LENGTH);
        this.data = new IoVecs(maxSegments);
        this.unmapOffset = new long[maxUnmapDescriptors];
        this.unmapLength = new long[maxUnmapDescriptors];
    }

    /** Resets the request for a new command and copies {@code length} CDB bytes. */
    public ScsiRequest reset(int lun, MemorySegment src, long srcOffset, int length, int direction, long tag) {
        if (length < 1 || length > MAX_CDB) {
            throw new IllegalArgumentException("CDB length " + length);
        }
        start(lun, direction, tag, false);
        cdb.fill((byte) 0);
        MemorySegment.copy(src, srcOffset, cdb, 0, length);
        this.cdbLength = length;
        return this;
    }

    /** The part of a reset both request forms share: addressing, no data yet, no result yet. */
    private void start(int lun, int direction, long tag, boolean block) {
        this.lun = lun;
        this.direction = direction;
        this.tag = tag;
        this.block = block;
        this.data.clear();
        this.status = Scsi.STATUS_GOOD;
        this.senseLength = 0;
        this.transferred = 0;
    }

    /**
     * Resets the request for a block operation a transport decoded from its own wire format (virtio-blk,
     * NBD): no CDB, the queue validates and runs it like a decoded SCSI command. For UNMAP and WRITE_ZEROES
     * {@code offset}/{@code length} are the first range; {@link #tryAddRange} adds more. READ and WRITE
     * carry their data in {@link #data()}, exactly {@code length} bytes.
     */
    public ScsiRequest block(int lun, BlockOp op, long offset, long length, boolean fua, long tag) {
        if (op == BlockOp.WRITE_PATTERN) {
            throw new IllegalArgumentException("WRITE_PATTERN comes only from a SCSI WRITE SAME");
        }
        start(lun, op == BlockOp.READ ? DIR_IN : op == BlockOp.WRITE ? DIR_OUT : DIR_NONE, tag, true);
        this.cdbLength = 0;
        this.op = op;
        this.fua = fua;
        this.ioOffset = offset;
        this.ioLength = length;
        this.unmapCount = 1;
        this.unmapOffset[0] = offset;
        this.unmapLength[0] = length;
        return this;
    }

    /** Adds a range to a block UNMAP/WRITE_ZEROES request; false when the request holds as many as it can. */
    public boolean tryAddRange(long offset, long length) {
        if (unmapCount == unmapOffset.length) {
            return false;
        }
        unmapOffset[unmapCount] = offset;
        unmapLength[unmapCount] = length;
        unmapCount++;
        return true;
    }

    /** How the request ended, for transports that speak no SCSI (see {@link BlockResult}). */
    public BlockResult result() {
        return BlockResult.of(this);
    }

    /** Convenience for tests and tools: a CDB from bytes. Allocates nothing beyond the caller's array. */
    public ScsiRequest reset(int lun, byte[] cdbBytes, int direction, long tag) {
        return reset(lun, MemorySegment.ofArray(cdbBytes), 0, cdbBytes.length, direction, tag);
    }

    public IoVecs data() {
        return data;
    }

    public MemorySegment cdb() {
        return cdb;
    }

    public int cdbLength() {
        return cdbLength;
    }

    public int opcode() {
        return cdb.get(ValueLayout.JAVA_BYTE, 0) & 0xFF;
    }

    public int lun() {
        return lun;
    }

    public int direction() {
        return direction;
    }

    public long tag() {
        return tag;
    }

    public int slot() {
        return slot;
    }

    public byte status() {
        return status;
    }

    public int senseLength() {
        return senseLength;
    }

    public MemorySegment sense() {
        return sense;
    }

    public int senseKey() {
        return senseLength == 0 ? 0 : sense.get(ValueLayout.JAVA_BYTE, 2) & 0x0F;
    }

    /** (asc << 8) | ascq of the sense data, 0 when none. */
    public int ascq() {
        return senseLength == 0 ? 0 : ((sense.get(ValueLayout.JAVA_BYTE, 12) & 0xFF) << 8)
            | (sense.get(ValueLayout.JAVA_BYTE, 13) & 0xFF);
    }

    public long transferred() {
        return transferred;
    }

    int u8(int at) {
        return cdb.get(ValueLayout.JAVA_BYTE, at) & 0xFF;
    }

    int u16(int at) {
        return cdb.get(U16, at) & 0xFFFF;
    }

    long u32(int at) {
        return cdb.get(U32, at) & 0xFFFFFFFFL;
    }

    long u64(int at) {
        return cdb.get(U64, at);
    }

    void good(long transferredBytes) {
        status = Scsi.STATUS_GOOD;
        senseLength = 0;
        transferred = transferredBytes;
    }

    /** CHECK CONDITION with fixed-format sense (response code 0x70, current error). */
    void checkCondition(int senseKey, int ascAscq) {
        checkCondition(senseKey, ascAscq, -1, -1);
    }

    /**
     * CHECK CONDITION; for ILLEGAL REQUEST a non-negative {@code fieldByte} adds the sense-key-specific
     * field pointer (SKSV=1, C/D = {@code inCdb}) naming the offending byte, as SPC-4 4.5.2.4.2 describes.
     */
    void checkCondition(int senseKey, int ascAscq, int fieldByte, int inCdb) {
        status = Scsi.STATUS_CHECK_CONDITION;
        transferred = 0;
        SenseData.writeFixed(sense, senseKey, ascAscq, fieldByte, inCdb);
        senseLength = Scsi.FIXED_SENSE_LENGTH;
    }

    /** CHECK CONDITION with the sense a pass-through device returned ({@code n} bytes, at most 18). */
    void deviceCheckCondition(MemorySegment deviceSense, int n) {
        status = Scsi.STATUS_CHECK_CONDITION;
        transferred = 0;
        sense.fill((byte) 0);
        MemorySegment.copy(deviceSense, 0, sense, 0, Math.min(n, Scsi.FIXED_SENSE_LENGTH));
        senseLength = Math.min(n, Scsi.FIXED_SENSE_LENGTH);
    }

    /** A status other than GOOD/CHECK CONDITION from a pass-through device (BUSY, TASK SET FULL ...), no sense. */
    void deviceStatus(byte deviceStatus) {
        status = deviceStatus;
        transferred = 0;
        senseLength = 0;
    }

    /** TASK ABORTED (SAM-5): a task management function aborted the command before it started. */
    void taskAborted() {
        status = Scsi.STATUS_TASK_ABORTED;
        transferred = 0;
        senseLength = 0;
    }

    /** Sets the INFORMATION field (VALID=1), e.g. the failing LBA of a MEDIUM ERROR. */
    void senseInformation(long info) {
        sense.set(ValueLayout.JAVA_BYTE, 0, (byte) 0xF0);
        sense.set(U32, 3, (int) info);
    }
}
