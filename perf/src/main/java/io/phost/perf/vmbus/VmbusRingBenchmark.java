package io.phost.perf.vmbus;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import io.phost.core.vmbus.Doorbell;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.RingMapping;
import io.phost.core.vmbus.VmbusRing;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.util.concurrent.TimeUnit;
import org.agrona.concurrent.MessageHandler;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;
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

/**
 * Single-thread cost of one packet written and read back (no cross-core traffic): the VMBus ring
 * double-mapped over a memfd, the same ring single-mapped (wrap via split copies / scratch), and Agrona's
 * OneToOneRingBuffer. All rings have 256 KiB of data. The {@code *Burst} pair: 16 packets written (ours
 * queued and published once with {@code tryQueue} + {@code flush}; Agrona publishing each), then one read call. Run with {@code -prof gc} to see
 * {@code gc.alloc.rate.norm} = 0 B/op (no allocation per packet).
 * <pre>
 *   java --enable-native-access=ALL-UNNAMED --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
 *        -cp &lt;perf classpath&gt; org.openjdk.jmh.Main VmbusRingBenchmark -prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"})
public class VmbusRingBenchmark {
    private static final int PAGES = 65;
    private static final int BURST = 16;

    @Param({"64", "1024"})
    int size;

    private int fd;
    private RingMapping doubleMapped;
    private VmbusRing dmWriter;
    private VmbusRing dmReader;
    private Arena arena;
    private VmbusRing smWriter;
    private VmbusRing smReader;
    private OneToOneRingBuffer agrona;
    private MemorySegment payload;
    private UnsafeBuffer agronaPayload;
    private long sink;

    private final PacketHandler vmbusHandler = (b, o, l, t, f, id) -> {
        sink += b.get(ValueLayout.JAVA_LONG_UNALIGNED, o + 16);
        return true;
    };
    private final MessageHandler agronaHandler = (t, b, i, l) -> sink += b.getLong(i);

    @Setup(Level.Trial)
    public void setUp() {
        long[] pfns = new long[PAGES];
        for (int i = 0; i < PAGES; i++) {
            pfns[i] = i;
        }
        fd = SharedMemory.createSealed("bench-ring", PAGES * 4096L);
        doubleMapped = RingMapping.map(fd, pfns, 0, PAGES, true);
        VmbusRing.initialise(doubleMapped.control());
        dmWriter = doubleMapped.ring(Doorbell.NONE);
        dmReader = doubleMapped.ring(Doorbell.NONE);
        dmReader.maskInterrupts();
        arena = Arena.ofShared();
        MemorySegment control = arena.allocate(4096, 4096);
        VmbusRing.initialise(control);
        MemorySegment data = arena.allocate((PAGES - 1) * 4096L, 4096);
        smWriter = new VmbusRing(control, data, (PAGES - 1) * 4096, Doorbell.NONE);
        smReader = new VmbusRing(control, data, (PAGES - 1) * 4096, Doorbell.NONE);
        smReader.maskInterrupts();
        agrona = new OneToOneRingBuffer(new UnsafeBuffer(ByteBuffer.allocateDirect((PAGES - 1) * 4096 + RingBufferDescriptor.TRAILER_LENGTH)));
        // an automatic arena's payload, as a sender's own buffer usually is (VmbusPeer's): the ring copies it raw
        // (PayloadCopy); a shared arena's payload would take MemorySegment.copy
        payload = Arena.ofAuto().allocate(1024, 8);
        agronaPayload = new UnsafeBuffer(ByteBuffer.allocateDirect(1024));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        doubleMapped.close();
        Fd.close(fd);
        arena.close();
    }

    @Benchmark
    public long vmbusDoubleMapped() {
        dmWriter.tryWrite(6, 0, 1, payload, 0, size);
        dmReader.tryRead(vmbusHandler, 1);
        return sink;
    }

    @Benchmark
    public long vmbusSingleMapped() {
        smWriter.tryWrite(6, 0, 1, payload, 0, size);
        smReader.tryRead(vmbusHandler, 1);
        return sink;
    }

    @Benchmark
    public long agronaOneToOne() {
        agrona.write(1, agronaPayload, 0, size);
        agrona.read(agronaHandler, 1);
        return sink;
    }

    /** 16 packets queued and published once (the burst API), then read in one call; time per packet. */
    @Benchmark
    @OperationsPerInvocation(BURST)
    public long vmbusDoubleMappedBurst() {
        for (int i = 0; i < BURST; i++) {
            dmWriter.tryQueue(6, 0, i, payload, 0, size);
        }
        dmWriter.flush();
        dmReader.tryRead(vmbusHandler, BURST);
        return sink;
    }

    /** Agrona in the same pattern: 16 writes (it publishes each: no batch API), one read call; per packet. */
    @Benchmark
    @OperationsPerInvocation(BURST)
    public long agronaOneToOneBurst() {
        for (int i = 0; i < BURST; i++) {
            agrona.write(1, agronaPayload, 0, size);
        }
        agrona.read(agronaHandler, BURST);
        return sink;
    }
}
