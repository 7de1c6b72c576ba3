package io.phost.storage.engine;

import io.phost.storage.backend.MemoryDisk;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The thread-pool engine allocates nothing per request, on the submitting thread or on its workers: a
 * {@code ThreadPoolExecutor} did (40-60 B per request, the condition-queue node of each worker wait).
 */
class ThreadPoolEngineAllocationTest {
    private static final int OPS = 20_000;

    /** Bytes allocated per request by the caller and the storage-io workers, over {@link #OPS} QD1 reads. */
    static double bytesPerRequest() throws Exception {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (MemoryDisk disk = MemoryDisk.ram(1 << 20, 512, false); Arena arena = Arena.ofConfined()) {
            ThreadPoolEngine e = new ThreadPoolEngine(disk, 8);
            IoVecs v = new IoVecs(1);
            MemorySegment buf = arena.allocate(4096, 4096);
            v.tryAdd(buf.address(), 4096);
            long[] done = new long[1];
            IoCompletionHandler h = (u, r) -> done[0] += r;
            run(e, v, h, OPS); // warm up: workers started, code compiled
            long[] workers = Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("storage-io")).mapToLong(Thread::threadId).toArray();
            long w0 = Arrays.stream(mx.getThreadAllocatedBytes(workers)).sum();
            long m0 = mx.getCurrentThreadAllocatedBytes();
            run(e, v, h, OPS);
            long m1 = mx.getCurrentThreadAllocatedBytes();
            long w1 = Arrays.stream(mx.getThreadAllocatedBytes(workers)).sum();
            e.close();
            assertEquals(2L * OPS * 4096, done[0]);
            return (double) (m1 - m0 + w1 - w0) / OPS;
        }
    }

    private static void run(IoEngine e, IoVecs v, IoCompletionHandler h, int n) {
        for (int i = 0; i < n; i++) {
            if (!e.tryRead((i & 255) * 4096L, v, i)) {
                throw new AssertionError("engine full at QD1");
            }
            e.submit();
            while (e.inFlight() > 0) {
                e.await(h, 1_000_000_000L);
            }
        }
    }

    @Test
    void shouldAllocateNothingPerRequest() throws Exception {
        double perRequest = bytesPerRequest();
        assertTrue(perRequest < 1.0, perRequest + " bytes allocated per request");
    }

    public static void main(String[] args) throws Exception {
        for (int i = 0; i < 3; i++) {
            System.out.printf("%.2f B/request%n", bytesPerRequest());
        }
    }
}
