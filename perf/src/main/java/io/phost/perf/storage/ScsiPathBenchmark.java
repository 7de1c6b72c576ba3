package io.phost.perf.storage;

import io.phost.vhdx.RawDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.qos.QosFlow;
import io.phost.storage.backend.MemoryDisk;
import io.phost.vhdx.VirtualDisk;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * One 4 KiB SCSI READ(16) through {@link ScsiQueue} (CDB decode, range checks, QoS admission, the engine,
 * completion) without VMBus: on the null disk it is the SCSI layer's own cost per I/O; on a tmpfs file
 * (the in-line engine: one preadv) it adds the kernel's copy. Run with {@code -prof gc}: the steady path
 * should allocate 0 B/op.
 * {@code phost bench jmh ScsiPathBenchmark --prof gc}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"})
public class ScsiPathBenchmark {
    private static final java.lang.foreign.ValueLayout.OfInt BE32 =
        java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN);
    @Param({"null", "tmpfs"})
    public String backend;
    private Path file;
    private VirtualDisk disk;
    private ScsiQueue queue;
    private Arena arena;
    private MemorySegment buffer;
    private MemorySegment cdb;
    private int done;
    private long lba;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        if (backend.equals("null")) {
            disk = MemoryDisk.nullDisk(64L << 20);
        } else {
            file = Files.createTempFile(Path.of("/dev/shm"), "scsi-bench", ".raw");
            RawDisk.createSparse(file, 64L << 20);
            disk = RawDisk.openFile(file, false, true);
        }
        ScsiTarget target = new ScsiTarget();
        target.add(0, new ScsiLun("bench", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
        queue = new ScsiQueue(target, 4, 4, r -> done++);
        arena = Arena.ofShared();
        buffer = arena.allocate(4096, 4096);
        cdb = arena.allocate(16);
        cdb.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) 0x88);
        cdb.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 13, (byte) 8);
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        queue.close();
        disk.close();
        arena.close();
        if (file != null) {
            Files.deleteIfExists(file);
        }
    }

    @Benchmark
    public int read4kQd1() {
        ScsiRequest r = queue.tryAcquire();
        lba = (lba + 8) & ((64L << 20) / 512 - 1);
        cdb.set(BE32, 6, (int) lba);
        r.reset(0, cdb, 0, 16, ScsiRequest.DIR_IN, 0);
        r.data().tryAdd(buffer.address(), 4096);
        int before = done;
        queue.submit(r);
        while (done == before) {
            queue.doWork();
        }
        queue.release(r);
        return r.status();
    }
}
