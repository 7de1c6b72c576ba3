package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskConfig;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.appliance.config.PartitionConfig;
import io.phost.storage.StorageVsp;
import io.phost.storage.nbd.NbdServer;
import io.phost.storage.scsi.ScsiLun;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The NBD export ({@code [host] nbd}): serves every disk with {@code nbd_export = true} under its own name, so
 * qemu-img, qemu-io, nbdinfo, nbdcopy and fio's nbd engine reach the appliance's disks. Started only when
 * some disk is exported; a read-only disk is exported read-only. The server has no authentication, which is
 * why the config allows only a Unix socket or loopback TCP.
 *
 * <p>A disk that one partition serves is exported through that partition's LUN, made here and attached by
 * {@link StorageComponent} when a process partition is built, or served by {@link VmDisksComponent}'s
 * vhost-user export for a VM ({@link #sharedLun}): one image, one LUN, one QoS flow (the partition's), one
 * checkpoint pause, so checkpoints and backups work on exported disks.
 * The export's connections still run on the NBD engine choice ({@link NbdServer.Export#sharing}).
 *
 * <pre>
 *   qemu-img info 'nbd+unix:///scratch?socket=/data/phost/nbd.sock'
 *   nbdinfo nbd://127.0.0.1:10809/scratch
 * </pre>
 */
public final class NbdComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.nbd");
    /** The QoS flow owner of NBD I/O (as a partition's name is for guest I/O). */
    public static final String FLOW_OWNER = "nbd";

    private final NbdServer server;
    private final List<NbdServer.Export> exports;
    /** disk → the LUN its export shares with the partition serving it. */
    private final Map<String, ScsiLun> shared;

    private NbdComponent(NbdServer server, List<NbdServer.Export> exports, Map<String, ScsiLun> shared) {
        this.server = server;
        this.exports = exports;
        this.shared = Map.copyOf(shared);
    }

    /** Wraps a running server (tests). */
    static NbdComponent of(NbdServer server, List<NbdServer.Export> exports) {
        return new NbdComponent(server, exports, Map.of());
    }

    /** Starts the server, or returns null when no disk is exported. */
    public static NbdComponent start(ApplianceConfig cfg, DisksComponent disks, QosComponent qos) throws IOException {
        List<NbdServer.Export> exports = new ArrayList<>();
        Map<String, ScsiLun> shared = new LinkedHashMap<>();
        for (DiskConfig d : cfg.disks()) {
            if (d.nbdExport()) {
                DisksComponent.OpenDisk open = disks.get(d.name());
                String partition = servingPartition(cfg, d.name());
                // The disk's QoS policy binds NBD clients too: the serving partition's flow, else owner "nbd".
                QosFlow flow = qos.service().createFlow(partition != null ? partition : FLOW_OWNER, d.name(), d.qosPolicy(),
                    StorageComponent.deviceOf(open.path()));
                if (partition != null) {
                    PartitionConfig p = cfg.partition(partition).orElseThrow();
                    ScsiLun lun = p.isVm()
                        ? VmDisksComponent.newLun(p, attachment(p, d.name()), d, open.disk(), flow)
                        : new ScsiLun(StorageVsp.lunName(partition, d.name()), open.disk(), flow, d.readOnly(), d.ioEngine());
                    shared.put(d.name(), lun);
                    exports.add(NbdServer.Export.sharing(d.name(), lun, d.ioEngine()));
                } else {
                    exports.add(new NbdServer.Export(d.name(), open.disk(), d.readOnly()).withQos(flow).withEngine(d.ioEngine()));
                }
            }
        }
        if (exports.isEmpty()) {
            return null;
        }
        String address = cfg.host().nbd();
        NbdServer server;
        try {
            server = address.startsWith("unix:")
                ? NbdServer.unix(Path.of(address.substring("unix:".length())), exports)
                : NbdServer.tcp(Integer.parseInt(address.substring(address.lastIndexOf(':') + 1)), exports);
        } catch (java.net.BindException e) {
            throw new IOException("nbd export: " + address + " is already in use (another phost, qemu-nbd or nbdkit "
                + "listening there?); free it or change [host] nbd", e);
        }
        for (NbdServer.Export e : exports) {
            LOG.log(Level.INFO, "exported disk=" + e.name() + " uri=" + server.uri(e.name()) + " read_only=" + e.readOnly());
        }
        return new NbdComponent(server, exports, shared);
    }

    /**
     * The partition whose LUN an export of {@code disk} shares: the one partition attaching it (a process
     * partition's VMBus LUN, a VM's vhost-user-blk or -scsi LUN), or null (no partition, or several: each has a
     * LUN of its own, see docs/architecture.md).
     */
    public static String servingPartition(ApplianceConfig cfg, String disk) {
        List<PartitionConfig> users = cfg.partitions().stream()
            .filter(p -> p.disks().stream().anyMatch(a -> a.disk().equals(disk)))
            .toList();
        return users.size() == 1 ? users.getFirst().name() : null;
    }

    private static io.phost.appliance.config.DiskAttachment attachment(PartitionConfig p, String disk) {
        return p.disks().stream().filter(a -> a.disk().equals(disk)).findFirst().orElseThrow();
    }

    /** The LUN {@code disk}'s export shares with the partition serving it (process or VM), or null. */
    public ScsiLun sharedLun(String disk) {
        return shared.get(disk);
    }

    @Override
    public String name() {
        return "nbd";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        for (NbdServer.Export e : exports) {
            DiskStats s = e.stats();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("export", e.name());
            m.put("uri", server.uri(e.name()));
            m.put("read_only", e.readOnly());
            m.put("reads", s.reads());
            m.put("writes", s.writes());
            m.put("bytes_read", s.bytesRead());
            m.put("bytes_written", s.bytesWritten());
            m.put("errors", s.errors());
            m.put("no_space_errors", s.noSpaceErrors());
            rows.add(m);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("connections", server.connectionCount());
        m.put("max_connections", server.limits().maxConnections());
        m.put("refused_connections", server.refusedConnections());
        m.put("buffer_bytes", server.bufferBytes());
        m.put("health", server.problem() == null ? "ok" : server.problem());
        m.put("exports", rows);
        return m;
    }

    @Override
    public String problem() {
        String p = server.problem();
        return p == null ? null : "export not accepting clients: " + p;
    }

    @Override
    public void metrics(Metrics m) {
        for (NbdServer.Export e : exports) {
            DiskStats s = e.stats();
            m.counter("phost_nbd_reads", "NBD READ commands", s.reads(), "export", e.name());
            m.counter("phost_nbd_writes", "NBD WRITE commands", s.writes(), "export", e.name());
            m.counter("phost_nbd_read_bytes", "Bytes read over NBD", io.prometheus.metrics.model.snapshots.Unit.BYTES, s.bytesRead(), "export", e.name());
            m.counter("phost_nbd_written_bytes", "Bytes written over NBD", io.prometheus.metrics.model.snapshots.Unit.BYTES, s.bytesWritten(), "export", e.name());
        }
    }

    @Override
    public void close() throws IOException {
        server.close(); // ends connections and waits for in-flight requests; the disks close after us
    }
}
