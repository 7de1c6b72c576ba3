package io.phost.perf.storage;

import io.phost.storage.ChangeTracker;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The absolute cost change tracking adds to one 4 KiB write in steady state ({@link ChangeTracker#mark} on a
 * block whose bit is set), against a baseline that only computes the same random offset: a number that,
 * unlike {@link ChangeTrackingBenchmark}'s ratio, survives a loaded machine.
 * {@code phost bench jmh ChangeTrackerMarkBenchmark}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class ChangeTrackerMarkBenchmark {
    private static final long SIZE = 64L << 20;
    private ChangeTracker tracker;
    private Path dir;
    private long seed = 42;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        dir = Files.createTempDirectory("rct-mark");
        tracker = ChangeTracker.open(dir.resolve("d.rct"), SIZE);
        tracker.mark(0, SIZE); // steady state: every bit set
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        tracker.close();
        Files.deleteIfExists(tracker.path());
        Files.deleteIfExists(dir);
    }

    private long nextOffset() {
        seed = seed * 6364136223846793005L + 1442695040888963407L;
        return ((seed >>> 20) & (SIZE / 4096 - 1)) << 12;
    }

    @Benchmark
    public long baseline() {
        return nextOffset();
    }

    @Benchmark
    public long mark4kAlreadySet() {
        long off = nextOffset();
        tracker.mark(off, 4096);
        return off;
    }
}
