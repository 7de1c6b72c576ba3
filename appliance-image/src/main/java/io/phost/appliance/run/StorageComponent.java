package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.DiskAttachment;
import io.phost.appliance.config.DiskConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.storage.DiskStats;
import io.phost.storage.StorageVsp;
import io.phost.storage.engine.IoEngines;
import io.prometheus.metrics.model.snapshots.Unit;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The storage VSPs: for each partition, one virtual SCSI controller ({@link StorageVsp}) per configured
 * controller number, with each attached disk at its LUN behind its own QoS flow. A sampler turns the
 * disks' counters into per-second rates for /status, /metrics and the live view.
 */
public final class StorageComponent implements Component, PartitionsComponent.VspSource {
    private final ApplianceConfig cfg;
    private final DisksComponent disks;
    private final QosComponent qos;
    private final java.util.function.Function<String, io.phost.storage.scsi.ScsiLun> sharedLun;
    /** partition -> controller -> VSP. */
    private final Map<String, Map<Integer, StorageVsp>> vsps = new ConcurrentHashMap<>();
    private final Map<String, Rates> rates = new ConcurrentHashMap<>();
    /** partition/controller/lun -> the config's disk name (the VSP's own disk names are prefixed by the partition). */
    private final Map<String, String> diskNames = new ConcurrentHashMap<>();
    /** partition/disk → the LUN serving it (checkpoints switch its disk). */
    private final Map<String, io.phost.storage.scsi.ScsiLun> luns = new ConcurrentHashMap<>();
    /** partition → its disks' QoS flows (closed when a live config change removes the partition). */
    private final Map<String, List<io.phost.qos.ManagedQosFlow>> flows = new ConcurrentHashMap<>();
    private final List<Runnable> tickListeners = new java.util.concurrent.CopyOnWriteArrayList<>();
    private final ScheduledExecutorService sampler = Executors.newSingleThreadScheduledExecutor(r ->
        Thread.ofPlatform().daemon().name("storage-stats").unstarted(r));

    /** Operations and bytes per second over the last sampling second. */
    private record Rates(double readIops, double writeIops, double readBytes, double writeBytes, long reads, long writes,
                         long bytesRead, long bytesWritten, long atNanos) {
    }

    public StorageComponent(ApplianceConfig cfg, DisksComponent disks, QosComponent qos) {
        this(cfg, disks, qos, disk -> null);
    }

    /** @param sharedLun disk → the LUN its NBD export made for the partition serving it (see {@link NbdComponent}), or null */
    public StorageComponent(ApplianceConfig cfg, DisksComponent disks, QosComponent qos,
                            java.util.function.Function<String, io.phost.storage.scsi.ScsiLun> sharedLun) {
        this.sharedLun = sharedLun;
        this.cfg = cfg;
        this.disks = disks;
        this.qos = qos;
        sampler.scheduleAtFixedRate(this::sample, 1, 1, TimeUnit.SECONDS);
    }

    @Override
    public List<VirtualServiceProvider> vspsFor(PartitionConfig p) throws IOException {
        Map<Integer, StorageVsp> controllers = new TreeMap<>();
        for (DiskAttachment a : p.disks()) {
            DiskConfig d = disks.get(a.disk()).config(); // the open disk's config: a live apply may have added it
            StorageVsp vsp = controllers.computeIfAbsent(a.controller(),
                c -> new StorageVsp(p.name(), Math.max(0, Math.min(p.vcpus(), 8) - 1)));
            io.phost.storage.scsi.ScsiLun shared = sharedLun.apply(d.name());
            if (shared != null) { // exported over NBD too: the export's LUN is this partition's (flow included)
                luns.put(p.name() + "/" + d.name(), vsp.attach(a.lun(), shared));
            } else {
                var flow = qos.service().createFlow(p.name(), d.name(), d.qosPolicy(), deviceOf(disks.get(d.name()).path()));
                flows.computeIfAbsent(p.name(), k -> new java.util.concurrent.CopyOnWriteArrayList<>()).add(flow);
                luns.put(p.name() + "/" + d.name(),
                    vsp.attach(a.lun(), d.name(), disks.get(d.name()).disk(), flow, d.readOnly(), d.ioEngine()));
            }
            diskNames.put(p.name() + "/" + a.controller() + "/" + a.lun(), d.name());
        }
        vsps.put(p.name(), controllers);
        return List.copyOf(controllers.values());
    }

