package io.phost.storage;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Per-disk counters the management API shows (/status, /metrics): operations, bytes, errors and a
 * latency histogram with power-of-two microsecond buckets. Written by queue agents with single atomic
 * adds (no allocation, no locks); read at any time by the API.
 */
public final class DiskStats {
    private static final int READS = 0;
    private static final int WRITES = 1;
    private static final int FLUSHES = 2;
    private static final int UNMAPS = 3;
    private static final int BYTES_READ = 4;
    private static final int BYTES_WRITTEN = 5;
    private static final int ERRORS = 6;
    private static final int LATENCY_NANOS = 7;
    private static final int OTHER = 8;
    private static final int BUCKET0 = 9;
    /** Bucket i counts latencies in [2^(i-1), 2^i) microseconds; bucket 0 is under 1 us. */
    public static final int BUCKETS = 32;

    private final AtomicLongArray c = new AtomicLongArray(BUCKET0 + BUCKETS);
    private final java.util.concurrent.atomic.AtomicLong noSpace = new java.util.concurrent.atomic.AtomicLong();

    public void recordRead(long bytes, long latencyNanos) {
        c.getAndIncrement(READS);
        c.getAndAdd(BYTES_READ, bytes);
        latency(latencyNanos);
    }

    public void recordWrite(long bytes, long latencyNanos) {
        c.getAndIncrement(WRITES);
        c.getAndAdd(BYTES_WRITTEN, bytes);
        latency(latencyNanos);
    }

    public void recordFlush(long latencyNanos) {
        c.getAndIncrement(FLUSHES);
        latency(latencyNanos);
    }

    public void recordUnmap(long latencyNanos) {
        c.getAndIncrement(UNMAPS);
        latency(latencyNanos);
    }

    public void recordOther() {
        c.getAndIncrement(OTHER);
    }

    public void recordError() {
        c.getAndIncrement(ERRORS);
    }

    /**
     * Counts a write refused because the file system holding the disk is full (also an error). Returns true
     * only for the first one, so the caller logs a full disk once, not once per refused write.
     */
    public boolean recordNoSpace() {
        c.getAndIncrement(ERRORS);
        return noSpace.getAndIncrement() == 0;
    }

    /** Writes refused for lack of space on the host file system. */
    public long noSpaceErrors() {
        return noSpace.get();
    }

    private void latency(long nanos) {
        c.getAndAdd(LATENCY_NANOS, nanos);
        long us = nanos / 1000;
        int bucket = us <= 0 ? 0 : Math.min(BUCKETS - 1, 64 - Long.numberOfLeadingZeros(us));
        c.getAndIncrement(BUCKET0 + bucket);
    }

    public long reads() {
        return c.get(READS);
    }

    public long writes() {
        return c.get(WRITES);
    }

    public long flushes() {
        return c.get(FLUSHES);
    }

    public long unmaps() {
        return c.get(UNMAPS);
    }

    public long bytesRead() {
        return c.get(BYTES_READ);
    }

    public long bytesWritten() {
        return c.get(BYTES_WRITTEN);
    }

    public long errors() {
        return c.get(ERRORS);
    }

    public long otherCommands() {
        return c.get(OTHER);
    }

    /** Sum of I/O latencies, for a mean over an interval (delta / delta of operations). */
    public long latencyNanosTotal() {
        return c.get(LATENCY_NANOS);
    }

    public long latencyBucket(int i) {
        return c.get(BUCKET0 + i);
    }

    /** Approximate latency percentile in microseconds (upper bound of the bucket), over the disk's life. */
    public long latencyPercentileMicros(double p) {
        long total = 0;
        for (int i = 0; i < BUCKETS; i++) {
            total += latencyBucket(i);
        }
        if (total == 0) {
            return 0;
        }
        long rank = (long) Math.ceil(p / 100.0 * total);
        long seen = 0;
        for (int i = 0; i < BUCKETS; i++) {
            seen += latencyBucket(i);
            if (seen >= rank) {
                return i == 0 ? 1 : 1L << i;
            }
        }
        return 1L << (BUCKETS - 1);
    }

    /** A snapshot for JSON/Prometheus output. */
    public java.util.Map<String, Long> snapshot() {
        var m = new java.util.LinkedHashMap<String, Long>();
        m.put("reads", reads());
        m.put("writes", writes());
        m.put("flushes", flushes());
        m.put("unmaps", unmaps());
        m.put("bytes_read", bytesRead());
        m.put("bytes_written", bytesWritten());
        m.put("errors", errors());
        m.put("no_space_errors", noSpaceErrors());
        m.put("latency_ns_total", latencyNanosTotal());
        m.put("latency_p50_us", latencyPercentileMicros(50));
        m.put("latency_p99_us", latencyPercentileMicros(99));
        return m;
    }
}
