package io.phost.appliance.run;

import io.phost.appliance.checkpoint.CheckpointService;
import io.phost.appliance.checkpoint.CheckpointsComponent;
import io.phost.appliance.config.ApplianceConfig;

import java.util.List;

/**
 * The only place that turns a validated {@link ApplianceConfig} into running parts: disks, QoS (and the NBD
 * and vhost-user exports, whose I/O it admits), switches, partitions, in that order (so each part finds what it depends on already
 * running). A failure part-way throws; the caller closes whatever was added to the {@link Appliance}.
 */
public final class Assembler {
    private Assembler() {}

    public static void assemble(ApplianceConfig cfg, Appliance app) throws Exception {
        DisksComponent disks = app.add(DisksComponent.open(cfg, CheckpointHostAdapter.recover(cfg)));
        QosComponent qos = app.add(new QosComponent(cfg));
        NbdComponent nbd = NbdComponent.start(cfg, disks, qos);
        if (nbd != null) {
            app.add(nbd);
        }
        VhostUserComponent vhost = VhostUserComponent.start(cfg, disks, qos);
        if (vhost != null) {
            app.add(vhost);
        }
        StorageComponent storage = app.add(new StorageComponent(cfg, disks, qos));
        NetworkComponent network = app.add(NetworkComponent.start(cfg));
        VmDisksComponent vmDisks = app.add(VmDisksComponent.start(cfg, disks, qos));
        PartitionsComponent partitions = app.add(PartitionsComponent.start(cfg, List.of(storage, network), vmDisks));
        app.add(new CheckpointsComponent(new CheckpointService(
            new CheckpointHostAdapter(cfg, disks, storage, partitions, vmDisks), cfg.host().dataDir())));
    }
}
