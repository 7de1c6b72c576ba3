package io.phost.appliance.run;

import io.phost.core.partition.Cgroup;
import io.phost.core.partition.ChildPartition;
import io.phost.qos.QosFlowSnapshot;
import io.phost.storage.DiskStats;
import java.io.IOException;
import java.nio.file.Files;
import io.prometheus.metrics.model.snapshots.Unit;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Resource metering per partition, as Hyper-V's Measure-VM: since the host started the meter (the partition's
 * first sample) or since its last reset. Always on and cheap: one sample a second on the storage sampler's
 * existing tick reads counters others already keep (the disks' {@link DiskStats}, the QoS flows' completed
 * normalized I/Os, the switch ports' byte counters) plus two or three cgroup files per partition; nothing is
 * added to the I/O path.
 * <pre>
 *   source                              reading                 meter
 *   cgroup cpu.stat usage_usec (v2) /   CPU microseconds         average % of one CPU since the base, peak %
 *     cpuacct.usage (v1) / process CPU                              over one tick
 *   cgroup memory.current (v2) /        bytes                    average, min, max of the samples
 *     memory.usage_in_bytes (v1) / VmRSS                          (max includes memory.peak until a reset)
 *   DiskStats per disk                  reads, writes, bytes     bytes read/written since the base
 *   QoS flow per disk                   normalized I/Os          normalized I/Os, average normalized IOPS
 *   switch port PARTITION/NIC           rx, tx bytes             bytes out (port rx), bytes in (port tx)
 * </pre>
 * Every source is a monotonic counter except when its owner restarts (a partition restart makes a new cgroup):
 * a {@link Counter} adds each increase and, when a reading falls, takes the new reading as the increase, so a
 * restart does not lose or subtract what was metered before it.
 */
final class Metering {
    private final PartitionsComponent partitions;
    private final StorageComponent storage;
    private final QosComponent qos;
    private final NetworkComponent network;
    private final Map<String, Meter> meters = new ConcurrentHashMap<>();

    Metering(PartitionsComponent partitions, StorageComponent storage, QosComponent qos, NetworkComponent network) {
        this.partitions = partitions;
        this.storage = storage;
        this.qos = qos;
        this.network = network;
    }

    /** A counter made monotonic across restarts of its source; {@link #total} is what accrued since the base. */
    static final class Counter {
        private long last; // every source starts at zero with its owner, and the meter at its owner's first tick
        private long total;
        private long lifetime;

        /** Takes a new reading; returns the increase it adds. */
        long update(long reading) {
            if (reading < 0) {
                return 0;
            }
            long inc = reading >= last ? reading - last : reading;
            last = reading;
            total += inc;
            lifetime += inc;
            return inc;
        }

        long total() {
            return total;
        }

        /** Since the meter began, whatever the resets (Prometheus counters never go down). */
        long lifetime() {
            return lifetime;
        }

        void reset() {
            total = 0;
        }
    }

    /** One partition's meter; guarded by its own monitor (the tick writes, requests read and reset). */
    static final class Meter {
        long sinceMillis = System.currentTimeMillis();
        long sinceNanos = System.nanoTime();
        long lastTickNanos = -1;
        boolean reset;
        final Counter cpuMicros = new Counter();
        double peakCpuPercent;
        long memSamples;
        double memSum;
        long memMin = Long.MAX_VALUE;
        long memMax;
        long memNow;
        final Map<String, Counter[]> disks = new LinkedHashMap<>(); // reads, writes, bytesRead, bytesWritten, normalized
        final Map<String, Counter[]> nics = new LinkedHashMap<>(); // bytes in, bytes out

        synchronized void reset() {
            sinceMillis = System.currentTimeMillis();
            sinceNanos = System.nanoTime();
            reset = true;
            cpuMicros.reset();
            peakCpuPercent = 0;
            memSamples = 0;
            memSum = 0;
            memMin = Long.MAX_VALUE;
            memMax = 0;
            disks.values().forEach(cs -> List.of(cs).forEach(Counter::reset));
            nics.values().forEach(cs -> List.of(cs).forEach(Counter::reset));
        }
    }

    /** The tick: one sample of every partition. */
    void sample() {
        List<QosFlowSnapshot> flows = qos.service().flows();
        for (ChildPartition p : partitions.partitions()) {
            sample(meters.computeIfAbsent(p.name(), n -> new Meter()), p, flows);
        }
    }

    private void sample(Meter m, ChildPartition p, List<QosFlowSnapshot> flows) {
        long pid = p.status().pid();
        Cgroup cg = p.cgroup();
        long cpu = cg == null ? -1 : cg.cpuUsageMicros();
        if (cpu < 0 && pid > 0) { // no cgroup accounting: the process's own CPU time (its children not counted)
            cpu = ProcessHandle.of(pid).flatMap(h -> h.info().totalCpuDuration()).map(d -> d.toNanos() / 1000).orElse(-1L);
        }
        long mem = cg == null ? -1 : cg.memoryCurrent();
        if (mem < 0 && pid > 0) {
            mem = rss(pid);
        }
        long kernelPeak = cg == null ? -1 : cg.memoryPeak();
        Map<String, DiskStats> stats = storage.diskStats(p.name());
        Map<String, long[]> ports = network.portBytes(p.name());
        long now = System.nanoTime();
        synchronized (m) {
            long inc = m.cpuMicros.update(cpu);
            if (m.lastTickNanos > 0 && now > m.lastTickNanos) {
                double tickMicros = (now - m.lastTickNanos) / 1e3;
                m.peakCpuPercent = Math.max(m.peakCpuPercent, inc * 100.0 / tickMicros);
            }
            m.lastTickNanos = now;
            m.memNow = pid > 0 ? Math.max(0, mem) : 0;
            if (mem > 0 && pid > 0) {
                m.memSamples++;
                m.memSum += mem;
                m.memMin = Math.min(m.memMin, mem);
                m.memMax = Math.max(m.memMax, mem);
                if (!m.reset && kernelPeak > m.memMax) {
                    m.memMax = kernelPeak;
                }
            }
            stats.forEach((disk, s) -> {
                Counter[] c = m.disks.computeIfAbsent(disk, d -> counters(5));
                c[0].update(s.reads());
                c[1].update(s.writes());
                c[2].update(s.bytesRead());
                c[3].update(s.bytesWritten());
            });
            for (QosFlowSnapshot f : flows) {
                if (f.partition().equals(p.name())) {
                    m.disks.computeIfAbsent(f.disk(), d -> counters(5))[4].update(f.completedNormalizedIos());
                }
            }
            ports.forEach((nic, rxTx) -> {
                Counter[] c = m.nics.computeIfAbsent(nic, n -> counters(2));
                c[0].update(rxTx[1]); // the port's tx: delivered to the partition
                c[1].update(rxTx[0]); // the port's rx: sent by the partition
            });
        }
    }

    private static Counter[] counters(int n) {
        Counter[] c = new Counter[n];
        for (int i = 0; i < n; i++) {
            c[i] = new Counter();
        }
        return c;
    }

    /** Resident memory of a process without a memory cgroup, from /proc/PID/status; -1 when unknown. */
    private static long rss(long pid) {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (l.startsWith("VmRSS:")) {
                    return Long.parseLong(l.substring(6).replace("kB", "").trim()) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    /** Starts a new metering period for {@code name} (its meters to zero). */
    void reset(String name) {
        meters.computeIfAbsent(name, n -> new Meter()).reset();
    }

    /** The report for {@code name}, the shape of GET /v1/partitions/measure. */
    Map<String, Object> report(String name) {
        Meter m = meters.computeIfAbsent(name, n -> new Meter());
        Map<String, Object> r = new LinkedHashMap<>();
        synchronized (m) {
            double seconds = Math.max(1e-3, (System.nanoTime() - m.sinceNanos) / 1e9);
            r.put("partition", name);
            r.put("since", Instant.ofEpochMilli(m.sinceMillis).toString());
            r.put("duration_seconds", Math.round(seconds * 10) / 10.0);
            r.put("cpu_seconds", m.cpuMicros.total() / 1e6);
            r.put("average_cpu_percent", round2(m.cpuMicros.total() / 1e4 / seconds));
            r.put("peak_cpu_percent", round2(m.peakCpuPercent));
            r.put("average_memory_bytes", m.memSamples == 0 ? 0 : Math.round(m.memSum / m.memSamples));
            r.put("peak_memory_bytes", m.memMax);
            r.put("minimum_memory_bytes", m.memSamples == 0 ? 0 : m.memMin);
            List<Object> disks = new ArrayList<>();
            m.disks.forEach((disk, c) -> {
                Map<String, Object> d = new LinkedHashMap<>();
                d.put("disk", disk);
                d.put("reads", c[0].total());
                d.put("writes", c[1].total());
                d.put("read_bytes", c[2].total());
                d.put("write_bytes", c[3].total());
                d.put("normalized_ios", c[4].total());
                d.put("average_normalized_iops", round2(c[4].total() / seconds));
                disks.add(d);
            });
            r.put("disks", disks);
            List<Object> nics = new ArrayList<>();
            m.nics.forEach((nic, c) -> {
                Map<String, Object> n = new LinkedHashMap<>();
                int slash = nic.indexOf('/');
                n.put("switch", nic.substring(0, slash));
                n.put("nic", nic.substring(slash + 1));
                n.put("bytes_in", c[0].total());
                n.put("bytes_out", c[1].total());
                nics.add(n);
            });
            r.put("nics", nics);
            Map<String, long[]> bySwitch = new TreeMap<>(); // the partition's traffic per switch
            m.nics.forEach((nic, c) -> {
                long[] t = bySwitch.computeIfAbsent(nic.substring(0, nic.indexOf('/')), k -> new long[2]);
                t[0] += c[0].total();
                t[1] += c[1].total();
            });
            List<Object> switches = new ArrayList<>();
            bySwitch.forEach((sw, t) -> {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("switch", sw);
                x.put("bytes_in", t[0]);
                x.put("bytes_out", t[1]);
                switches.add(x);
            });
            r.put("switches", switches);
        }
        return r;
    }

    /** Counters /metrics does not have elsewhere (disk and port bytes are exported by storage and the switches). */
    void metrics(Metrics out) {
        meters.forEach((name, m) -> {
            double cpu;
            long mem;
            synchronized (m) {
                cpu = m.cpuMicros.lifetime() / 1e6;
                mem = m.memNow;
            }
            out.counter("phost_partition_cpu_seconds", "CPU time the partition's processes used (cgroup accounting)",
                Unit.SECONDS, cpu, "partition", name);
            out.gauge("phost_partition_memory_bytes", "Memory charged to the partition's cgroup at the last metering tick",
                Unit.BYTES, mem, "partition", name);
        });
    }

    private static double round2(double v) {
        return Math.round(v * 100) / 100.0;
    }
}
