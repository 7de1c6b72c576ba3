package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskConfig;
import io.phost.storage.rbd.RbdDisk;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * Opens (or creates, when {@code [disk.create]} says so and the file is missing) every configured disk:
 * VHDX/VHD through vhdx-engine, raw images and pass-through block devices through the storage backend.
 * Closing (after the partitions stopped) flushes and closes them.
 */
public final class DisksComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.disks");

    /** An open disk and where it came from. */
    public record OpenDisk(DiskConfig config, Path path, VirtualDisk disk, boolean created) {
    }

    /**
     * Guarded by itself, not by this component's monitor: a live add or remove opens or flushes under the monitor,
     * and /status, metrics and the LUNs must not wait for that I/O (nor see the map half-changed).
     */
    private final Map<String, OpenDisk> disks = new LinkedHashMap<>();
    private final List<Consumer<String>> capacityListeners = new CopyOnWriteArrayList<>();

    public static DisksComponent open(ApplianceConfig cfg) throws IOException {
        return open(cfg, Map.of());
    }

    /** @param leaves disks that run on a checkpoint's differencing child: disk → the image to open instead */
    public static DisksComponent open(ApplianceConfig cfg, Map<String, Path> leaves) throws IOException {
        DisksComponent c = new DisksComponent();
        try {
            for (DiskConfig d : cfg.disks()) {
                Path leaf = leaves.get(d.name());
                if (leaf != null) {
                    VirtualDisk disk = VirtualDisks.open(leaf, d.readOnly());
                    c.put(new OpenDisk(d, leaf, disk, false));
                    LOG.log(Level.INFO, "opened disk=" + d.name() + " checkpoint_leaf=" + leaf + " size=" + disk.size());
                    continue;
                }
                c.openOne(d, cfg.host().dataDir(), followsPartitionLock(cfg, d));
            }
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    /**
     * With peers, a writable RBD disk of a partition (a process partition or a VM) takes its exclusive lock when the
     * partition starts here and gives it up when it stops, so the partition can run on either appliance
     * ({@link RbdLocks}); a VM's QEMU has quit (its vhost-user rings drained) before the lock goes.
     */
    static boolean followsPartitionLock(ApplianceConfig cfg, DiskConfig d) {
        return cfg.cluster().clustered() && d.format() == DiskFormat.RBD && !d.readOnly()
            && !cfg.partitionsUsing(d).isEmpty();
    }

    private void openOne(DiskConfig d, Path dataDir, boolean deferLock) throws IOException {
        Path path = d.resolvedPath(dataDir);
        if (d.format() == DiskFormat.RBD) {
            DiskConfig.Rbd r = d.rbd();
            RbdDisk rbd = RbdDisk.open(new RbdDisk.Options(r.clusterConfig(), r.client(), r.keyring(), r.pool(),
                r.namespace(), r.image(), d.create() == null ? 0 : d.create().size(), d.readOnly(), r.breakLock(),
                r.connectTimeoutSeconds(), deferLock));
            put(new OpenDisk(d, path, rbd, false));
            LOG.log(Level.INFO, "opened disk=" + d.name() + " format=rbd image=" + r.spec() + " size=" + rbd.size()
                + " read_only=" + d.readOnly() + (d.readOnly() ? "" : deferLock ? " exclusive_lock=with_partition"
                : " exclusive_lock=held"));
            return;
        }
        if (d.format() == DiskFormat.PASSTHROUGH) {
            if (!Files.exists(path)) {
                throw new IOException("disk '" + d.name() + "': pass-through device " + path + " does not exist");
            }
            // Exclusive (O_EXCL) and O_DIRECT: nobody else on the host may use the device while a guest owns it.
            VirtualDisk dev = RawDisk.openDevice(path, d.readOnly());
            put(new OpenDisk(d, path, dev, false));
            LOG.log(Level.INFO, "opened disk=" + d.name() + " format=passthrough device=" + path + " size=" + dev.size());
            return;
        }
        boolean created = false;
        if (!Files.exists(path)) {
            if (d.create() == null) {
                throw new IOException("disk '" + d.name() + "': " + path + " does not exist and [disk.create] is not set");
            }
            Files.createDirectories(path.toAbsolutePath().getParent());
            DiskConfig.Create cr = d.create();
            CreateOptions opts = new CreateOptions(d.format(),
                cr.type(), cr.size(), d.resolvedParent(dataDir), cr.blockSize(),
                cr.logicalSector(), cr.physicalSector());
            VirtualDisks.create(path, opts).close();
            created = true;
            LOG.log(Level.INFO, "created disk=" + d.name() + " path=" + path + " format=" + d.format().name().toLowerCase()
                + " type=" + cr.type().name().toLowerCase() + " size=" + cr.size());
        }
        VirtualDisk disk = openImage(d, path);
        put(new OpenDisk(d, path, disk, created));
        LOG.log(Level.INFO, "opened disk=" + d.name() + " format=" + disk.format() + " size=" + disk.size() + " read_only=" + disk.readOnly());
    }

    /**
     * Live grow through {@code rbd resize}: re-reads each RBD disk's size (on the storage sampler's one-second
     * tick). I/O bounds, the NBD export's size for new clients and the status follow at once; the parts serving
     * the disk to guests are told ({@link #onCapacityChange}).
     */
    void refreshRbdSizes() {
        for (OpenDisk d : all()) { // a copy: a live apply may open or close a disk meanwhile
            if (d.disk() instanceof RbdDisk rbd) {
                long before = rbd.size();
                try {
                    long after = rbd.refreshSize();
                    if (after != before) {
                        LOG.log(Level.INFO, "resized disk=" + d.config().name() + " image=" + rbd.options().spec()
                            + " from=" + before + " to=" + after);
                        notifyGuestsOfCapacityChange(d);
                    }
                } catch (IOException | RuntimeException e) {
                    LOG.log(Level.WARNING, "size refresh failed disk=" + d.config().name() + " reason=\"" + e.getMessage() + "\"");
                }
            }
        }
    }

    /** {@code listener} gets the name of each disk whose image grew in place (the parts serving it to guests). */
    void onCapacityChange(Consumer<String> listener) {
        capacityListeners.add(listener);
    }

    /** Disk {@code name} may have changed size in place (a rollback to a snapshot): the parts serving it re-read it. */
    void sizeMayHaveChanged(String name) {
        OpenDisk d = get(name);
        if (d != null) {
            notifyGuestsOfCapacityChange(d);
        }
    }

    private void notifyGuestsOfCapacityChange(OpenDisk disk) {
        for (Consumer<String> l : capacityListeners) {
            l.accept(disk.config().name());
        }
    }

    /**
     * Opens an image file of disk {@code d} as the host serves it: raw images through the storage backend's
     * RawDisk (an fd, so io_uring and O_DIRECT apply), VHDX and VHD through the format engine. Used at start
     * and to reopen a disk after a live resize.
     */
    static VirtualDisk openImage(DiskConfig d, Path path) throws IOException {
        return d.format() == DiskFormat.RAW ? RawDisk.openFile(path, d.readOnly(), true) : VirtualDisks.open(path, d.readOnly());
    }

    /**
     * Opens (or creates) a disk a live config change added ({@code cfg}: the new config); an RBD disk whose lock
     * follows its partition is opened without it, as at start.
     */
    synchronized void openLive(DiskConfig d, ApplianceConfig cfg) throws IOException {
        if (get(d.name()) != null) {
            throw new IllegalStateException("disk '" + d.name() + "' is open already");
        }
        openOne(d, cfg.host().dataDir(), followsPartitionLock(cfg, d));
    }

    /** Flushes and closes a disk a live config change removed (no LUN serves it any more). */
    synchronized void closeLive(String name) throws IOException {
        OpenDisk d;
        synchronized (disks) {
            d = disks.remove(name);
        }
        if (d != null) {
            flushBeforeClose(d.disk());
            d.disk().close();
            LOG.log(Level.INFO, "closed disk=" + name);
        }
    }

    private static void flushBeforeClose(VirtualDisk disk) throws IOException {
        if (disk instanceof RbdDisk rbd) {
            rbd.flushBeforeClose(); // a disk whose lock is with another appliance has nothing here to flush
        } else if (!disk.readOnly()) {
            disk.flush();
        }
    }

    /** A checkpoint (or a live resize) switched {@code name} to {@code path} (now open as {@code disk}; the old one is closed). */
    public void replace(String name, Path path, VirtualDisk disk) {
        synchronized (disks) {
            disks.computeIfPresent(name, (n, old) -> new OpenDisk(old.config(), path, disk, false));
        }
    }

    private void put(OpenDisk d) {
        synchronized (disks) {
            disks.put(d.config().name(), d);
        }
    }

    public OpenDisk get(String name) {
        synchronized (disks) {
            return disks.get(name);
        }
    }

    /** A snapshot, in config order; safe while a live change adds or removes disks. */
    public List<OpenDisk> all() {
        synchronized (disks) {
            return List.copyOf(disks.values());
        }
    }

    @Override
    public String name() {
        return "disks";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        for (OpenDisk d : all()) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", d.config().name());
            m.put("format", d.config().format().name().toLowerCase());
            m.put("size", d.disk().size());
            m.put("read_only", d.config().readOnly());
            m.put("path", d.config().rbd() != null ? "rbd:" + d.config().rbd().spec() : d.path().toString());
            rows.add(m);
        }
        return rows;
    }

    @Override
    public void metrics(Metrics m) {
        for (OpenDisk d : all()) {
            m.gauge("phost_disk_size_bytes", "Virtual size of a disk", io.prometheus.metrics.model.snapshots.Unit.BYTES, d.disk().size(), "disk", d.config().name());
        }
    }

    @Override
    public void close() {
        for (OpenDisk d : all()) {
            try {
                flushBeforeClose(d.disk());
                d.disk().close();
            } catch (IOException e) {
                LOG.log(Level.ERROR, "closing disk=" + d.config().name() + " failed", e);
            }
        }
        synchronized (disks) {
            disks.clear();
        }
    }
}
