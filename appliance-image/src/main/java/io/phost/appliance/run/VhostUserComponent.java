package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskConfig;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.storage.vhost.VhostUserExport;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * vhost-user-blk exports of the disks that set {@code vhost_user = true}: each on its own Unix socket,
 * {@code <data_dir>/vhost/<disk>.sock}, for a VM's QEMU ({@code -chardev socket,id=c0,path=SOCK
 * -device vhost-user-blk-pci,chardev=c0}). Each disk's I/O is admitted through its own QoS flow (partition
 * {@code vhost-user} in {@code phost qos flows}); a read-only disk is exported read-only.
 */
public final class VhostUserComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.vhost");
    /** The partition name the exports' QoS flows carry. */
    public static final String FLOW_OWNER = "vhost-user";

    private final List<VhostUserBlkExport> exports;

    private VhostUserComponent(List<VhostUserBlkExport> exports) {
        this.exports = exports;
    }

    /** Starts an export per {@code vhost_user} disk, or returns null when there is none. */
    public static VhostUserComponent start(ApplianceConfig cfg, DisksComponent disks, QosComponent qos) {
        List<VhostUserBlkExport> exports = new ArrayList<>();
        try {
            for (DiskConfig d : cfg.disks()) {
                if (!d.vhostUser()) {
                    continue;
                }
                DisksComponent.OpenDisk open = disks.get(d.name());
                QosFlow flow = qos.service().createFlow(FLOW_OWNER, d.name(), d.qosPolicy(), StorageComponent.deviceOf(open.path()));
                Path sock = DiskConfig.vhostUserSocket(cfg.host().dataDir(), d.name());
                VhostUserBlkExport e = VhostUserBlkExport.start(d.name(), open.disk(), sock, VhostUserBlkExport.Options.defaults()
                    .withReadOnly(d.readOnly()).withQos(flow).withEngine(d.ioEngine())
                    .withCpus(cfg.host().vspCpus()).withPolling(cfg.host().polling()));
                exports.add(e);
                LOG.log(Level.INFO, "vhost-user-blk disk=" + d.name() + " socket=" + sock + " read_only=" + e.readOnly());
            }
        } catch (RuntimeException e) {
            exports.forEach(VhostUserBlkExport::close);
            throw e;
        }
        return exports.isEmpty() ? null : new VhostUserComponent(exports);
    }

    /**
     * {@code disk} changed size in place (an RBD resize or a rollback to a smaller snapshot): its export serves the new
     * size and tells the connected front-end.
     */
    void followDiskSize(String disk) {
        for (VhostUserBlkExport e : exports) {
            if (e.name().equals(disk) && e.lun().followDiskSize(false)) {
                LOG.log(Level.INFO, "capacity change vhost-user-blk disk=" + disk + " front_end_notified=" + e.configChanged());
            }
        }
    }

    @Override
    public String name() {
        return "vhost_user";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        for (VhostUserBlkExport e : exports) {
            DiskStats s = e.stats();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("disk", e.name());
            m.put("socket", e.socketPath().toString());
            m.put("read_only", e.readOnly());
            putConnectionAndIo(m, e, s, true);
            rows.add(m);
        }
        return rows;
    }

    /**
     * The columns every vhost-user export's status row ends with (here and in {@link VmDisksComponent}):
     * the front-end's connection, then the disk's I/O counts ({@code bytes} adds the byte counts).
     */
    static void putConnectionAndIo(Map<String, Object> m, VhostUserExport e, DiskStats s, boolean bytes) {
        m.put("connected", e.connected());
        m.put("queues", e.runningQueues());
        m.put("reads", s.reads());
        m.put("writes", s.writes());
        if (bytes) {
            m.put("bytes_read", s.bytesRead());
            m.put("bytes_written", s.bytesWritten());
        }
        m.put("errors", s.errors());
        m.put("last_error", e.lastError() == null ? "" : e.lastError());
    }

    @Override
    public void metrics(Metrics m) {
        for (VhostUserBlkExport e : exports) {
            DiskStats s = e.stats();
            m.counter("phost_vhost_user_reads_total", "vhost-user-blk reads completed", s.reads(), "disk", e.name());
            m.counter("phost_vhost_user_writes_total", "vhost-user-blk writes completed", s.writes(), "disk", e.name());
            m.counter("phost_vhost_user_read_bytes_total", "Bytes read over vhost-user-blk", s.bytesRead(), "disk", e.name());
            m.counter("phost_vhost_user_written_bytes_total", "Bytes written over vhost-user-blk", s.bytesWritten(), "disk", e.name());
            m.counter("phost_vhost_user_errors_total", "vhost-user-blk requests answered with an error", s.errors(), "disk", e.name());
            m.gauge("phost_vhost_user_connected", "1 while a front-end (QEMU) is connected", e.connected() ? 1 : 0, "disk", e.name());
        }
    }

    @Override
    public void close() {
        for (VhostUserBlkExport e : exports) {
            e.close(); // in-flight I/O completes; the disks close after us
        }
    }
}