    /**
     * Hot-adds disk {@code a} to a built process partition as a LUN of its controller, behind a new QoS flow; the guest
     * hears REPORTED LUNS DATA HAS CHANGED on its next command and a storvsc bus rescan. False when the partition has
     * no storage built (it gets the disk when it is built).
     */
    boolean hotAdd(String partition, DiskAttachment a) {
        Map<Integer, StorageVsp> controllers = vsps.get(partition);
        if (controllers == null) {
            return false;
        }
        StorageVsp vsp = controllers.get(a.controller());
        if (vsp == null) {
            throw new IllegalStateException("partition '" + partition + "' has no controller " + a.controller());
        }
        DisksComponent.OpenDisk open = disks.get(a.disk());
        DiskConfig d = open.config();
        var flow = qos.service().createFlow(partition, d.name(), d.qosPolicy(), deviceOf(open.path()));
        try {
            luns.put(partition + "/" + d.name(), vsp.attach(a.lun(), d.name(), open.disk(), flow, d.readOnly(), d.ioEngine()));
        } catch (RuntimeException e) {
            flow.close();
            throw e;
        }
        flows.computeIfAbsent(partition, k -> new java.util.concurrent.CopyOnWriteArrayList<>()).add(flow);
        diskNames.put(partition + "/" + a.controller() + "/" + a.lun(), d.name());
        return true;
    }

