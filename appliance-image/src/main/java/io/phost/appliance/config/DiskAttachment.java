package io.phost.appliance.config;

/**
 * {@code [[partition.disk]]}: a disk (by name) on a SCSI controller (0..3) at a LUN (0..63). For a
 * {@code kind = "vm"} partition, {@code bus} says how the guest sees it: its own virtio-blk device (default),
 * or a LUN of the controller's virtio-scsi device (one vhost-user-scsi device per controller).
 */
public record DiskAttachment(String disk, int controller, int lun, Bus bus) {
    public enum Bus { BLK, SCSI }

    public DiskAttachment {
        java.util.Objects.requireNonNull(bus, "bus");
    }

    /** On the default bus (virtio-blk for a VM; process partitions always use the VMBus SCSI controller). */
    public DiskAttachment(String disk, int controller, int lun) {
        this(disk, controller, lun, Bus.BLK);
    }
}
