package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDevice;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi over the storage core: one controller = one {@link ScsiTarget} (target 0) with its LUNs, as the
 * config lays them out. Queue 0 is control, 1 events, 2.. requests (each its own {@link ScsiQueue} over the
 * shared target). Device features: HOTPLUG (a LUN added or removed live raises a transport-reset event,
 * {@link #lunChanged}) and CHANGE (QEMU passes its own default-on {@code param_change} bit through to the
 * back-end unmasked, and refuses to start if SET_FEATURES fails; a grown LUN raises a parameter-change event,
 * {@link #capacityChanged}). Not offered: INOUT, T10_PI.
 * <pre>
 *  config (36)  le32 num_queues @0 | le32 seg_max @4 | le32 max_sectors @8 | le32 cmd_per_lun @12
 *               | le32 event_info_size @16 | le32 sense_size @20 | le32 cdb_size @24 | le16 max_channel @28
 *               | le16 max_target @30 | le32 max_lun @32
 * </pre>
 * QEMU 7.2's {@code vhost-user-scsi-pci} keeps the config space itself (from its own properties) and does
 * not read this one; other front-ends may.
 */
final class VhostUserScsiDevice implements VhostUserDevice {
    static final int QUEUE_DEPTH = 128;
    /** Data buffers one command may have (QEMU's seg_max for a 128-entry queue is 126). */
    static final int SEG_MAX = 254;
    static final int CONFIG_LENGTH = 36;

    private final ScsiTarget target;
    private final int requestQueues;
    final ScsiEventMailbox events = new ScsiEventMailbox();

    VhostUserScsiDevice(ScsiTarget target, int requestQueues) {
        this.target = target;
        this.requestQueues = requestQueues;
    }

    ScsiTarget target() {
        return target;
    }

    /** LUN {@code lun} grew: a VIRTIO_SCSI_T_PARAM_CHANGE event for the guest (any thread). */
    void capacityChanged(int lun) {
        events.paramChanged(lun);
    }

    /** LUN {@code lun} was added ({@code added}) or removed: a VIRTIO_SCSI_T_TRANSPORT_RESET event (any thread). */
    void lunChanged(int lun, boolean added) {
        events.transportReset(lun, added ? VhostUserScsiEventQueue.EVT_RESET_RESCAN : VhostUserScsiEventQueue.EVT_RESET_REMOVED);
    }

    /** VIRTIO_SCSI_F_HOTPLUG: LUN hot-add/remove events. */
    static final int F_HOTPLUG = 1;
    /** VIRTIO_SCSI_F_CHANGE. */
    static final int F_CHANGE = 2;

    private volatile boolean hotplugAcked;

    @Override
    public long features() {
        return 1L << F_HOTPLUG | 1L << F_CHANGE;
    }

    @Override
    public void featuresAcked(long features) {
        hotplugAcked = (features & 1L << F_HOTPLUG) != 0;
    }

    @Override
    public int maxQueues() {
        return FIRST_REQUEST_QUEUE + requestQueues;
    }

    /** SCSI commands are idempotent for the disks we serve (reads, writes, unmaps): resubmission is safe. */
    @Override
    public boolean tracksInflight() {
        return true;
    }

    @Override
    public int readConfig(MemorySegment dst) {
        MemorySegment c = MemorySegment.ofArray(new byte[CONFIG_LENGTH]);
        c.set(LE32, 0, requestQueues);
        c.set(LE32, 4, SEG_MAX);
        c.set(LE32, 8, io.phost.storage.scsi.ScsiLun.MAX_TRANSFER_BYTES >>> 9);
        c.set(LE32, 12, QUEUE_DEPTH);
        c.set(LE32, 16, EVENT_LENGTH);
        c.set(LE32, 20, SENSE_SIZE);
        c.set(LE32, 24, CDB_SIZE);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, 28, (short) 0);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, 30, (short) 0);
        c.set(LE32, 32, ScsiTarget.MAX_LUNS - 1);
        MemorySegment.copy(c, 0, dst, 0, Math.min(CONFIG_LENGTH, dst.byteSize()));
        return CONFIG_LENGTH;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        return switch (index) {
            case CONTROL_QUEUE -> new VhostUserScsiControlQueue(target);
            case EVENT_QUEUE -> new VhostUserScsiEventQueue(events, () -> hotplugAcked);
            default -> new VhostUserScsiQueue(target, QUEUE_DEPTH);
        };
    }
}
