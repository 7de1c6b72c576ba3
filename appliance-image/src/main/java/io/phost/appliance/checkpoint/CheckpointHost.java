package io.phost.appliance.checkpoint;

import io.phost.core.partition.ChildPartition;
import io.phost.storage.rbd.RbdDisk;
import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.VirtualDisk;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/** What checkpoints need from the running host (implemented by the wiring in {@code appliance.run}). */
public interface CheckpointHost {
    /** The partition, or null. */
    ChildPartition partition(String name);

    /** Every partition's name, in config order. */
    List<String> partitionNames();

    /** The partition's disks (config names) in attachment order. */
    List<String> disksOf(String partition);

    /** The configured file of {@code disk} (its image before any checkpoint) and whether it is VHDX. */
    Path configuredPath(String disk);

    boolean isVhdx(String disk);

    /** Whether {@code disk} is a VHD (its checkpoints are differencing {@code .vhd} children). */
    default boolean isVhd(String disk) {
        return false;
    }

    /** Why {@code disk} is served by something besides its partition's LUN (NBD, vhost-user), or null. */
    String otherExport(String disk);

    /** The LUN that serves {@code disk} to {@code partition}. */
    ScsiLun lun(String partition, String disk);

    /** The disk now runs on {@code path}, open as {@code open} (status and the final close follow it). */
    void diskSwitched(String disk, Path path, VirtualDisk open);

    Duration stopTimeout(ChildPartition p);

    /** The open RBD image behind {@code disk} (its checkpoints are RBD snapshots), or null for an image file. */
    default RbdDisk rbdDisk(String disk) {
        return null;
    }

    /** A checkpoint apply took {@code disk} back to an older state (its change tracking no longer holds). */
    default void diskReverted(String disk) {
    }
}
