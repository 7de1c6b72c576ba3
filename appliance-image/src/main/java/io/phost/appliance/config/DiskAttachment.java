package io.phost.appliance.config;

/** {@code [[partition.disk]]}: a disk (by name) on a SCSI controller (0..3) at a LUN (0..63). */
public record DiskAttachment(String disk, int controller, int lun) {
}
