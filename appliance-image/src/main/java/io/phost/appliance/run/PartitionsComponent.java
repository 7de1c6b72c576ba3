package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.util.Records;
import io.phost.core.partition.GuestLauncher;
import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.partition.PartitionStatus;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * The child partitions: one {@link PartitionHost} accepting attaches on {@code DATA_DIR/partitions/vmbus.sock},
 * one {@link Partition} per {@code [[partition]]}, each offered the VSPs its config asks for (storage,
 * network), started when {@code autostart}. Stop is graceful (shutdown service) then forced, all
 * partitions in parallel so SIGTERM completes within the appliance's 5 s promise.
 */
public final class PartitionsComponent implements Component {
    private static final List<String> PARTITION_STATES =
        java.util.Arrays.stream(io.phost.core.partition.PartitionState.values()).map(Enum::name).toList();

    private static final Logger LOG = System.getLogger("phost.partitions");
    /** Graceful-stop budget per partition; partitions stop in parallel. */
    static final Duration STOP_GRACE = Duration.ofMillis(2500);

    /** Provides the VSPs a partition is offered (storage LUNs, NICs). */
    public interface VspSource {
        List<VirtualServiceProvider> vspsFor(PartitionConfig partition) throws IOException;
    }

    private final PartitionHost host;

    private PartitionsComponent(PartitionHost host) {
        this.host = host;
    }

    public static PartitionsComponent start(ApplianceConfig cfg, List<VspSource> sources) throws IOException {
        Path dir = cfg.host().dataDir().resolve("partitions");
        PartitionHost host = new PartitionHost(dir, launcher(cfg),
            PartitionHost.Options.defaults().withAgentCpus(cfg.host().vspCpus()));
        PartitionsComponent c = new PartitionsComponent(host);
        try {
            for (PartitionConfig p : cfg.partitions()) {
                PartitionSpec spec = new PartitionSpec(p.name(), p.vcpus(), p.memory(),
                    p.command(), p.command() == null ? p.workload().kind() : null);
                Partition partition = host.create(spec);
                for (VspSource s : sources) {
                    for (VirtualServiceProvider vsp : s.vspsFor(p)) {
                        partition.offer(vsp);
                    }
                }
                if (p.autostart()) {
                    partition.start();
                    LOG.log(Level.INFO, "started partition=" + p.name() + " pid=" + partition.status().pid());
                }
            }
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    /** Built-in workloads run as {@code phost guest KIND ARGS...} on this JVM's runtime and class path. */
    static GuestLauncher launcher(ApplianceConfig cfg) {
        return spec -> {
            PartitionConfig p = cfg.partition(spec.name()).orElseThrow();
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(GuestLauncher.inheritedJvmFlags());
            // A guest workload is small: keep its heap small so a dozen partitions fit beside the host.
            cmd.add("-Xmx" + Math.max(32, Math.min(256, p.memory() >> 21)) + "m");
            cmd.add("-XX:TieredStopAtLevel=1");
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add("io.phost.appliance.Main");
            cmd.add("guest");
            cmd.add(p.workload().kind());
            cmd.addAll(p.workload().args());
            return cmd;
        };
    }

    public PartitionHost host() {
        return host;
    }

    @Override
    public String name() {
        return "partitions";
    }

    @Override
    public Object status() {
        return Records.toJsonable(host.status());
    }

    @Override
    public void metrics(Metrics m) {
        for (PartitionStatus s : host.status()) {
            m.state("phost_partition_state", "Lifecycle state of the partition", PARTITION_STATES, s.state().name(),
                "partition", s.name());
            m.counter("phost_partition_faults", "Guest faults recorded for the partition", s.faultCount(), "partition", s.name());
            m.gauge("phost_partition_channels", "Open VMBus channels of the partition", s.channels(), "partition", s.name());
        }
    }

    @Override
    public Map<String, java.util.function.Function<String, io.phost.appliance.mgmt.HttpResponse>> routes() {
        return Map.of("GET /v1/partitions", q -> io.phost.appliance.mgmt.HttpResponse.json(io.phost.appliance.util.Json.pretty(status())));
    }

    @Override
    public void close() {
        List<CompletableFuture<Void>> stops = new ArrayList<>();
        for (Partition p : host.partitions()) {
            stops.add(CompletableFuture.runAsync(() -> p.stop(STOP_GRACE), r -> Thread.ofVirtual().start(r)));
        }
        CompletableFuture.allOf(stops.toArray(CompletableFuture[]::new)).join();
        host.close();
    }
}