    /**
     * Hot-removes disk {@code a} from a built process partition: new commands to its LUN fail at once, in-flight ones
     * finish (up to 10 s), its QoS flow closes. The disk stays open (a live apply closes it if no table names it).
     */
    void hotRemove(String partition, DiskAttachment a) {
        Map<Integer, StorageVsp> controllers = vsps.get(partition);
        StorageVsp vsp = controllers == null ? null : controllers.get(a.controller());
        if (vsp == null) {
            return;
        }
        try {
            vsp.detach(a.lun(), 10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while LUN " + a.lun() + " drained", e);
        }
        luns.remove(partition + "/" + a.disk());
        diskNames.remove(partition + "/" + a.controller() + "/" + a.lun());
        List<io.phost.qos.ManagedQosFlow> own = flows.getOrDefault(partition, List.of());
        for (io.phost.qos.ManagedQosFlow f : own) {
            if (f.disk().equals(a.disk())) {
                own.remove(f);
                f.close();
            }
        }
    }

    DisksComponent disks() {
        return disks;
    }

    /** Forgets a partition a live config change removed (after it stopped): its controllers, LUNs and QoS flows. */
    void forget(String partition) {
        vsps.remove(partition);
        String prefix = partition + "/";
        luns.keySet().removeIf(k -> k.startsWith(prefix));
        diskNames.keySet().removeIf(k -> k.startsWith(prefix));
        rates.keySet().removeIf(k -> k.startsWith(prefix));
        List<io.phost.qos.ManagedQosFlow> gone = flows.remove(partition);
        if (gone != null) {
            gone.forEach(io.phost.qos.ManagedQosFlow::close);
        }
    }

    /** The LUN serving {@code disk} to process partition {@code partition}, or null. */
    public io.phost.storage.scsi.ScsiLun lun(String partition, String disk) {
        io.phost.storage.scsi.ScsiLun lun = luns.get(partition + "/" + disk);
        if (lun == null) { // not built yet: a disk exported over NBD has its LUN already
            io.phost.storage.scsi.ScsiLun shared = sharedLun.apply(disk);
            lun = shared != null && shared.name().equals(io.phost.storage.StorageVsp.lunName(partition, disk)) ? shared : null;
        }
        return lun;
    }

    /** Flows on one file system share its capacity estimate: the device id is the file store's name. */
    static String deviceOf(Path path) {
        try {
            return Files.getFileStore(path).name();
        } catch (IOException e) {
            return path.toString();
        }
    }

    /** Runs {@code r} after each one-second sample, on the sampler thread (metering rides on this tick). */
    void onTick(Runnable r) {
        tickListeners.add(r);
    }

    /** Each disk of a process partition (by its config name) with its counters; reading them costs no syscall. */
    Map<String, DiskStats> diskStats(String partition) {
        Map<String, DiskStats> m = new LinkedHashMap<>();
        Map<Integer, StorageVsp> controllers = vsps.get(partition);
        if (controllers != null) {
            controllers.forEach((controller, vsp) -> {
                for (StorageVsp.DiskInfo d : vsp.disks()) {
                    m.put(diskNames.getOrDefault(partition + "/" + controller + "/" + d.lun(), d.name()), d.stats());
                }
            });
        }
        return m;
    }

    private void sample() {
        try {
            sampleRates();
        } finally {
            for (Runnable r : tickListeners) {
                try {
                    r.run();
                } catch (RuntimeException e) { // a listener's failure must not end the periodic task
                    System.getLogger("phost.storage").log(System.Logger.Level.WARNING, "tick listener failed: " + e);
                }
            }
        }
    }

    private void sampleRates() {
        long now = System.nanoTime();
        vsps.forEach((partition, controllers) -> controllers.forEach((controller, vsp) -> {
            for (StorageVsp.DiskInfo d : vsp.disks()) {
                String key = partition + "/" + controller + "/" + d.lun();
                DiskStats s = d.stats();
                Rates prev = rates.get(key);
                double dt = prev == null ? 1 : Math.max(1e-3, (now - prev.atNanos()) / 1e9);
                rates.put(key, new Rates(
                    prev == null ? 0 : (s.reads() - prev.reads()) / dt, prev == null ? 0 : (s.writes() - prev.writes()) / dt,
                    prev == null ? 0 : (s.bytesRead() - prev.bytesRead()) / dt, prev == null ? 0 : (s.bytesWritten() - prev.bytesWritten()) / dt,
                    s.reads(), s.writes(), s.bytesRead(), s.bytesWritten(), now));
            }
        }));
    }

    @Override
    public String name() {
        return "storage";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        vsps.forEach((partition, controllers) -> controllers.forEach((controller, vsp) -> {
            for (StorageVsp.DiskInfo d : vsp.disks()) {
                Rates r = rates.get(partition + "/" + controller + "/" + d.lun());
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("partition", partition);
                m.put("disk", diskNames.getOrDefault(partition + "/" + controller + "/" + d.lun(), d.name()));
                m.put("controller", controller);
                m.put("lun", d.lun());
                m.put("format", d.format());
                m.put("read_iops", r == null ? 0.0 : Math.round(r.readIops()));
                m.put("write_iops", r == null ? 0.0 : Math.round(r.writeIops()));
                m.put("read_mib_s", r == null ? 0.0 : Math.round(r.readBytes() / 1048576.0 * 10) / 10.0);
                m.put("write_mib_s", r == null ? 0.0 : Math.round(r.writeBytes() / 1048576.0 * 10) / 10.0);
                m.put("p99_us", p99Micros(d.stats()));
                m.put("errors", d.stats().errors());
                m.put("no_space_errors", d.stats().noSpaceErrors());
                m.put("channels", vsp.openChannels());
                rows.add(m);
            }
        }));
        return rows;
    }

    /**
     * p99 completion latency in microseconds (bucket upper bound). {@link DiskStats#latencyPercentileMicros}
     * takes percent: passing 0.99 reported the 0.99th percentile, so /status showed ~8 us beside QoS's ms.
     */
    static long p99Micros(DiskStats s) {
        return s.latencyPercentileMicros(99);
    }

    /** Upper bounds of {@link DiskStats}' latency buckets in seconds: bucket i ends at 2^i microseconds; the last is +Inf. */
    static final double[] LATENCY_BOUNDS_SECONDS = latencyBounds();

    private static double[] latencyBounds() {
        double[] b = new double[DiskStats.BUCKETS];
        for (int i = 0; i < b.length - 1; i++) {
            b[i] = (1L << i) / 1e6;
        }
        b[b.length - 1] = Double.POSITIVE_INFINITY;
        return b;
    }

    @Override
    public void metrics(Metrics m) {
        long[] counts = new long[DiskStats.BUCKETS];
        vsps.forEach((partition, controllers) -> controllers.forEach((controller, vsp) -> {
            for (StorageVsp.DiskInfo d : vsp.disks()) {
                String disk = diskNames.getOrDefault(partition + "/" + controller + "/" + d.lun(), d.name());
                String[] l = {"partition", partition, "disk", disk};
                DiskStats s = d.stats();
                m.counter("phost_storage_reads", "SCSI reads completed", s.reads(), l);
                m.counter("phost_storage_writes", "SCSI writes completed", s.writes(), l);
                m.counter("phost_storage_read_bytes", "Bytes read by guests", Unit.BYTES, s.bytesRead(), l);
                m.counter("phost_storage_written_bytes", "Bytes written by guests", Unit.BYTES, s.bytesWritten(), l);
                m.counter("phost_storage_flushes", "SYNCHRONIZE CACHE commands completed", s.flushes(), l);
                m.counter("phost_storage_errors", "Commands answered with an error", s.errors(), l);
                for (int i = 0; i < counts.length; i++) {
                    counts[i] = s.latencyBucket(i);
                }
                m.histogram("phost_storage_latency_seconds", "Completion latency of reads, writes, flushes and unmaps",
                    Unit.SECONDS, LATENCY_BOUNDS_SECONDS, counts, s.latencyNanosTotal() / 1e9, l);
            }
        }));
    }

    @Override
    public void close() {
        sampler.shutdownNow();
    }
}
