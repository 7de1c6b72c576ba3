package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.scsi.BlockOp;
import io.phost.storage.scsi.BlockResult;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;

/**
 * One virtio-blk queue: pops request chains, decodes each into one storage-core block request
 * ({@link ScsiRequest#block}: READ, WRITE, FLUSH, UNMAP over up to {@value VirtioBlkDescriptor#MAX_DISCARD_SEG}
 * ranges, WRITE_ZEROES) on a {@link ScsiQueue} slot whose iovecs point straight into guest memory (zero
 * copy), and on completion writes the status byte and returns the chain to the used ring. No SCSI CDB is
 * built: the core validates and runs the request as it does a decoded CDB. Everything is preallocated per
 * queue: nothing is allocated per I/O.
 * <pre>
 *   chain:  [ header 16 B ][ data ... ][ status 1 B ]      readable: header (+ data for OUT/DISCARD/WZ)
 *                                                          writable: (data for IN/GET_ID) + status
 *   IN/OUT  sector (512 B units) -> byte offset; misaligned or not a whole block -> IOERR
 *   status: BlockResult OK -> OK; UNSUPPORTED -> UNSUPP; anything else -> IOERR
 * </pre>
 */
final class VhostUserBlkQueue extends ScsiAdapterQueue {
    private final ScsiLun lun;
    private final byte[] id;
    private final int blockShift;
    private final int sectorsPerBlockMask;
    private final MemorySegment header;
    private final MemorySegment segments;
    private final MemorySegment idBuffer;
    private final int[] heads;
    private final long[] statusAddress;
    private final boolean[] isRead;
    private final IoVecs idVecs = new IoVecs(VirtioBlkDescriptor.SEG_MAX + 2);

    VhostUserBlkQueue(ScsiTarget target, ScsiLun lun, int depth, byte[] id) {
        super(target, depth, SEG_MAX + 2);
        this.lun = lun;
        this.id = id;
        this.blockShift = Integer.numberOfTrailingZeros(lun.blockSize());
        this.sectorsPerBlockMask = (lun.blockSize() >>> SECTOR_SHIFT) - 1;
        Arena arena = Arena.ofAuto();
        this.header = arena.allocate(HEADER_LENGTH, 8);
        this.segments = arena.allocate((long) SEGMENT_LENGTH * MAX_DISCARD_SEG, 8);
        this.idBuffer = arena.allocate(ID_BYTES, 8);
        this.heads = new int[depth];
        this.statusAddress = new long[depth];
        this.isRead = new boolean[depth];
        MemorySegment.copy(MemorySegment.ofArray(id), 0, idBuffer, 0, id.length);
    }

    /** Decodes one chain into slot {@code r} and submits it, or completes it at once (errors, GET_ID). */
    @Override
    void start(ScsiRequest r, DescriptorChain c) {
        int slot = r.slot();
        heads[slot] = c.head();
        isRead[slot] = false;
        if (c.writableBytes() < 1) {
            // No status byte to write: nothing can be reported; return the chain untouched.
            scsi.release(r);
            push(c.head(), 0);
            return;
        }
        statusAddress[slot] = lastWritableByte(c);
        if (c.readableBytes() < HEADER_LENGTH) {
            finish(r, S_IOERR, 0);
            return;
        }
        int type;
        long sector;
        if (c.length(0) >= HEADER_LENGTH) {
            // The usual layout (Linux, QEMU): the header is one buffer. Each field is read once, as from a copy.
            long h = c.address(0);
            type = EVERYTHING.get(LE32, h + TYPE_OFFSET);
            sector = EVERYTHING.get(LE64, h + SECTOR_OFFSET);
        } else {
            gatherReadable(c, 0, header, HEADER_LENGTH);
            type = header.get(LE32, TYPE_OFFSET);
            sector = header.get(LE64, SECTOR_OFFSET);
        }
        long readableData = c.readableBytes() - HEADER_LENGTH;
        long writableData = c.writableBytes() - 1;
        switch (type) {
            case T_IN -> {
                if (readableData != 0) {
                    finish(r, S_IOERR, 0);
                    return;
                }
                readWrite(r, c, true, sector, writableData);
            }
            case T_OUT -> {
                if (writableData != 0) {
                    finish(r, S_IOERR, 0);
                    return;
                }
                readWrite(r, c, false, sector, readableData);
            }
            case T_FLUSH -> scsi.submit(r.block(0, BlockOp.FLUSH, 0, 0, false, slot));
            case T_GET_ID -> {
                idVecs.clear();
                if (!addRange(idVecs, c, false, 0, Math.min(writableData, ID_BYTES))) {
                    finish(r, S_IOERR, 0);
                    return;
                }
                long n = idVecs.scatterFrom(idBuffer, 0, Math.min(writableData, ID_BYTES));
                finish(r, S_OK, (int) n);
            }
            case T_DISCARD -> discard(r, c, readableData);
            case T_WRITE_ZEROES -> writeZeroes(r, c, readableData);
            default -> finish(r, S_UNSUPP, 0);
        }
    }

