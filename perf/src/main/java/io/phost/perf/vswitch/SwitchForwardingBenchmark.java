package io.phost.perf.vswitch;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * 64-byte L2 forwarding between two vNIC ports of one switch on one core: parse, VLAN classify, spoof check,
 * learn, look up, copy into the destination's receive buffer. Target >= 10 Mpps, zero allocation.
 * <pre>
 * ./mvnw -B -q -o -pl perf -am package -DskipTests -Dmaven.compiler.proc=full
 * java --add-exports java.base/jdk.internal.misc=ALL-UNNAMED -cp "perf/target/classes:$(cat cp.txt)" \
 *      org.openjdk.jmh.Main SwitchForwardingBenchmark -prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED", "-XX:+UseSerialGC"})
public class SwitchForwardingBenchmark {
    private static final int PAIRS = 64;
    private ForwardingRig rig;

    @Setup
    public void setUp() {
        rig = new ForwardingRig();
    }

    /** Score in frames per microsecond = Mpps. */
    @Benchmark
    @OperationsPerInvocation(2 * PAIRS)
    public long forward64ByteFrames() {
        rig.forward(PAIRS);
        return rig.delivered();
    }
}
