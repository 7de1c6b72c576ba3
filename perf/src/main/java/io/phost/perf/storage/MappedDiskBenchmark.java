package io.phost.perf.storage;

import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * One 4 KiB SCSI READ(16) / WRITE(16) through {@link ScsiQueue} on a fully allocated dynamic VHDX on tmpfs
 * or in the temp dir (the machine's disk): CDB decode, {@code VhdxDisk.mapRead/mapWrite}, io_uring on the
 * image's O_DIRECT fd, completion. Run with {@code -prof gc}: the mapped path should allocate 0 B/op (on
 * the disk an I/O takes ~100 us, so JMH's own few hundred KB per iteration show up as a few B/op; tmpfs
 * runs enough I/Os to amortise them).
 * {@code phost bench jmh MappedDiskBenchmark --prof gc}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"})
public class MappedDiskBenchmark {
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final long SIZE = 64L << 20;

    @Param({"tmpfs", "disk"})
    public String where;

    private Path dir;
    private VhdxDisk disk;
    private ScsiQueue queue;
    private Arena arena;
    private MemorySegment buffer;
    private MemorySegment readCdb;
    private MemorySegment writeCdb;
    private int done;
    private long lba;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        dir = where.equals("tmpfs") ? Files.createTempDirectory(Path.of("/dev/shm"), "mapped-bench")
            : Files.createTempDirectory("mapped-bench");
        disk = VhdxDisk.create(dir.resolve("bench.vhdx"), VhdxCreateOptions.dynamic(SIZE).withBlockSize(1 << 20));
        arena = Arena.ofShared();
        MemorySegment chunk = arena.allocate(1 << 20, 4096);
        chunk.fill((byte) 0x5A);
        for (long off = 0; off < SIZE; off += chunk.byteSize()) {
            disk.write(off, chunk); // every block FULLY_PRESENT and the write session started
        }
        disk.flush();
        ScsiTarget target = new ScsiTarget();
        target.add(0, new ScsiLun("bench", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
        queue = new ScsiQueue(target, 4, 4, r -> done++);
        buffer = arena.allocate(4096, 4096);
        readCdb = cdb(0x88);
        writeCdb = cdb(0x8A);
        io(readCdb, ScsiRequest.DIR_IN);
        if (!"io_uring-mapped".equals(queue.engineName(0))) {
            throw new IllegalStateException("expected the mapped engine, got " + queue.engineName(0)
                + " (io_uring unavailable?)");
        }
    }

    private MemorySegment cdb(int opcode) {
        MemorySegment c = arena.allocate(16);
        c.set(ValueLayout.JAVA_BYTE, 0, (byte) opcode);
        c.set(ValueLayout.JAVA_BYTE, 13, (byte) 8); // 8 x 512-byte blocks
        return c;
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        queue.close();
        disk.close();
        arena.close();
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    private int io(MemorySegment cdb, int dir) {
        ScsiRequest r = queue.tryAcquire();
        lba = (lba + 8 * 37) & (SIZE / 512 - 1) & ~7L;
        cdb.set(BE32, 6, (int) lba);
        r.reset(0, cdb, 0, 16, dir, 0);
        r.data().tryAdd(buffer.address(), 4096);
        int before = done;
        queue.submit(r);
        while (done == before) {
            queue.doWork();
        }
        queue.release(r);
        return r.status();
    }

    @Benchmark
    public int read4kQd1() {
        return io(readCdb, ScsiRequest.DIR_IN);
    }

    @Benchmark
    public int write4kQd1() {
        return io(writeCdb, ScsiRequest.DIR_OUT);
    }
}
