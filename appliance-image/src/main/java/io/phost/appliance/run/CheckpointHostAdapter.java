package io.phost.appliance.run;

import io.phost.appliance.backup.ChangeTrackers;
import io.phost.appliance.checkpoint.CheckpointHost;
import io.phost.appliance.checkpoint.CheckpointRecovery;
import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskAttachment;
import io.phost.vhdx.DiskFormat;
import io.phost.appliance.config.PartitionConfig;
import io.phost.core.partition.ChildPartition;
import io.phost.storage.ChangeTracker;
import io.phost.storage.rbd.RbdDisk;
import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Checkpoints' view of the running host: partitions, their disks' configs and LUNs, and the open disks. */
final class CheckpointHostAdapter implements CheckpointHost {
    /** The running config: a partition added live (phost apply, a move) has checkpoints too. */
    private final java.util.function.Supplier<ApplianceConfig> config;
    private final DisksComponent disks;
    private final StorageComponent storage;
    private final PartitionsComponent partitions;
    private final VmDisksComponent vmDisks;
    private final ChangeTrackers tracking;

    CheckpointHostAdapter(java.util.function.Supplier<ApplianceConfig> config, DisksComponent disks, StorageComponent storage, PartitionsComponent partitions,
                          VmDisksComponent vmDisks, ChangeTrackers tracking) {
        this.vmDisks = vmDisks;
        this.tracking = tracking;
        this.config = config;
        this.disks = disks;
        this.storage = storage;
        this.partitions = partitions;
    }

    /** Before the disks open: finish interrupted checkpoint work and name each disk's leaf image. */
    static Map<String, Path> recover(ApplianceConfig cfg) throws IOException {
        Map<String, List<String>> byPartition = new LinkedHashMap<>();
        for (PartitionConfig p : cfg.partitions()) {
            byPartition.put(p.name(), p.disks().stream().map(DiskAttachment::disk).toList());
        }
        return CheckpointRecovery.recover(cfg.host().dataDir(), byPartition);
    }

    @Override
    public ChildPartition partition(String name) {
        return partitions.partition(name);
    }

    @Override
    public List<String> partitionNames() {
        return config.get().partitions().stream().map(PartitionConfig::name).toList();
    }

    @Override
    public List<String> disksOf(String partition) {
        return config.get().partition(partition).map(p -> p.disks().stream().map(DiskAttachment::disk).toList()).orElse(List.of());
    }

    @Override
    public Path configuredPath(String disk) {
        return config.get().disk(disk).orElseThrow().resolvedPath(config.get().host().dataDir());
    }

    @Override
    public boolean isVhdx(String disk) {
        return config.get().disk(disk).map(d -> d.format() == DiskFormat.VHDX).orElse(false);
    }

    @Override
    public boolean isVhd(String disk) {
        return config.get().disk(disk).map(d -> d.format() == DiskFormat.VHD).orElse(false);
    }

    @Override
    public String otherExport(String disk) {
        // An NBD export of a disk one partition serves shares that partition's LUN: the switch covers it.
        return config.get().disk(disk).map(d -> d.nbdExport() && NbdComponent.servingPartition(config.get(), disk) == null
            ? "it is exported over NBD (nbd_export = true) and not served by exactly one partition"
            : d.vhostUser() ? "it is exported over vhost-user (vhost_user = true)" : null).orElse(null);
    }

    @Override
    public ScsiLun lun(String partition, String disk) {
        ScsiLun lun = storage.lun(partition, disk);
        if (lun == null) {
            lun = vmDisks.lun(partition, disk); // a VM partition's disk: its vhost-user-blk export's LUN
        }
        if (lun == null) {
            throw new IllegalStateException("disk '" + disk + "' of partition '" + partition + "' has no LUN");
        }
        return lun;
    }

    @Override
    public void diskSwitched(String disk, Path path, VirtualDisk open) {
        disks.replace(disk, path, open);
    }

    @Override
    public Duration stopTimeout(ChildPartition p) {
        return partitions.stopTimeout(p);
    }

    @Override
    public RbdDisk rbdDisk(String disk) {
        DisksComponent.OpenDisk open = disks.get(disk);
        return open != null && open.disk() instanceof RbdDisk rbd ? rbd : null;
    }

    @Override
    public void diskReverted(String disk) {
        tracking.invalidate(disk, ChangeTracker.Reason.REVERTED);
        disks.sizeMayHaveChanged(disk); // an RBD rollback takes the snapshot's size: the LUNs follow, guests are told
    }
}
