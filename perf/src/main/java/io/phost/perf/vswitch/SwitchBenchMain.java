package io.phost.perf.vswitch;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Runs {@link SwitchBenchSuite} without the appliance CLI (until {@code phost bench switch} is wired):
 * {@code java -cp ... io.phost.perf.vswitch.SwitchBenchMain [--quick]}.
 */
public final class SwitchBenchMain {
    private SwitchBenchMain() {}

    public static void main(String[] args) throws Exception {
        boolean quick = args.length > 0 && args[0].equals("--quick");
        Path work = Files.createTempDirectory("phost-bench-switch");
        BenchContext ctx = BenchContext.of(quick, work, work, BenchContext.STDERR);
        long t0 = System.nanoTime();
        for (BenchResult r : new SwitchBenchSuite().run(ctx)) {
            System.out.printf("%-34s %10.3f %-7s peer %-22s %10.3f  ratio %.2f  %s%n", r.name(), r.value(), r.unit(),
                r.peer(), r.peerValue(), r.ratio(), r.series());
        }
        System.out.printf("suite took %.1f s%n", (System.nanoTime() - t0) / 1e9);
        Files.deleteIfExists(work);
    }
}
