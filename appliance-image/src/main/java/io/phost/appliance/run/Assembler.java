package io.phost.appliance.run;

import io.phost.appliance.backup.BackupComponent;
import io.phost.appliance.backup.BackupService;
import io.phost.appliance.backup.ChangeTrackers;
import io.phost.appliance.checkpoint.CheckpointService;
import io.phost.appliance.checkpoint.CheckpointsComponent;
import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.storage.scsi.ScsiLun;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The only place that turns a validated {@link ApplianceConfig} into running parts: disks, QoS (and the NBD
 * and vhost-user exports, whose I/O it admits), switches, partitions, checkpoints, in that order (so each part
 * finds what it depends on already running). Each part is added with what it uses, so that a stop closes
 * independent parts in parallel and a disk only after everything serving it. A failure part-way throws; the
 * caller closes whatever was added to the {@link Appliance}.
 */
public final class Assembler {
    private Assembler() {}

    public static void assemble(ApplianceConfig cfg, Appliance app) throws Exception {
        assemble(cfg, null, app);
    }

    /** @param text the config's text, which live changes ({@code phost apply}) start from; null for the demo */
    public static void assemble(ApplianceConfig cfg, String text, Appliance app) throws Exception {
        DisksComponent disks = app.add(DisksComponent.open(cfg, CheckpointHostAdapter.recover(cfg)));
        // Closed after every LUN that writes to a tracked disk (storage and VM disks use it): a clean bitmap close.
        ChangeTrackers tracking = app.add(new ChangeTrackers(cfg.host().dataDir()), new Component[0]);
        QosComponent qos = app.add(new QosComponent(cfg), new Component[0]);
        NbdComponent nbd = NbdComponent.start(cfg, disks, qos);
        if (nbd != null) {
            app.add(nbd, disks, qos);
        }
        VhostUserComponent vhost = VhostUserComponent.start(cfg, disks, qos);
        if (vhost != null) {
            app.add(vhost, disks, qos);
        }
        StorageComponent storage = app.add(new StorageComponent(cfg, disks, qos, nbd == null ? disk -> null : nbd::sharedLun),
            disks, qos, tracking);
        NetworkComponent network = app.add(NetworkComponent.start(cfg), new Component[0]);
        VmDisksComponent vmDisks = app.add(VmDisksComponent.start(cfg, disks, qos, nbd == null ? disk -> null : nbd::sharedLun), disks, qos, tracking);
        // Tracked disks get their bitmaps back before any partition writes: a VM's LUNs exist now, a process
        // partition's when the partitions are built (this source runs right after storage's, before autostart).
        for (var p : cfg.partitions()) {
            tracking.resume(luns(p, vmDisks::lun));
        }
        PartitionsComponent.VspSource resumeTracking = p -> {
            tracking.resume(luns(p, storage::lun));
            return List.of();
        };
        // With peers, a process partition's RBD locks follow it (taken when it starts here) and peers are watched.
        // The locks, the cluster and the checkpoints follow the running config (a live apply adds partitions).
        var built = new java.util.concurrent.atomic.AtomicReference<PartitionsComponent>();
        java.util.function.Supplier<ApplianceConfig> running = () -> built.get() == null ? cfg : built.get().config();
        RbdLocks locks = cfg.cluster().clustered() ? new RbdLocks(running, disks) : null;
        PartitionsComponent partitions = app.add(PartitionsComponent.start(cfg, List.of(storage, resumeTracking, network), vmDisks, locks),
            storage, network, vmDisks, disks, qos);
        built.set(partitions);
        network.guestLink((partition, device, up) -> partitions.partition(partition) instanceof io.phost.core.vm.VmPartition vm
            && vm.setLink(device, up));
        DiskResizeComponent resize = app.add(new DiskResizeComponent(cfg, disks, storage, vmDisks), storage, vmDisks, disks);
        Metering metering = new Metering(partitions, storage, qos, network);
        partitions.metering(metering);
        storage.onTick(metering::sample); // the storage sampler's one-second tick: no thread of its own
        // Live grow through rbd resize, told to the guests (also for an RBD disk a live apply adds later).
        storage.onTick(disks::refreshRbdSizes);
        disks.onCapacityChange(resize::followResizedImage);
        if (vhost != null) {
            disks.onCapacityChange(vhost::followDiskSize);
        }
        // Uses every part above (a merge in progress must end before the disks close): added without a list.
        CheckpointHostAdapter host = new CheckpointHostAdapter(running, disks, storage, partitions, vmDisks, tracking);
        CheckpointService checkpoints = new CheckpointService(host, cfg.host().dataDir());
        app.add(new CheckpointsComponent(checkpoints));
        app.add(new BackupComponent(new BackupService(host, checkpoints, tracking)));
        // A partition added live (or moved here) gets its trackers back as it is built, a VM's too, invalidated.
        PartitionsComponent.VspSource resumeAddedTracking = new PartitionsComponent.VspSource() {
            @Override
            public List<io.phost.core.vmbus.VirtualServiceProvider> vspsFor(PartitionConfig p) throws java.io.IOException {
                tracking.resumeAdded(luns(p, storage::lun));
                return List.of();
            }

            @Override
            public List<io.phost.core.vm.VmDevice> vmDevicesFor(PartitionConfig p) throws java.io.IOException {
                tracking.resumeAdded(luns(p, vmDisks::lun));
                return List.of();
            }
        };
        ConfigComponent config = app.add(new ConfigComponent(cfg, text, qos, network, storage, partitions, vmDisks,
            resumeAddedTracking), qos, network, storage, partitions, vmDisks);
        if (locks != null) {
            app.add(new ClusterComponent(cfg, running, config, partitions, locks), partitions, disks, config);
        }
    }

    /** The LUNs {@code lookup} (partition, disk → LUN or null) has for {@code p}'s disks. */
    private static Map<String, ScsiLun> luns(PartitionConfig p, java.util.function.BiFunction<String, String, ScsiLun> lookup) {
        Map<String, ScsiLun> luns = new LinkedHashMap<>();
        for (var a : p.disks()) {
            ScsiLun lun = lookup.apply(p.name(), a.disk());
            if (lun != null) {
                luns.put(a.disk(), lun);
            }
        }
        return luns;
    }
}
