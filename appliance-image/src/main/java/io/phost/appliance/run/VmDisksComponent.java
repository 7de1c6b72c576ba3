package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskAttachment;
import io.phost.appliance.config.DiskConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.core.vm.VmDevice;
import io.phost.qos.ManagedQosFlow;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.storage.vhost.VhostUserExport;
import io.phost.storage.vhost.VhostUserScsiExport;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The disks of VM partitions, served by this phost through the storage core (each disk's QoS flow,
 * read-only flag, engine and statistics), so QEMU never opens an image itself:
 * <pre>
 *   bus = "blk"  (default)  one vhost-user-blk device per disk    DATA_DIR/vhost/partitions/PARTITION/DISK.sock
 *   bus = "scsi"            one vhost-user-scsi device per controller, the disk at its LUN
 *                                                                 DATA_DIR/vhost/partitions/PARTITION/scsiN.sock
 * </pre>
 * (unique per partition, and apart from the {@code vhost_user} exports' {@code DATA_DIR/vhost/DISK.sock}).
 * A VM's devices follow (controller, LUN) order, a SCSI controller at the place of its first LUN; under
 * firmware boot the first one boots.
 */
public final class VmDisksComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.storage");
    /** sun_path is 108 bytes with the terminating NUL. */
    private static final int MAX_SOCKET_PATH = 107;

    /**
     * A disk on a VM: its own blk export (QEMU device {@code deviceId}), or a LUN of a SCSI controller's export
     * (shared by its LUNs); {@code flow} its QoS flow.
     */
    private record Export(String partition, DiskAttachment attachment, VhostUserBlkExport export, VhostUserScsiExport scsi, ScsiLun lun,
                          String deviceId, ManagedQosFlow flow) {
        DiskStats stats() {
            return export != null ? export.stats() : lun.stats();
        }

        String transport() {
            return export != null ? "vhost-user-blk" : "vhost-user-scsi";
        }

        /** The vhost-user endpoint serving this disk (the SCSI controller's for a LUN). */
        VhostUserExport endpoint() {
            return export != null ? export : scsi;
        }
    }

    private final Map<String, List<Export>> byPartition = new java.util.concurrent.ConcurrentHashMap<>();
    /**
     * Each VM's vhost-user-scsi controllers by number: a controller made at QEMU's start lives as long as its partition
     * (q35 cannot hot-unplug it), even with no LUNs left; one hot-plugged later goes with its last LUN.
     */
    private final Map<String, Map<Integer, VhostUserScsiExport>> scsiControllers = new java.util.concurrent.ConcurrentHashMap<>();
    private final Path base;
    private final DisksComponent disks;
    private final QosComponent qos;
    /** {@code [host] polling}: how the blk exports' queue workers wait for requests. */
    private io.phost.core.vmbus.PollingMode polling = io.phost.core.vmbus.PollingMode.ADAPTIVE;

    private VmDisksComponent(Path base, DisksComponent disks, QosComponent qos) {
        this.base = base;
        this.disks = disks;
        this.qos = qos;
    }

    public static VmDisksComponent start(ApplianceConfig cfg, DisksComponent disks, QosComponent qos) throws java.io.IOException {
        return start(cfg, disks, qos, disk -> null);
    }

    /**
     * @param sharedLun disk → the LUN its NBD export made for the VM partition serving it ({@link NbdComponent},
     *                  built by {@link #newLun}), or null: that disk's vhost-user export serves the same LUN
     */
    public static VmDisksComponent start(ApplianceConfig cfg, DisksComponent disks, QosComponent qos,
                                         java.util.function.Function<String, ScsiLun> sharedLun) throws java.io.IOException {
        VmDisksComponent c = new VmDisksComponent(cfg.host().dataDir().resolve("vhost").resolve("partitions"), disks, qos);
        c.polling = cfg.host().polling();
        try {
            for (PartitionConfig p : cfg.partitions()) {
                c.export(cfg, p, sharedLun);
            }
        } catch (java.io.IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    /**
     * A VM partition a live apply added (a move brought it here): its disks' exports listen before its QEMU is
     * built. Its disks are open already; none is shared with an NBD export (those are not added live).
     */
    synchronized void addPartition(ApplianceConfig cfg, PartitionConfig p) throws java.io.IOException {
        try {
            export(cfg, p, disk -> null);
        } catch (java.io.IOException | RuntimeException e) {
            removePartition(p.name());
            throw e;
        }
    }

    /** A VM partition a live apply removed (its QEMU has quit): its exports close, with their QoS flows. */
    synchronized void removePartition(String partition) {
        List<Export> exports = byPartition.remove(partition);
        Map<Integer, VhostUserScsiExport> controllers = scsiControllers.remove(partition);
        if (controllers != null) {
            controllers.values().forEach(VhostUserScsiExport::close);
        }
        if (exports == null) {
            return;
        }
        for (Export e : exports) {
            e.endpoint().close(); // a SCSI controller's LUNs close it again: idempotent
            if (e.flow() != null) {
                e.flow().close();
            }
        }
        LOG.log(Level.INFO, "closed exports partition=" + partition + " disks=" + exports.size());
    }

    /** Starts the exports of VM partition {@code p}'s disks (none for a process partition). */
    private void export(ApplianceConfig cfg, PartitionConfig p, java.util.function.Function<String, ScsiLun> sharedLun)
        throws java.io.IOException {
        if (!p.isVm() || p.disks().isEmpty()) {
            return;
        }
        Path dir = Files.createDirectories(base.resolve(p.name()));
        List<DiskAttachment> ordered = new ArrayList<>(p.disks());
        ordered.sort(Comparator.comparingInt(DiskAttachment::controller).thenComparingInt(DiskAttachment::lun));
        List<Export> exports = new java.util.concurrent.CopyOnWriteArrayList<>();
        byPartition.put(p.name(), exports);
        Map<Integer, VhostUserScsiExport> controllers = new java.util.concurrent.ConcurrentHashMap<>();
        scsiControllers.put(p.name(), controllers);
        for (DiskAttachment a : ordered) {
            DiskConfig d = cfg.disk(a.disk()).orElseThrow();
            DisksComponent.OpenDisk open = disks.get(d.name());
            Path socket = dir.resolve(a.bus() == DiskAttachment.Bus.SCSI ? "scsi" + a.controller() + ".sock" : d.name() + ".sock");
            if (socket.toString().length() > MAX_SOCKET_PATH) {
                throw new java.io.IOException("partition '" + p.name() + "' disk '" + d.name() + "': vhost-user socket path "
                    + socket + " is longer than " + MAX_SOCKET_PATH + " bytes; use a shorter data_dir");
            }
            ScsiLun lun = sharedLun.apply(d.name());
            ManagedQosFlow flow = null; // the NBD export's LUN brings its own flow
            if (lun == null) {
                flow = qos.service().createFlow(p.name(), d.name(), d.qosPolicy(), deviceOf(open.path()));
                lun = newLun(p, a, d, open.disk(), flow);
            }
            if (a.bus() == DiskAttachment.Bus.SCSI) {
                VhostUserScsiExport scsi = controllers.get(a.controller());
                if (scsi == null) {
                    scsi = VhostUserScsiExport.start(p.name() + ".scsi" + a.controller(), new ScsiTarget(), socket,
                        VhostUserScsiExport.Options.defaults().withRequestQueues(queues(p)).withPolling(polling));
                    controllers.put(a.controller(), scsi);
                }
                scsi.target().add(a.lun(), lun);
                exports.add(new Export(p.name(), a, null, scsi, lun, "scsi" + a.controller(), flow));
                LOG.log(Level.INFO, "exported disk=" + d.name() + " partition=" + p.name() + " transport=vhost-user-scsi controller="
                    + a.controller() + " lun=" + a.lun() + " socket=" + socket);
                continue;
            }
            exports.add(blkExport(p, a, d, lun, socket, flow, "disk" + exports.size()));
        }
    }

    /**
     * The LUN that serves disk {@code d} ({@code disk}, behind {@code flow}) to VM partition {@code p} at {@code a}:
     * a vhost-user-scsi controller's LUN is named after the disk, a vhost-user-blk export's after partition and
     * disk; both run on the automatic engine.
     */
    static ScsiLun newLun(PartitionConfig p, DiskAttachment a, DiskConfig d, io.phost.vhdx.VirtualDisk disk, QosFlow flow) {
        String name = a.bus() == DiskAttachment.Bus.SCSI ? d.name() : p.name() + "." + d.name();
        return new ScsiLun(name, disk, flow, d.readOnly(), IoEngines.Kind.AUTO);
    }

    /** {@code flow} is null when the LUN is shared with the disk's NBD export (which owns the flow). */
    private Export blkExport(PartitionConfig p, DiskAttachment a, DiskConfig d, ScsiLun lun, Path socket,
                                    ManagedQosFlow flow, String deviceId) {
        VhostUserBlkExport e = VhostUserBlkExport.start(p.name() + "." + d.name(), lun, socket,
            VhostUserBlkExport.Options.defaults().withQueues(queues(p)).withSerial(d.name()).withPolling(polling));
        LOG.log(Level.INFO, "exported disk=" + d.name() + " partition=" + p.name() + " transport=vhost-user-blk socket=" + socket);
        return new Export(p.name(), a, e, null, null, deviceId, flow);
    }

    /**
     * A live apply hot-plugs disk {@code a} into VM partition {@code p}: a blk disk's export listens (behind a new QoS
     * flow) before QEMU is told, and the device QEMU gets is returned ({@code VmPartition.addDisk}); a SCSI LUN is
     * added to its running controller ({@link #hotAddLun}) and null is returned: QEMU has nothing to do. A LUN on a
     * controller the VM does not have yet brings the controller ({@link #hotAddController}), returned for QEMU to
     * hot-plug. The disk is open already.
     */
    synchronized VmDevice hotAdd(PartitionConfig p, DiskAttachment a) throws java.io.IOException {
        if (a.bus() == DiskAttachment.Bus.SCSI) {
            if (scsiControllers.getOrDefault(p.name(), Map.of()).containsKey(a.controller())) {
                hotAddLun(p, a);
                return null;
            }
            return hotAddController(p, a);
        }
        DisksComponent.OpenDisk open = disks.get(a.disk());
        DiskConfig d = open.config();
        Path socket = Files.createDirectories(base.resolve(p.name())).resolve(d.name() + ".sock");
        if (socket.toString().length() > MAX_SOCKET_PATH) {
            throw new java.io.IOException("partition '" + p.name() + "' disk '" + d.name() + "': vhost-user socket path "
                + socket + " is longer than " + MAX_SOCKET_PATH + " bytes; use a shorter data_dir");
        }
        List<Export> exports = byPartition.computeIfAbsent(p.name(), k -> new java.util.concurrent.CopyOnWriteArrayList<>());
        java.util.Set<String> ids = new java.util.HashSet<>();
        exports.forEach(e -> ids.add(e.deviceId()));
        int n = exports.size();
        while (ids.contains("disk" + n)) {
            n++;
        }
        String id = "disk" + n;
        ManagedQosFlow flow = qos.service().createFlow(p.name(), d.name(), d.qosPolicy(), deviceOf(open.path()));
        Export e;
        try {
            e = blkExport(p, a, d, newLun(p, a, d, open.disk(), flow), socket, flow, id);
        } catch (RuntimeException ex) {
            flow.close();
            throw ex;
        }
        exports.add(e);
        return VmDevice.blk(id, socket, queues(p));
    }

    /**
     * Adds disk {@code a} as a LUN of VM partition {@code p}'s running vhost-user-scsi controller, behind a new QoS
     * flow: it answers commands at once, and a guest that acked VIRTIO_SCSI_F_HOTPLUG gets a TRANSPORT_RESET / RESCAN
     * event and probes it (a VM that is not running finds it when it next scans the bus).
     */
    private void hotAddLun(PartitionConfig p, DiskAttachment a) {
        VhostUserScsiExport scsi = scsiControllers.getOrDefault(p.name(), Map.of()).get(a.controller());
        if (scsi == null) {
            throw new IllegalStateException("partition '" + p.name() + "' has no vhost-user-scsi controller " + a.controller()
                + " (a controller is made when the VM starts)");
        }
        DisksComponent.OpenDisk open = disks.get(a.disk());
        DiskConfig d = open.config();
        ManagedQosFlow flow = qos.service().createFlow(p.name(), d.name(), d.qosPolicy(), deviceOf(open.path()));
        ScsiLun lun;
        try {
            lun = newLun(p, a, d, open.disk(), flow);
            scsi.addLun(a.lun(), lun);
        } catch (RuntimeException ex) {
            flow.close();
            throw ex;
        }
        byPartition.computeIfAbsent(p.name(), k -> new java.util.concurrent.CopyOnWriteArrayList<>())
            .add(new Export(p.name(), a, null, scsi, lun, "scsi" + a.controller(), flow));
        LOG.log(Level.INFO, "hot-added disk=" + d.name() + " partition=" + p.name() + " transport=vhost-user-scsi controller="
            + a.controller() + " lun=" + a.lun());
    }

    /**
     * A new vhost-user-scsi controller for VM partition {@code p} whose first LUN is disk {@code a} (behind a new QoS
     * flow): its export listens with the LUN in place before QEMU is told, so the guest's driver finds it in its
     * first scan. Returns the device QEMU hot-plugs; a failure here leaves nothing behind.
     */
    private VmDevice hotAddController(PartitionConfig p, DiskAttachment a) throws java.io.IOException {
        DisksComponent.OpenDisk open = disks.get(a.disk());
        DiskConfig d = open.config();
        Path socket = Files.createDirectories(base.resolve(p.name())).resolve("scsi" + a.controller() + ".sock");
        if (socket.toString().length() > MAX_SOCKET_PATH) {
            throw new java.io.IOException("partition '" + p.name() + "' disk '" + d.name() + "': vhost-user socket path "
                + socket + " is longer than " + MAX_SOCKET_PATH + " bytes; use a shorter data_dir");
        }
        ManagedQosFlow flow = qos.service().createFlow(p.name(), d.name(), d.qosPolicy(), deviceOf(open.path()));
        VhostUserScsiExport scsi = null;
        ScsiLun lun;
        try {
            lun = newLun(p, a, d, open.disk(), flow);
            scsi = VhostUserScsiExport.start(p.name() + ".scsi" + a.controller(), new ScsiTarget(), socket,
                VhostUserScsiExport.Options.defaults().withRequestQueues(queues(p)).withPolling(polling));
            scsi.target().add(a.lun(), lun);
        } catch (RuntimeException ex) {
            if (scsi != null) {
                scsi.close();
            }
            flow.close();
            throw ex;
        }
        scsiControllers.computeIfAbsent(p.name(), k -> new java.util.concurrent.ConcurrentHashMap<>()).put(a.controller(), scsi);
        byPartition.computeIfAbsent(p.name(), k -> new java.util.concurrent.CopyOnWriteArrayList<>())
            .add(new Export(p.name(), a, null, scsi, lun, "scsi" + a.controller(), flow));
        LOG.log(Level.INFO, "hot-added controller=" + a.controller() + " partition=" + p.name() + " disk=" + d.name()
            + " lun=" + a.lun() + " transport=vhost-user-scsi socket=" + socket);
        return new VmDevice("scsi" + a.controller(), VmDevice.Type.SCSI, socket, queues(p), null);
    }

    /**
     * The QEMU device id of the SCSI controller {@code disk} is the only LUN of on VM partition {@code partition}, or
     * null (a blk disk, or a controller with other LUNs): removing that LUN leaves the controller empty.
     */
    String soleLunController(String partition, String disk) {
        List<Export> exports = byPartition.getOrDefault(partition, List.of());
        for (Export e : exports) {
            if (e.scsi() != null && e.attachment().disk().equals(disk)) {
                return exports.stream().filter(o -> o.scsi() == e.scsi()).count() == 1 ? e.deviceId() : null;
            }
        }
        return null;
    }

    /** How long a hot-removed LUN's in-flight commands have to finish before its QoS flow closes. */
    private static final long LUN_DRAIN_MILLIS = 10_000;

    /** The QEMU device id of {@code disk} on VM partition {@code partition} (blk only), or null. */
    String deviceId(String partition, String disk) {
        for (Export e : byPartition.getOrDefault(partition, List.of())) {
            if (e.export() != null && e.attachment().disk().equals(disk)) {
                return e.deviceId();
            }
        }
        return null;
    }

    /**
     * A blk disk, after QEMU let go of it ({@code VmPartition.removeDisk}): its export closes. A SCSI LUN: it leaves
     * its controller (new commands get LOGICAL UNIT NOT SUPPORTED, a guest that acked VIRTIO_SCSI_F_HOTPLUG gets a
     * TRANSPORT_RESET / REMOVED event) and its in-flight commands finish. Then {@code disk}'s QoS flow closes.
     */
    synchronized void hotRemove(String partition, String disk) {
        hotRemove(partition, disk, false);
    }

    /**
     * {@link #hotRemove(String, String)}, and when {@code controllerGone} (QEMU let go of the SCSI controller, or never
     * had it) and {@code disk} was its last LUN, the controller's export closes too.
     */
    synchronized void hotRemove(String partition, String disk, boolean controllerGone) {
        List<Export> exports = byPartition.getOrDefault(partition, List.of());
        for (Export e : exports) {
            if (!e.attachment().disk().equals(disk)) {
                continue;
            }
            exports.remove(e);
            if (e.export() != null) {
                e.export().close();
                LOG.log(Level.INFO, "closed export disk=" + disk + " partition=" + partition);
            } else {
                drain(e.scsi().removeLun(e.attachment().lun()), e);
                LOG.log(Level.INFO, "hot-removed disk=" + disk + " partition=" + partition + " transport=vhost-user-scsi controller="
                    + e.attachment().controller() + " lun=" + e.attachment().lun());
                if (controllerGone && exports.stream().noneMatch(o -> o.scsi() == e.scsi())) {
                    Map<Integer, VhostUserScsiExport> controllers = scsiControllers.get(partition);
                    if (controllers != null) {
                        controllers.remove(e.attachment().controller());
                    }
                    e.scsi().close();
                    LOG.log(Level.INFO, "closed controller=" + e.attachment().controller() + " partition=" + partition);
                }
            }
            if (e.flow() != null) {
                e.flow().close();
            }
            return;
        }
    }

    /** Waits for a removed LUN's commands to finish (they keep its QoS flow busy until then). */
    private static void drain(ScsiLun unit, Export e) {
        try {
            if (unit != null && !io.phost.storage.scsi.ScsiTarget.awaitIdle(unit, LUN_DRAIN_MILLIS)) {
                LOG.log(Level.WARNING, "LUN still busy " + LUN_DRAIN_MILLIS + " ms after its removal disk=" + e.attachment().disk()
                    + " partition=" + e.partition() + " in_flight=" + unit.inFlight());
            }
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while LUN " + e.attachment().lun() + " drained", ex);
        }
    }

    /** One queue per vCPU (QEMU's default for vhost-user-blk-pci), at most 4: each queue is a worker thread here. */
    static int queues(PartitionConfig p) {
        return Math.max(1, Math.min(4, p.vcpus()));
    }

    private static String deviceOf(Path path) {
        try {
            return Files.getFileStore(path).name();
        } catch (java.io.IOException e) {
            return path.toString();
        }
    }

    /** The LUN serving {@code disk} to VM partition {@code partition}, or null. */
    public io.phost.storage.scsi.ScsiLun lun(String partition, String disk) {
        for (Export e : byPartition.getOrDefault(partition, List.of())) {
            if (e.attachment().disk().equals(disk)) {
                return e.export() != null ? e.export().lun() : e.lun();
            }
        }
        return null;
    }

    /**
     * Where {@code disk} is served to a VM, or null: its partition, its LUN, whether that LUN is on a SCSI
     * controller, and how the guest learns of a new capacity (a blk export's CONFIG_CHANGE_MSG, a SCSI
     * controller's PARAM_CHANGE event; true when sent to a connected front-end).
     */
    VmDisk served(String disk) {
        for (Map.Entry<String, List<Export>> p : byPartition.entrySet()) {
            for (Export e : p.getValue()) {
                if (e.attachment().disk().equals(disk)) {
                    return e.export() != null
                        ? new VmDisk(p.getKey(), e.export().lun(), false, e.export()::configChanged)
                        : new VmDisk(p.getKey(), e.lun(), true, () -> e.scsi().capacityChanged(e.attachment().lun()));
                }
            }
        }
        return null;
    }

    /** A VM's disk as {@link #served} finds it. */
    record VmDisk(String partition, ScsiLun lun, boolean scsi, java.util.function.BooleanSupplier configChanged) {
    }

    /** The vhost-user devices QEMU gets for partition {@code p}, in boot order. */
    public List<VmDevice> devicesFor(PartitionConfig p) {
        List<VmDevice> out = new ArrayList<>();
        List<VhostUserScsiExport> seen = new ArrayList<>();
        for (Export e : byPartition.getOrDefault(p.name(), List.of())) {
            if (e.export() != null) {
                out.add(VmDevice.blk(e.deviceId(), e.export().socketPath(), queues(p))); // as many as the export offers
            } else if (!seen.contains(e.scsi())) {
                seen.add(e.scsi());
                out.add(new VmDevice("scsi" + e.attachment().controller(), VmDevice.Type.SCSI, e.scsi().socketPath(), queues(p), null));
            }
        }
        return out;
    }

    @Override
    public String name() {
        return "vm_disks";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        byPartition.forEach((partition, exports) -> {
            for (Export e : exports) {
                DiskStats s = e.stats();
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("partition", partition);
                m.put("disk", e.attachment().disk());
                m.put("transport", e.transport());
                if (e.lun() != null) {
                    m.put("controller", e.attachment().controller());
                    m.put("lun", e.attachment().lun());
                }
                m.put("socket", e.endpoint().socketPath().toString());
                VhostUserComponent.putConnectionAndIo(m, e.endpoint(), s, false);
                rows.add(m);
            }
        });
        return rows;
    }

    @Override
    public void metrics(Metrics m) {
        byPartition.forEach((partition, exports) -> {
            for (Export e : exports) {
                String[] l = {"partition", partition, "disk", e.attachment().disk(), "transport", e.transport()};
                DiskStats s = e.stats();
                m.counter("phost_vm_disk_reads", "virtio-blk reads completed for a VM", s.reads(), l);
                m.counter("phost_vm_disk_writes", "virtio-blk writes completed for a VM", s.writes(), l);
                m.counter("phost_vm_disk_errors", "virtio-blk requests answered with an error", s.errors(), l);
                m.gauge("phost_vm_disk_connected", "1 while QEMU is connected to the disk's vhost-user socket",
                    e.endpoint().connected() ? 1 : 0, l);
            }
        });
    }

    @Override
    public void close() {
        byPartition.values().forEach(list -> list.forEach(e -> {
            if (e.export() != null) {
                e.export().close();
            }
        }));
        scsiControllers.values().forEach(m -> m.values().forEach(VhostUserScsiExport::close));
    }
}
