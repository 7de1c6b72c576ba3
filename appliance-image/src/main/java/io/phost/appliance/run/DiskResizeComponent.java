package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskAttachment;
import io.phost.appliance.config.DiskConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.appliance.vhd.Sizes;
import io.phost.core.text.Json;
import io.phost.storage.checkpoint.LunDiskSwitch;
import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.ops.DiskOps;
import io.phost.vhdx.ops.Progress;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Grows a disk while its partition runs ({@code POST /v1/disks/resize?name=D&size=S}, {@code phost disk resize}),
 * as Resize-VHD on an attached disk does:
 * <pre>
 *   pause the LUN's I/O (commands wait, none fails) → flush, close the image
 *     → grow the file (DiskOps.resize: VHDX through its log, VHD, raw) → reopen it
 *     → the LUN continues on the grown image (ScsiLun.swapGrownDisk) → resume
 *     → tell the guest: vhost-user-blk: CONFIG_CHANGE_MSG (QEMU re-reads the capacity and interrupts the guest);
 *       SCSI (VMBus storvsc, vhost-user-scsi): CAPACITY DATA HAS CHANGED unit attention on the next command
 * </pre>
 * Grow only: a shrink would take blocks from under a running guest's file system and is refused with the
 * reason. Refused too: pass-through devices and RBD images (their size is not an image file's), and disks
 * also served over NBD or a {@code vhost_user} export (their clients learned the size at connect time).
 */
final class DiskResizeComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.disks");
    private static final long DRAIN_TIMEOUT_MILLIS = 10_000;

    private final ApplianceConfig cfg;
    private final DisksComponent disks;
    private final StorageComponent storage;
    private final VmDisksComponent vmDisks;
    private volatile int resizes;
    private volatile Map<String, Object> last = Map.of();

    DiskResizeComponent(ApplianceConfig cfg, DisksComponent disks, StorageComponent storage, VmDisksComponent vmDisks) {
        this.cfg = cfg;
        this.disks = disks;
        this.storage = storage;
        this.vmDisks = vmDisks;
    }

    /** A refusal: the HTTP status and reason the API answers with. */
    static final class ResizeException extends Exception {
        final int status;
        final HttpResponse.Reason reason;

        ResizeException(int status, HttpResponse.Reason reason, String message) {
            super(message);
            this.status = status;
            this.reason = reason;
        }
    }

    @Override
    public String name() {
        return "disk_resize";
    }

    /** /status: how many live resizes were made and the last one's answer (what an operator checks afterwards). */
    @Override
    public Object status() {
        return Map.of("resizes", resizes, "last", last);
    }

    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        return Map.of("POST /v1/disks/resize", this::handle);
    }

    private HttpResponse handle(String query) {
        Map<String, String> a = Query.parse(query);
        try {
            return HttpResponse.json(Json.pretty(resize(a.get("name"), a.get("size"))));
        } catch (ResizeException e) {
            return HttpResponse.error(e.status, e.reason, e.getMessage());
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.ERROR, "resize of disk=" + a.get("name") + " failed", e);
            return HttpResponse.error(500, HttpResponse.Reason.INTERNAL_ERROR, "resize failed: " + causes(e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return HttpResponse.error(500, HttpResponse.Reason.INTERNAL_ERROR, "interrupted");
        }
    }

    /** The message of {@code e}, its causes and what was suppressed (a failed reopen after a failed grow). */
    private static String causes(Throwable e) {
        StringBuilder sb = new StringBuilder(String.valueOf(e.getMessage()));
        for (Throwable s : e.getSuppressed()) {
            sb.append("; also: ").append(causes(s));
        }
        for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
            sb.append("; cause: ").append(c.getMessage());
        }
        return sb.toString();
    }

    /** One resize at a time: each holds its LUN's I/O for the duration of the file's growth. */
    synchronized Map<String, Object> resize(String name, String sizeText) throws ResizeException, IOException, InterruptedException {
        if (name == null || name.isBlank()) {
            throw new ResizeException(400, HttpResponse.Reason.INVALID_ARGUMENT, "name=DISK is required");
        }
        DisksComponent.OpenDisk open = disks.get(name);
        if (open == null) {
            throw new ResizeException(404, HttpResponse.Reason.NOT_FOUND, "no disk named '" + name + "'");
        }
        if (sizeText == null || sizeText.isBlank()) {
            throw new ResizeException(400, HttpResponse.Reason.INVALID_ARGUMENT, "size=SIZE is required (20GiB, or +1GiB)");
        }
        DiskConfig d = open.config();
        long current = open.disk().size();
        long wanted;
        try {
            wanted = Sizes.parseRelative(sizeText, current);
        } catch (IllegalArgumentException e) {
            throw new ResizeException(400, HttpResponse.Reason.INVALID_ARGUMENT, "size '" + sizeText + "': " + e.getMessage());
        }
        refuseUnresizable(d, open, current, wanted);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("disk", name);
        out.put("old_size", current);
        if (wanted == current) {
            out.put("size", current);
            out.put("changed", false);
            return out;
        }
        Path path = open.path();
        LunDiskSwitch.Step grow = new LunDiskSwitch.Step() {
            @Override
            public VirtualDisk openNext() throws IOException {
                DiskOps.resize(path, wanted, false, Progress.NONE);
                return DisksComponent.openImage(d, path);
            }

            @Override
            public VirtualDisk reopenPrevious() throws IOException {
                return DisksComponent.openImage(d, path);
            }
        };
        Target t = target(name);
        VirtualDisk next;
        long pauseNanos = 0;
        try {
            if (d.format() == DiskFormat.RAW) {
                // DisksComponent opened it as a RawDisk (openImage): grown in place, over the same fd.
                long t0 = System.nanoTime();
                next = growRawInPlace(name, t, (RawDisk) open.disk(), wanted);
                pauseNanos = System.nanoTime() - t0;
            } else if (t.lun() == null) {
                next = growUnattached(name, path, open.disk(), grow);
            } else {
                LunDiskSwitch.Step onLun = new LunDiskSwitch.Step() {
                    @Override
                    public VirtualDisk openNext() throws IOException {
                        return grow.openNext();
                    }

                    @Override
                    public VirtualDisk reopenPrevious() throws IOException {
                        return grow.reopenPrevious();
                    }

                    @Override
                    public void swapInto(ScsiLun lun, VirtualDisk grown) {
                        lun.swapGrownDisk(grown, t.scsi());
                    }
                };
                LunDiskSwitch.Result r = LunDiskSwitch.switchDisk(t.lun(), onLun, DRAIN_TIMEOUT_MILLIS);
                next = r.disk();
                pauseNanos = r.pauseNanos();
            }
        } catch (IllegalArgumentException e) {
            // The engine refused (a differencing image, a size past the format's limit): the disk is unchanged.
            throw new ResizeException(409, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "': " + e.getMessage());
        }
        disks.replace(name, path, next);
        boolean notified = t.notifier() != null && t.notifier().getAsBoolean();
        out.put("size", next.size());
        out.put("changed", true);
        out.put("partition", t.partition() == null ? "" : t.partition());
        out.put("transport", t.transport());
        out.put("guest_notified", notified);
        out.put("io_pause_ms", pauseNanos / 1e6);
        resizes++; // under the method's lock
        last = Map.copyOf(out);
        LOG.log(Level.INFO, "resized disk=" + name + " from=" + current + " to=" + next.size() + " partition=" + out.get("partition")
            + " transport=" + t.transport() + " guest_notified=" + notified + " io_pause_ms=" + out.get("io_pause_ms"));
        return out;
    }

    /**
     * An RBD image changed size in place ({@code rbd resize}, seen by {@link DisksComponent#refreshRbdSizes}, or a
     * checkpoint's rollback to a smaller snapshot): the LUN serving it to a guest follows, and the guest is told as
     * after a resize here (a unit attention or CONFIG_CHANGE_MSG).
     */
    void followResizedImage(String name) {
        Target t = target(name);
        if (t.lun() == null || !t.lun().followDiskSize(t.scsi())) {
            return;
        }
        boolean notified = t.scsi() || t.notifier() != null && t.notifier().getAsBoolean();
        LOG.log(Level.INFO, "capacity change disk=" + name + " partition=" + t.partition() + " transport=" + t.transport()
            + " size=" + t.lun().blocks() * t.lun().blockSize() + " guest_notified=" + notified);
    }

    private void refuseUnresizable(DiskConfig d, DisksComponent.OpenDisk open, long current, long wanted) throws ResizeException {
        String name = d.name();
        if (d.format() == DiskFormat.PASSTHROUGH || d.format() == DiskFormat.RBD) {
            throw new ResizeException(409, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "' is "
                + (d.format() == DiskFormat.RBD ? "an RBD image" : "a pass-through device") + ": only image files are resized here");
        }
        if (d.readOnly()) {
            throw new ResizeException(409, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "' is read-only");
        }
        if (d.nbdExport() || d.vhostUser()) {
            throw new ResizeException(409, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "' is also exported over "
                + (d.nbdExport() ? "NBD (nbd_export = true)" : "vhost-user (vhost_user = true)")
                + ", whose clients learned its size when they connected; stop the export to resize it");
        }
        if (wanted < current) {
            throw new ResizeException(409, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "': shrinking from " + current
                + " to " + wanted + " bytes is refused: the running guest's data past the new end would be lost (grow only)");
        }
        int sector = open.disk().logicalSectorSize();
        if (wanted % sector != 0) {
            throw new ResizeException(400, HttpResponse.Reason.INVALID_ARGUMENT, "disk '" + name + "': size " + wanted
                + " is not a multiple of its " + sector + "-byte sectors");
        }
    }

    /**
     * A raw image grows in place ({@link RawDisk#grownTo}): the LUN's I/O is held only for the truncate and
     * the swap. Not closed and reopened: a queue's io_uring that registered the file keeps its lock held.
     */
    private static VirtualDisk growRawInPlace(String name, Target t, RawDisk raw, long wanted) throws IOException, InterruptedException {
        ScsiLun lun = t.lun();
        if (lun != null && !lun.pauseIo(DRAIN_TIMEOUT_MILLIS)) {
            lun.resumeIo();
            throw new IOException("disk '" + name + "': " + lun.inFlight() + " commands still executing after "
                + DRAIN_TIMEOUT_MILLIS + " ms; not resized");
        }
        try {
            raw.flush();
            RawDisk next = raw.grownTo(wanted);
            if (lun != null) {
                lun.swapGrownDisk(next, t.scsi());
            }
            return next;
        } finally {
            if (lun != null) {
                lun.resumeIo();
            }
        }
    }

    /** A disk no partition uses: flush, close, grow, reopen (nothing to pause); a failed grow reopens the old image. */
    private VirtualDisk growUnattached(String name, Path path, VirtualDisk old, LunDiskSwitch.Step grow) throws IOException {
        old.flush();
        old.close();
        try {
            return grow.openNext();
        } catch (IOException | RuntimeException e) {
            try {
                disks.replace(name, path, grow.reopenPrevious());
            } catch (IOException | RuntimeException again) {
                e.addSuppressed(again);
            }
            throw e;
        }
    }

    /** The partition and LUN serving {@code disk}, its transport, and how its guest learns the new size. */
    private record Target(String partition, ScsiLun lun, boolean scsi, String transport, java.util.function.BooleanSupplier notifier) {
    }

    private Target target(String disk) {
        VmDisksComponent.VmDisk vm = vmDisks.served(disk);
        if (vm != null) {
            return vm.scsi()
                ? new Target(vm.partition(), vm.lun(), true, "vhost-user-scsi", vm.configChanged())
                : new Target(vm.partition(), vm.lun(), false, "vhost-user-blk", vm.configChanged());
        }
        for (PartitionConfig p : cfg.partitions()) {
            for (DiskAttachment a : p.disks()) {
                if (a.disk().equals(disk) && storage.lun(p.name(), disk) != null) {
                    return new Target(p.name(), storage.lun(p.name(), disk), true, "vmbus-storvsc", null);
                }
            }
        }
        return new Target(null, null, false, "none", null);
    }

    @Override
    public void close() {
    }
}
