package io.phost.appliance.run;

import io.phost.appliance.checkpoint.CheckpointService;
import io.phost.appliance.checkpoint.CheckpointsComponent;
import io.phost.appliance.config.ApplianceConfig;

import java.util.List;

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
        DisksComponent disks = app.add(DisksComponent.open(cfg, CheckpointHostAdapter.recover(cfg)));
        QosComponent qos = app.add(new QosComponent(cfg), new Component[0]);
        NbdComponent nbd = NbdComponent.start(cfg, disks, qos);
        if (nbd != null) {
            app.add(nbd, disks, qos);
        }
        VhostUserComponent vhost = VhostUserComponent.start(cfg, disks, qos);
        if (vhost != null) {
            app.add(vhost, disks, qos);
        }
        StorageComponent storage = app.add(new StorageComponent(cfg, disks, qos), disks, qos);
        NetworkComponent network = app.add(NetworkComponent.start(cfg), new Component[0]);
        VmDisksComponent vmDisks = app.add(VmDisksComponent.start(cfg, disks, qos), disks, qos);
        PartitionsComponent partitions = app.add(PartitionsComponent.start(cfg, List.of(storage, network), vmDisks),
            storage, network, vmDisks, disks, qos);
        app.add(new DiskResizeComponent(cfg, disks, storage, vmDisks), storage, vmDisks, disks);
        Metering metering = new Metering(partitions, storage, qos, network);
        partitions.metering(metering);
        storage.onTick(metering::sample); // the storage sampler's one-second tick: no thread of its own
        // Uses every part above (a merge in progress must end before the disks close): added without a list.
        app.add(new CheckpointsComponent(new CheckpointService(
            new CheckpointHostAdapter(cfg, disks, storage, partitions, vmDisks), cfg.host().dataDir())));
    }
}
