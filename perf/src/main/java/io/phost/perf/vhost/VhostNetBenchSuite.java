package io.phost.perf.vhost;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * {@code phost bench vhost-net}: only the vhost-user-net point of {@code phost bench vhost} (64-byte frames
 * between two vhost-user ports through phost's switch vs dpdk-testpmd, {@link VhostNetPoint}), 3 interleaved
 * rounds, so the net data path can be measured (and profiled, see {@link #main}) without the disk points.
 */
public final class VhostNetBenchSuite implements BenchSuite {
    private static final int ROUNDS = 3;

    @Override
    public String name() {
        return "vhost-net";
    }

    @Override
    public String description() {
        return "Only the vhost-user-net point of 'vhost': 64-byte frames between two vhost-user ports through the switch vs dpdk-testpmd.";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        ctx.progress(0, 1, "64B-frames vhost-user-net");
        BenchResult r = VhostNetPoint.run(ctx, ROUNDS, ctx.quick() ? 0.5 : 2.0);
        ctx.progress(1, 1, "done");
        return List.of(r);
    }

    /**
     * Runs the point without the appliance, e.g. under a profiler started with the JVM:
     * {@code java -agentpath:.../libasyncProfiler.so=start,event=itimer,file=out.html -cp ... io.phost.perf.vhost.VhostNetBenchSuite [--quick] [--phost-only SECONDS] [--idle SECONDS]}.
     * {@code --phost-only} runs only phost's side for that long (no peer, nothing else in the profile);
     * {@code --idle} measures what two connected VMs that send nothing cost (fraction of a core).
     */
    public static void main(String[] args) throws Exception {
        List<String> a = List.of(args);
        Path work = Files.createTempDirectory("vhost-net-bench");
        BenchContext ctx = BenchContext.of(a.contains("--quick"), work, work, BenchContext.STDERR);
        try {
            int idle = a.indexOf("--idle");
            if (idle >= 0) {
                double[] f = VhostNetPoint.idleCoreFraction(ctx, Double.parseDouble(a.get(idle + 1)));
                System.out.printf(Locale.ROOT, "idle: two connected vhost-user-net VMs, no traffic: %.3f%% of a core (whole JVM), %.3f%% (phost's threads)%n",
                    100 * f[0], 100 * f[1]);
                return;
            }
            int only = a.indexOf("--phost-only");
            if (only >= 0) {
                double seconds = Double.parseDouble(a.get(only + 1));
                VhostNetPoint.ours(ctx, 3, -1); // untimed: lets the JIT compile the data path, as the suite does
                VhostNetPoint.Round r = VhostNetPoint.ours(ctx, seconds, 0);
                System.out.printf(Locale.ROOT, "phost %.0f frames/s, %.0f CPU ns/frame (process), %.0f (phost's threads), %.2f B/frame, %.1f frames/tx burst%n",
                    r.pps(), r.cpuNsPerFrame(), r.threadCpuNsPerFrame(), r.allocBytesPerFrame(), r.framesPerTxBurst());
                return;
            }
            for (BenchResult r : new VhostNetBenchSuite().run(ctx)) {
                System.out.printf(Locale.ROOT, "%s: %.0f %s vs %.0f (%.3fx) %s%n", r.name(), r.value(), r.unit(), r.peerValue(), r.ratio(), r.series());
            }
        } finally {
            try (var s = Files.walk(work)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }
}
