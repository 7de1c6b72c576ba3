package io.phost.storage.scsi;

import io.phost.qos.QosFlow;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Block requests ({@link ScsiRequest#block}, what vhost-user-blk and NBD submit) go through the same LUN
 * checks, engine and completion as CDBs: data written one way reads back the other, bad ranges and writes
 * to a read-only LUN are refused with a typed {@link BlockResult}, and a multi-range UNMAP zeroes each range.
 */
class BlockRequestTest {
    private static final int BS = 512;

    @Test
    void shouldReadBackThroughACdbWhatABlockWriteWrote() throws Exception {
        try (MemoryDisk disk = MemoryDisk.ram(1 << 20, BS, false); ScsiHarness h = harness(disk, false)) {
            MemorySegment out = h.buffer(8192);
            for (int i = 0; i < 8192; i++) {
                out.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
            }
            assertEquals(BlockResult.OK, h.runBlock(0, BlockOp.WRITE, 16 * BS, 8192, true, out).result());
            MemorySegment in = h.buffer(8192);
            ScsiRequest read = h.run(0, ScsiHarness.rw16(Scsi.READ_16, 16, 16), ScsiRequest.DIR_IN, in);
            assertEquals(Scsi.STATUS_GOOD, read.status());
            assertEquals(-1, out.mismatch(in));
            assertEquals(1, h.target.lun(0).stats().writes());
        }
    }

    @Test
    void shouldRefuseRangesPastTheEndOrNotInWholeBlocksAndWritesToAReadOnlyLun() throws Exception {
        try (MemoryDisk disk = MemoryDisk.ram(1 << 20, BS, false); ScsiHarness h = harness(disk, false)) {
            MemorySegment b = h.buffer(BS);
            assertEquals(BlockResult.INVALID, h.runBlock(0, BlockOp.READ, (1 << 20) - BS + BS, BS, false, b).result());
            assertEquals(BlockResult.INVALID, h.runBlock(0, BlockOp.READ, 100, BS, false, b).result(), "not on a block");
            assertEquals(BlockResult.INVALID, h.runBlock(0, BlockOp.WRITE, 0, 2 * BS, false, b).result(), "data shorter than the length");
            assertEquals(BlockResult.INVALID, h.runBlock(0, BlockOp.UNMAP, Long.MAX_VALUE - BS + 1, BS, false, null).result());
            assertEquals(BlockResult.INVALID, h.runBlock(0, BlockOp.WRITE_ZEROES, -BS, BS, false, null).result());
        }
        try (MemoryDisk disk = MemoryDisk.ram(1 << 20, BS, false); ScsiHarness h = harness(disk, true)) {
            assertEquals(BlockResult.READ_ONLY, h.runBlock(0, BlockOp.WRITE, 0, BS, false, h.buffer(BS)).result());
            assertEquals(BlockResult.READ_ONLY, h.runBlock(0, BlockOp.UNMAP, 0, BS, false, null).result());
            assertEquals(BlockResult.OK, h.runBlock(0, BlockOp.READ, 0, BS, false, h.buffer(BS)).result());
            assertEquals(BlockResult.OK, h.runBlock(0, BlockOp.FLUSH, 0, 0, false, null).result());
        }
    }

    @Test
    void shouldZeroEveryRangeOfAMultiRangeUnmap() throws Exception {
        try (MemoryDisk disk = MemoryDisk.ram(1 << 20, BS, false); ScsiHarness h = harness(disk, false)) {
            MemorySegment ones = h.buffer(64 * BS).fill((byte) 1);
            assertEquals(BlockResult.OK, h.runBlock(0, BlockOp.WRITE, 0, 64 * BS, false, ones).result());
            ScsiRequest r = h.queue.tryAcquire();
            r.block(0, BlockOp.UNMAP, 0, 4 * BS, true, 0); // FUA: the queue chains a flush after the last range
            r.tryAddRange(10 * BS, 0); // an empty range is a no-op
            r.tryAddRange(32 * BS, 8 * BS);
            ScsiRequest done = h.submitAndWait(r);
            assertEquals(BlockResult.OK, done.result());
            MemorySegment back = h.buffer(64 * BS);
            assertEquals(BlockResult.OK, h.runBlock(0, BlockOp.READ, 0, 64 * BS, false, back).result());
            for (int block = 0; block < 64; block++) {
                boolean unmapped = block < 4 || block >= 32 && block < 40;
                assertEquals(unmapped ? 0 : 1, back.get(ValueLayout.JAVA_BYTE, (long) block * BS), "block " + block);
            }
            assertEquals(1, h.target.lun(0).stats().unmaps());
        }
    }

    private static ScsiHarness harness(MemoryDisk disk, boolean readOnly) {
        ScsiTarget t = new ScsiTarget();
        t.add(0, new ScsiLun("blk", disk, QosFlow.UNLIMITED, readOnly, IoEngines.Kind.AUTO));
        return new ScsiHarness(t);
    }
}