    private void readWrite(ScsiRequest r, DescriptorChain c, boolean read, long sector, long length) {
        long offset = byteOffset(sector);
        if (offset < 0 || (length & ((1L << blockShift) - 1)) != 0 || length > ScsiLun.MAX_TRANSFER_BYTES) {
            finish(r, S_IOERR, 0);
            return;
        }
        r.block(0, read ? BlockOp.READ : BlockOp.WRITE, offset, length, false, r.slot());
        if (!addRange(r.data(), c, !read, read ? 0 : HEADER_LENGTH, length)) {
            finish(r, S_IOERR, 0);
            return;
        }
        isRead[r.slot()] = read;
        scsi.submit(r);
    }

    /** DISCARD: up to {@link VirtioBlkDescriptor#MAX_DISCARD_SEG} segments become one UNMAP request's ranges. */
    private void discard(ScsiRequest r, DescriptorChain c, long length) {
        if (length == 0 || length % SEGMENT_LENGTH != 0 || length / SEGMENT_LENGTH > MAX_DISCARD_SEG || lun.readOnly()) {
            finish(r, length == 0 || lun.readOnly() ? S_IOERR : S_UNSUPP, 0);
            return;
        }
        int n = (int) (length / SEGMENT_LENGTH);
        gatherReadable(c, HEADER_LENGTH, segments, length);
        for (int i = 0; i < n; i++) {
            long sector = segments.get(LE64, (long) SEGMENT_LENGTH * i);
            long sectors = segments.get(LE32, (long) SEGMENT_LENGTH * i + 8) & 0xFFFFFFFFL;
            int flags = segments.get(LE32, (long) SEGMENT_LENGTH * i + 12);
            long offset = byteOffset(sector);
            if (flags != 0 || offset < 0 || !wholeBlocksWithinUnmapLimit(sectors)) {
                finish(r, flags != 0 ? S_UNSUPP : S_IOERR, 0); // unmap flag is reserved for DISCARD
                return;
            }
            long bytes = sectors << SECTOR_SHIFT;
            if (i == 0) {
                r.block(0, BlockOp.UNMAP, offset, bytes, false, r.slot());
            } else {
                r.tryAddRange(offset, bytes); // n <= MAX_DISCARD_SEG < the slot's range capacity
            }
        }
        scsi.submit(r);
    }

    /** WRITE_ZEROES: one segment becomes a WRITE_ZEROES request, or UNMAP when the flag allows it. */
    private void writeZeroes(ScsiRequest r, DescriptorChain c, long length) {
        if (length != SEGMENT_LENGTH) {
            finish(r, length == 0 ? S_IOERR : S_UNSUPP, 0);
            return;
        }
        gatherReadable(c, HEADER_LENGTH, segments, SEGMENT_LENGTH);
        long offset = byteOffset(segments.get(LE64, 0));
        long sectors = segments.get(LE32, 8) & 0xFFFFFFFFL;
        int flags = segments.get(LE32, 12);
        if ((flags & ~1) != 0) {
            finish(r, S_UNSUPP, 0);
            return;
        }
        if (offset < 0 || !wholeBlocksWithinUnmapLimit(sectors)) {
            finish(r, S_IOERR, 0);
            return;
        }
        if (sectors == 0) {
            finish(r, S_OK, 0);
            return;
        }
        BlockOp op = (flags & 1) != 0 ? BlockOp.UNMAP : BlockOp.WRITE_ZEROES; // UNMAP: zeroes that may deallocate
        scsi.submit(r.block(0, op, offset, sectors << SECTOR_SHIFT, false, r.slot()));
    }

    /** The byte offset of a 512-byte {@code sector}, or -1 when it is past 2^63 bytes or not on a block boundary. */
    private long byteOffset(long sector) {
        if (sector < 0 || sector > (Long.MAX_VALUE >>> SECTOR_SHIFT) || (sector & sectorsPerBlockMask) != 0) {
            return -1;
        }
        return sector << SECTOR_SHIFT;
    }

    /** Whole blocks and no more than the advertised max_discard/max_write_zeroes sectors. */
    private boolean wholeBlocksWithinUnmapLimit(long sectors) {
        return (sectors & sectorsPerBlockMask) == 0 && sectors <= ScsiLun.MAX_UNMAP_BYTES >>> SECTOR_SHIFT;
    }

    @Override
    public void onScsiComplete(ScsiRequest r) {
        BlockResult result = r.result();
        byte status = result == BlockResult.OK ? S_OK : result == BlockResult.UNSUPPORTED ? S_UNSUPP : S_IOERR;
        int slot = r.slot();
        int written = status == S_OK && isRead[slot] ? (int) r.transferred() : 0;
        finish(r, status, written);
    }

    private void finish(ScsiRequest r, byte status, int written) {
        int slot = r.slot();
        EVERYTHING.set(ValueLayout.JAVA_BYTE, statusAddress[slot], status);
        scsi.release(r);
        push(heads[slot], written + 1);
    }

    private static long lastWritableByte(DescriptorChain c) {
        int last = c.count() - 1;
        while (c.length(last) == 0) {
            last--; // zero-length trailing buffers: the status byte is in the last non-empty one
        }
        return c.address(last) + c.length(last) - 1;
    }
}
