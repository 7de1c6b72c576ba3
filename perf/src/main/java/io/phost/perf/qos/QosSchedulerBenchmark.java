package io.phost.perf.qos;

import io.phost.qos.ManagedQosFlow;
import io.phost.qos.ManualNanoClock;
import io.phost.qos.QosConfig;
import io.phost.qos.QosPolicy;
import io.phost.qos.QosService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of one scheduler decision: {@code tryAdmit} + {@code completed} for one I/O, on the admitted path
 * (the common case) and on the throttled path. Time is synthetic (1 us per I/O) so the number is the
 * scheduler alone, controller runs amortized in; run with {@code -prof gc} to confirm zero allocation.
 *
 * <pre>
 *   ./mvnw -q -o -pl perf -am -DskipTests package
 *   java -cp "$(cat perf/target/cp.txt):perf/target/classes" org.openjdk.jmh.Main QosSchedulerBenchmark -prof gc
 * </pre>
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-XX:+UseSerialGC"})
@State(Scope.Benchmark)
public class QosSchedulerBenchmark {
    private QosService qos;
    private ManagedQosFlow unconstrained;
    private ManagedQosFlow dedicated;
    private ManagedQosFlow aggregated;
    private ManagedQosFlow throttled;
    private final AtomicLong sharedTime = new AtomicLong(1_000_000_000L);

    @State(Scope.Thread)
    public static class ThreadTime {
        long now = 1_000_000_000L;
    }

    @Setup
    public void setup() {
        qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 64), new ManualNanoClock(1_000_000_000L));
        // Limits far above 1 I/O per us so the admitted path is measured; every tag is live.
        qos.updatePolicy(new QosPolicy("dedicated", QosPolicy.Type.DEDICATED, 1000, 4_000_000, 64L << 30, 0, 100));
        qos.updatePolicy(new QosPolicy("aggregated", QosPolicy.Type.AGGREGATED, 1000, 8_000_000, 0, 0, 100));
        qos.updatePolicy(QosPolicy.dedicated("throttled", 0, 100));
        unconstrained = qos.createFlow("vm0", "d0", null);
        dedicated = qos.createFlow("vm1", "d1", "dedicated");
        aggregated = qos.createFlow("vm2", "d2", "aggregated");
        throttled = qos.createFlow("vm3", "d3", "throttled");
    }

    @Benchmark
    public long admitUnconstrained(ThreadTime t) {
        long now = t.now += 1_000;
        long w = unconstrained.tryAdmit(4096, now);
        unconstrained.completed(4096, 1_000, now);
        return w;
    }

    @Benchmark
    public long admitDedicatedMinMaxBandwidth(ThreadTime t) {
        long now = t.now += 1_000;
        long w = dedicated.tryAdmit(4096, now);
        if (w == 0) {
            dedicated.completed(4096, 1_000, now);
        }
        return w;
    }

    @Benchmark
    public long throttledDecision(ThreadTime t) {
        // Same instant every time after the first: the limit tag says "wait".
        return throttled.tryAdmit(4096, t.now);
    }

    /** Two threads on one aggregated flow with a shared clock: the contended CAS path. */
    @Benchmark
    @Threads(2)
    public long admitAggregatedTwoThreads() {
        long now = sharedTime.addAndGet(500);
        long w = aggregated.tryAdmit(4096, now);
        if (w == 0) {
            aggregated.completed(4096, 1_000, now);
        }
        return w;
    }
}
