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
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import org.agrona.concurrent.MessageHandler;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;

/**
 * CPU nanoseconds per packet written and read back on one thread, measured with thread CPU time so that a
 * loaded machine (other processes preempting us) does not distort the comparison the way wall-clock
 * JMH runs do. Compares the VMBus ring double-mapped (wrap-free), single-mapped (split copies and a
 * scratch copy on wrap) and Agrona's OneToOneRingBuffer, all with 256 KiB of data, in one streaming pattern:
 * 16 packets written, then read back. The VMBus ring runs it twice: one publish per packet ({@code tryWrite})
 * and one publish per 16 (the burst API, {@code tryQueue} + {@code flush}); Agrona publishes per message
 * (it has no signalling rule, so no fence, and no batch API).
 * <p>
 * The single-mapped ring is measured on its own ({@link #measureSingleMapped}), after every compared
 * measurement of the JVM: the product maps every ring double, so its ring methods only ever see that path,
 * while a single-mapped loop run beside the double-mapped one fills the ring methods' branch profiles with
 * the wrap paths and the JIT recompiles the compared loops with them (twelfth session, three JVMs each, load
 * 12-15: 64 B 0.91 / 0.94 / 0.97x of Agrona with it, 0.97 / 0.97 / 1.02x without; burst of 16 16.9-17.7 ns
 * with it, 13.3-16.0 without).
 */
final class RingCostProbe {
    private static final int PAGES = 65;
    private long sink;

    static double[] measure(int size, int packets) {
        return new RingCostProbe().run(size, packets);
    }

    /**
     * {@code java <jvm.options> -cp <classpath> io.phost.perf.vmbus.RingCostProbe [runs] [packets]}: prints
     * CPU ns per packet (double-mapped, single-mapped, Agrona, batched publish) for 64 B and 1 KiB per run.
     */
    public static void main(String[] args) {
        int runs = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        int packets = args.length > 1 ? Integer.parseInt(args[1]) : 2_000_000;
        for (int run = 0; run < runs; run++) {
            for (int size : new int[] {64, 1024}) {
                double[] c = measure(size, packets);
                System.out.printf(java.util.Locale.ROOT, "run %d size %4d  vmbus-dm %6.1f  agrona %6.1f  vmbus-batched %6.1f  ratio(agrona/dm) %.2f%n",
                    run, size, c[0], c[2], c[3], c[2] / c[0]);
            }
        }
        for (int size : new int[] {64, 1024}) { // last: it would pollute the compared loops' profiles
            System.out.printf(java.util.Locale.ROOT, "size %4d  vmbus-sm %6.1f%n", size, measureSingleMapped(size, packets));
        }
    }

    /**
     * CPU ns per packet of the single-mapped ring (split copies and a scratch copy on wrap), best of 4 rounds.
     * Call it only after every compared {@link #measure} of this JVM (see the class comment).
     */
    static double measureSingleMapped(int size, int packets) {
        return new RingCostProbe().runSingleMapped(size, packets);
    }

    private double[] run(int size, int packets) {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long[] pfns = new long[PAGES];
        for (int i = 0; i < PAGES; i++) {
            pfns[i] = i;
        }
        int fd = SharedMemory.createSealed("probe-ring", PAGES * 4096L);
        try (RingMapping dm = RingMapping.map(fd, pfns, 0, PAGES, true);
             Arena arena = Arena.ofConfined()) {
            VmbusRing.initialise(dm.control());
            MemorySegment payload = arena.allocate(1024, 8);
            PacketHandler h = (b, o, l, t, f, id) -> {
                sink += b.get(ValueLayout.JAVA_LONG_UNALIGNED, o + 16);
                return true;
            };
            VmbusRing dw = dm.ring(Doorbell.NONE);
            VmbusRing dr = dm.ring(Doorbell.NONE);
            dr.maskInterrupts();
            OneToOneRingBuffer agrona = new OneToOneRingBuffer(new UnsafeBuffer(
                ByteBuffer.allocateDirect((PAGES - 1) * 4096 + RingBufferDescriptor.TRAILER_LENGTH)));
            UnsafeBuffer ap = new UnsafeBuffer(ByteBuffer.allocateDirect(1024));
            MessageHandler ah = (t, b, i, l) -> sink += b.getLong(i);
            // streaming pattern: the writer writes 16 packets, the reader drains them (limit 64)
            // [1] (single-mapped) stays NaN here: measureSingleMapped
            double[] best = {Double.MAX_VALUE, Double.NaN, Double.MAX_VALUE, Double.MAX_VALUE};
            int rounds = packets / 16;
            for (int round = 0; round < 4; round++) { // first rounds warm up the JIT; keep the best
                long t0 = mx.getCurrentThreadCpuTime();
                for (int i = 0; i < rounds; i++) {
                    for (int j = 0; j < 16; j++) {
                        dw.tryWrite(6, 0, j, payload, 0, size);
                    }
                    dr.tryRead(h, 64);
                }
                long t2 = mx.getCurrentThreadCpuTime();
                for (int i = 0; i < rounds; i++) {
                    for (int j = 0; j < 16; j++) {
                        agrona.write(1, ap, 0, size);
                    }
                    agrona.read(ah, 64);
                }
                long t3 = mx.getCurrentThreadCpuTime();
                dw = dm.ring(Doorbell.NONE);
                dr = dm.ring(Doorbell.NONE);
                dr.maskInterrupts();
                for (int i = 0; i < rounds; i++) {
                    for (int j = 0; j < 16; j++) {
                        dw.tryQueue(6, 0, j, payload, 0, size); // the burst API: one publish per 16
                    }
                    dw.flush();
                    dr.tryRead(h, 64);
                }
                long t4 = mx.getCurrentThreadCpuTime();
                long n = 16L * rounds;
                best[0] = Math.min(best[0], (t2 - t0) / (double) n);
                best[2] = Math.min(best[2], (t3 - t2) / (double) n);
                best[3] = Math.min(best[3], (t4 - t3) / (double) n);
            }
            return best;
        } finally {
            Fd.close(fd);
        }
    }

    private double runSingleMapped(int size, int packets) {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        long[] pfns = new long[PAGES];
        for (int i = 0; i < PAGES; i++) {
            pfns[i] = i;
        }
        int fd = SharedMemory.createSealed("probe-ring-sm", PAGES * 4096L);
        try (RingMapping sm = RingMapping.map(fd, pfns, 0, PAGES, false);
             Arena arena = Arena.ofConfined()) {
            VmbusRing.initialise(sm.control());
            MemorySegment payload = arena.allocate(1024, 8);
            PacketHandler h = (b, o, l, t, f, id) -> {
                sink += b.get(ValueLayout.JAVA_LONG_UNALIGNED, o + 16);
                return true;
            };
            VmbusRing sw = sm.ring(Doorbell.NONE);
            VmbusRing sr = sm.ring(Doorbell.NONE);
            sr.maskInterrupts();
            double best = Double.MAX_VALUE;
            int rounds = packets / 16;
            for (int round = 0; round < 4; round++) {
                long t0 = mx.getCurrentThreadCpuTime();
                for (int i = 0; i < rounds; i++) {
                    for (int j = 0; j < 16; j++) {
                        sw.tryWrite(6, 0, j, payload, 0, size);
                    }
                    sr.tryRead(h, 64);
                }
                best = Math.min(best, (mx.getCurrentThreadCpuTime() - t0) / (16.0 * rounds));
            }
            return best;
        } finally {
            Fd.close(fd);
        }
    }
}
