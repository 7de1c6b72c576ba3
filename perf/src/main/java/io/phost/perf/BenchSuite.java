package io.phost.perf;

import java.time.Duration;
import java.util.List;

/**
 * A benchmark suite behind {@code phost bench NAME}. Suites are found with {@link java.util.ServiceLoader}
 * (META-INF/services/io.phost.perf.BenchSuite). A suite measures ours and the named peer in the same run
 * and reports each as a {@link BenchResult} with the ratio (higher is better).
 */
public interface BenchSuite {
    /** The name users type: vhdx, vmbus, storage, qos, switch, image. */
    String name();

    /** One line for {@code phost bench --help}. */
    String description();

    /**
     * How long {@code --quick} takes on the reference machine (2 shared cores), said before the run starts.
     * A minute or less unless the suite overrides it; suites that cannot be that quick say so here.
     */
    default Duration quickDuration() {
        return Duration.ofMinutes(1);
    }

    /** Runs the suite; {@code quick} finishes within {@link #quickDuration()}. Reports progress through {@code ctx}. */
    List<BenchResult> run(BenchContext ctx) throws Exception;
}
