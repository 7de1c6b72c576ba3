package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskAttachment;
import io.phost.appliance.config.PartitionConfig;
import io.phost.storage.rbd.RbdDisk;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * On an appliance with peers, a partition's (process or VM) RBD disks are opened at host start without their
 * exclusive lock ({@link DisksComponent#followsPartitionLock}); the lock goes with the partition: taken when it
 * starts here, given up (after a flush) when it stops. The lock is the arbiter of where a partition runs: a
 * start while another appliance holds it is refused naming the holder, so two appliances never run one
 * partition, and an HA takeover breaks it (librbd blocklists the old holder, whose writes then fail).
 */
final class RbdLocks {
    private static final Logger LOG = System.getLogger("phost.cluster");

    /** The running config: a live apply (a partition moved here) changes which disks a partition has. */
    private final Supplier<ApplianceConfig> config;
    private final DisksComponent disks;

    RbdLocks(Supplier<ApplianceConfig> config, DisksComponent disks) {
        this.config = config;
        this.disks = disks;
    }

    /** The partition's disks whose lock follows it (empty on a stand-alone appliance). */
    List<RbdDisk> disksOf(String partition) {
        ApplianceConfig cfg = config.get();
        PartitionConfig p = cfg.partition(partition).orElse(null);
        List<RbdDisk> out = new ArrayList<>();
        if (p == null) {
            return out;
        }
        for (DiskAttachment a : p.disks()) {
            DisksComponent.OpenDisk d = disks.get(a.disk());
            if (d != null && DisksComponent.followsPartitionLock(cfg, d.config()) && d.disk() instanceof RbdDisk rbd) {
                out.add(rbd);
            }
        }
        return out;
    }

    /** True when the partition's disks are all shared storage (RBD) that another appliance can open. */
    boolean movable(String partition) {
        PartitionConfig p = config.get().partition(partition).orElse(null);
        return p != null && disksOf(partition).size() == p.disks().size();
    }

    /**
     * Takes every lock of the partition, or none: on a refusal the ones already taken are given back.
     *
     * @param breakHolder break (and blocklist) another holder instead of refusing: HA takeover only
     */
    void acquire(String partition, boolean breakHolder) throws IOException {
        List<RbdDisk> taken = new ArrayList<>();
        try {
            for (RbdDisk d : disksOf(partition)) {
                d.acquireLock(breakHolder);
                taken.add(d);
            }
        } catch (IOException | RuntimeException e) {
            for (RbdDisk d : taken) {
                releaseOne(partition, d);
            }
            throw new IOException("partition '" + partition + "' cannot take its disk: " + e.getMessage(), e);
        }
        if (!taken.isEmpty()) {
            LOG.log(Level.INFO, "locked partition=" + partition + " disks=" + taken.size() + " broke_holder=" + breakHolder);
        }
    }

    /** Flushes and gives up every lock of the partition (it stopped here, or moves away). */
    void release(String partition) {
        for (RbdDisk d : disksOf(partition)) {
            releaseOne(partition, d);
        }
    }

    private static void releaseOne(String partition, RbdDisk d) {
        try {
            d.releaseLock();
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.WARNING, "unlock failed partition=" + partition + " image=" + d.options().spec()
                + " reason=\"" + e.getMessage() + "\"");
        }
    }

    /** Who holds the partition's first disk's lock (librbd's owner strings); empty when nobody does. */
    List<String> holders(String partition) throws IOException {
        List<RbdDisk> ds = disksOf(partition);
        return ds.isEmpty() ? List.of() : ds.getFirst().lockOwners();
    }

    /** True when this appliance was fenced: a disk of the partition lost its lock to another appliance. */
    boolean lostLock(String partition) {
        for (RbdDisk d : disksOf(partition)) {
            try {
                if (!d.holdsLock()) {
                    return true;
                }
            } catch (RuntimeException e) {
                return true;
            }
        }
        return false;
    }
}
