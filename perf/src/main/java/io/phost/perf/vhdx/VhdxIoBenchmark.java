package io.phost.perf.vhdx;

import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * 4 KiB random read/write and 1 MiB sequential read/write through an allocated dynamic VHDX
 * ({@link VhdxDisk}, FFM pread/pwrite) vs the same I/O on a raw file through {@link FileChannel} with a
 * direct buffer, in the same run. Both files live in {@code dir} (default /dev/shm = tmpfs; pass
 * {@code -p dir=/var/tmp} for a disk); the data is in the page cache, so this measures the engine's
 * per-I/O overhead, not the device. Ratio = vhdx score / raw score (throughput, higher is better).
 * <pre>
 * ./mvnw -B -q -o -pl perf -am package -DskipTests -Dmaven.compiler.proc=full
 * ./mvnw -B -q -o -pl perf dependency:build-classpath -Dmdep.outputFile=cp.txt
 * java --enable-native-access=ALL-UNNAMED -cp "perf/target/classes:vhdx-engine/target/classes:$(cat perf/cp.txt)" \
 *      org.openjdk.jmh.Main VhdxIoBenchmark -prof gc
 * </pre>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC"})
public class VhdxIoBenchmark {
    static final long SIZE = 256L << 20;
    static final int SMALL = 4096;
    static final int LARGE = 1 << 20;

    @Param({"/dev/shm"})
    public String dir;

    private Path work;
    private VhdxDisk vhdx;
    private FileChannel raw;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        work = Files.createTempDirectory(Path.of(dir), "vhdx-bench");
        vhdx = VhdxDisk.create(work.resolve("bench.vhdx"), VhdxCreateOptions.dynamic(SIZE).withBlockSize(32 << 20));
        raw = FileChannel.open(work.resolve("bench.raw"), StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
            StandardOpenOption.WRITE);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fill = arena.allocate(LARGE, 4096);
            fill.fill((byte) 0x5a);
            ByteBuffer bb = fill.asByteBuffer();
            for (long off = 0; off < SIZE; off += LARGE) {
                vhdx.write(off, fill); // allocates every block: the steady path is measured below
                bb.clear();
                while (bb.hasRemaining()) {
                    raw.write(bb, off + bb.position());
                }
            }
        }
        vhdx.flush();
        raw.force(false);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        vhdx.close();
        raw.close();
        try (var files = Files.list(work)) {
            for (Path f : files.toList()) {
                Files.delete(f);
            }
        }
        Files.delete(work);
    }

    /** Per-thread buffers and offsets: nothing is allocated inside a benchmark method. */
    @State(Scope.Thread)
    public static class Buffers {
        final Arena arena = Arena.ofShared();
        final MemorySegment small = arena.allocate(SMALL, 4096);
        final MemorySegment large = arena.allocate(LARGE, 4096);
        final ByteBuffer smallBuf = small.asByteBuffer();
        final ByteBuffer largeBuf = large.asByteBuffer();
        final long[] offsets = new long[1 << 16];
        int next;
        long seq;

        @Setup(Level.Trial)
        public void setUp() {
            SplittableRandom r = new SplittableRandom(1);
            for (int i = 0; i < offsets.length; i++) {
                offsets[i] = r.nextLong(SIZE / SMALL) * SMALL;
            }
            small.fill((byte) 1);
            large.fill((byte) 2);
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            arena.close();
        }

        long randomOffset() {
            return offsets[next++ & (offsets.length - 1)];
        }

        long sequentialOffset() {
            long o = seq;
            seq = (seq + LARGE) % SIZE;
            return o;
        }
    }

    private static void rawRead(FileChannel ch, ByteBuffer b, long off) throws IOException {
        b.clear();
        while (b.hasRemaining()) {
            if (ch.read(b, off + b.position()) < 0) {
                throw new IOException("EOF");
            }
        }
    }

    private static void rawWrite(FileChannel ch, ByteBuffer b, long off) throws IOException {
        b.clear();
        while (b.hasRemaining()) {
            ch.write(b, off + b.position());
        }
    }

    @Benchmark
    public void vhdxRandomRead4k(Buffers b) throws IOException {
        vhdx.read(b.randomOffset(), b.small);
    }

    @Benchmark
    public void rawRandomRead4k(Buffers b) throws IOException {
        rawRead(raw, b.smallBuf, b.randomOffset());
    }

    @Benchmark
    public void vhdxRandomWrite4k(Buffers b) throws IOException {
        vhdx.write(b.randomOffset(), b.small);
    }

    @Benchmark
    public void rawRandomWrite4k(Buffers b) throws IOException {
        rawWrite(raw, b.smallBuf, b.randomOffset());
    }

    @Benchmark
    public void vhdxSequentialRead1m(Buffers b) throws IOException {
        vhdx.read(b.sequentialOffset(), b.large);
    }

    @Benchmark
    public void rawSequentialRead1m(Buffers b) throws IOException {
        rawRead(raw, b.largeBuf, b.sequentialOffset());
    }

    @Benchmark
    public void vhdxSequentialWrite1m(Buffers b) throws IOException {
        vhdx.write(b.sequentialOffset(), b.large);
    }

    @Benchmark
    public void rawSequentialWrite1m(Buffers b) throws IOException {
        rawWrite(raw, b.largeBuf, b.sequentialOffset());
    }
}
