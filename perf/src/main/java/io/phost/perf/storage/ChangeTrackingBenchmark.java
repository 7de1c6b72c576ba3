package io.phost.perf.storage;

import io.phost.qos.QosFlow;
import io.phost.storage.ChangeTracker;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.VirtualDisk;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
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
 * The write-path cost of change tracking: 32 random 4 KiB SCSI WRITE(16)s in flight at once through
 * {@link ScsiQueue} on the null disk (so the SCSI layer's own cost is all there is to compare against), with
 * the LUN's {@link ChangeTracker} off and on. In steady state every block's bit is already set: the tracked
 * path adds one bit test per write. Throughput in writes per microsecond; run with {@code -prof gc} for 0 B/op.
 * {@code phost bench jmh ChangeTrackingBenchmark}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class ChangeTrackingBenchmark {
    private static final int QD = 32;
    private static final long SIZE = 64L << 20;
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    @Param({"off", "on"})
    public String tracking;
    private VirtualDisk disk;
    private ChangeTracker tracker;
    private Path dir;
    private ScsiQueue queue;
    private Arena arena;
    private MemorySegment buffer;
    private final MemorySegment[] cdbs = new MemorySegment[QD];
    private final ScsiRequest[] requests = new ScsiRequest[QD];
    private int done;
    private long seed = 42;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        disk = MemoryDisk.nullDisk(SIZE);
        ScsiTarget target = new ScsiTarget();
        ScsiLun lun = new ScsiLun("bench", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
        if (tracking.equals("on")) {
            dir = Files.createTempDirectory("rct-bench");
            tracker = ChangeTracker.open(dir.resolve("d.rct"), SIZE);
            lun.trackChanges(tracker);
        }
        target.add(0, lun);
        queue = new ScsiQueue(target, QD, 4, r -> done++);
        arena = Arena.ofShared();
        buffer = arena.allocate(4096, 4096);
        for (int i = 0; i < QD; i++) {
            cdbs[i] = arena.allocate(16);
            cdbs[i].set(ValueLayout.JAVA_BYTE, 0, (byte) 0x8A); // WRITE(16)
            cdbs[i].set(ValueLayout.JAVA_BYTE, 13, (byte) 8); // 8 blocks of 512 bytes
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws Exception {
        queue.close();
        disk.close();
        arena.close();
        if (tracker != null) {
            tracker.close();
            Files.deleteIfExists(tracker.path());
            Files.deleteIfExists(dir);
        }
    }

    @Benchmark
    @OperationsPerInvocation(QD)
    public int write4kQd32() {
        for (int i = 0; i < QD; i++) {
            ScsiRequest r = queue.tryAcquire();
            seed = seed * 6364136223846793005L + 1442695040888963407L; // LCG: a random 4 KiB-aligned LBA
            long lba = ((seed >>> 20) & (SIZE / 4096 - 1)) << 3;
            cdbs[i].set(BE64, 2, lba);
            r.reset(0, cdbs[i], 0, 16, ScsiRequest.DIR_OUT, 0);
            r.data().tryAdd(buffer.address(), 4096);
            requests[i] = r;
            queue.submit(r);
        }
        int target = done + QD;
        while (done - target < 0) {
            queue.doWork();
        }
        int status = 0;
        for (int i = 0; i < QD; i++) {
            status |= requests[i].status();
            queue.release(requests[i]);
        }
        return status;
    }
}
