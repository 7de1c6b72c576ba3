package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDevice;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;

/**
 * virtio-blk over the storage core: the device states features and config space from the disk (sector
 * sizes, capacity, read-only) and gives each started queue a {@link VhostUserBlkQueue}. The disk sits
 * behind one {@link ScsiLun} (range checks, read-only, QoS admission, statistics, engine choice), as it
 * does for the VMBus storvsc transport; the queues only translate virtio-blk requests into its commands.
 */
final class VhostUserBlkDevice implements VhostUserDevice {
    static final int QUEUE_DEPTH = 128;

    private final ScsiTarget target = new ScsiTarget();
    private final ScsiLun lun;
    private final int queues;
    private final byte[] id;

    VhostUserBlkDevice(ScsiLun lun, int queues, String serial) {
        this.lun = lun;
        this.queues = queues;
        target.add(0, lun);
        byte[] s = serial.getBytes(StandardCharsets.US_ASCII);
        this.id = java.util.Arrays.copyOf(s, Math.min(s.length, ID_BYTES));
    }

    ScsiLun lun() {
        return lun;
    }

    @Override
    public long features() {
        long f = (1L << F_SEG_MAX) | (1L << F_BLK_SIZE) | (1L << F_FLUSH) | (1L << F_TOPOLOGY) | (1L << F_MQ);
        if (lun.readOnly()) {
            f |= 1L << F_RO;
        } else {
            f |= (1L << F_DISCARD) | (1L << F_WRITE_ZEROES);
        }
        return f;
    }

    @Override
    public boolean packedRings() {
        return true;
    }

    /** Block requests are idempotent and the queue never gives chains back: resubmission after a kill is safe. */
    @Override
    public boolean tracksInflight() {
        return true;
    }

    @Override
    public int maxQueues() {
        return queues;
    }

    @Override
    public int readConfig(MemorySegment dst) {
        MemorySegment c = MemorySegment.ofArray(new byte[CONFIG_LENGTH]);
        int bs = lun.blockSize();
        int blocksPerPhysical = Math.max(1, lun.disk().physicalSectorSize() / bs);
        long maxUnmapSectors = ScsiLun.MAX_UNMAP_BYTES >>> SECTOR_SHIFT;
        c.set(LE64, CAPACITY_OFFSET, (lun.blocks() * bs) >>> SECTOR_SHIFT);
        c.set(LE32, SEG_MAX_OFFSET, SEG_MAX);
        c.set(LE32, BLK_SIZE_OFFSET, bs);
        c.set(java.lang.foreign.ValueLayout.JAVA_BYTE, PHYSICAL_BLOCK_EXP_OFFSET, (byte) Integer.numberOfTrailingZeros(blocksPerPhysical));
        c.set(LE16, MIN_IO_SIZE_OFFSET, (short) blocksPerPhysical);
        c.set(LE32, OPT_IO_SIZE_OFFSET, 0);
        c.set(java.lang.foreign.ValueLayout.JAVA_BYTE, WRITEBACK_OFFSET, (byte) 1);
        c.set(LE16, NUM_QUEUES_OFFSET, (short) queues);
        c.set(LE32, MAX_DISCARD_SECTORS_OFFSET, (int) maxUnmapSectors);
        c.set(LE32, MAX_DISCARD_SEG_OFFSET, MAX_DISCARD_SEG);
        c.set(LE32, DISCARD_SECTOR_ALIGNMENT_OFFSET, bs >>> SECTOR_SHIFT);
        c.set(LE32, MAX_WRITE_ZEROES_SECTORS_OFFSET, (int) maxUnmapSectors);
        c.set(LE32, MAX_WRITE_ZEROES_SEG_OFFSET, 1);
        c.set(java.lang.foreign.ValueLayout.JAVA_BYTE, WRITE_ZEROES_MAY_UNMAP_OFFSET, (byte) 1);
        MemorySegment.copy(c, 0, dst, 0, Math.min(CONFIG_LENGTH, dst.byteSize()));
        return CONFIG_LENGTH;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        return new VhostUserBlkQueue(target, lun, QUEUE_DEPTH, id);
    }
}
