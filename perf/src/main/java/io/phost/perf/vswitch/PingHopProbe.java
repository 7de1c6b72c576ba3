package io.phost.perf.vswitch;

import io.phost.vswitch.FrameHandler;
import io.phost.vswitch.FrameSink;
import io.phost.vswitch.FrameSource;
import io.phost.vswitch.PacketMeta;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import org.agrona.DirectBuffer;

/**
 * Splits a ping's round trip through a switch of TAP ports into hops, by wrapping both ports' source and sink
 * (only in {@code bench switch}, so the product's data path pays nothing). iputils ping puts its send time
 * (a 64-bit {@code struct timeval}) at the start of the echo data and stamps the reply's arrival in the kernel,
 * inside the switch's write(2) of the reply, so its RTT is the sum of:
 * <pre>
 *   to-switch  ping's sendmsg ─▶ TAP queue ─▶ switch thread wakes (or was spinning) ─▶ read(2) returns the request
 *   peer       switch forwards, write(2) into the far TAP (its stack answers inside that call) ─▶ read(2) of the reply
 *   back       switch forwards the reply ─▶ write(2) into the near TAP returns (ping's receive stamp is inside it)
 * </pre>
 * Each hop goes into a 1 µs histogram; only while {@link #armed}, and no allocation per frame.
 */
final class PingHopProbe {
    private static final int BUCKETS = 20_000; // 1 µs each; the last one collects everything slower
    private static final int SEQS = 1024;
    private final long[][] hist = new long[3][BUCKETS];
    private final long[] requestRead = new long[SEQS];
    private final long[] replyRead = new long[SEQS];
    private final long realtimeMicros0;
    private final long nano0;
    volatile boolean armed;

    PingHopProbe() {
        Instant now = Instant.now();
        nano0 = System.nanoTime();
        realtimeMicros0 = now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
    }

    private long nowMicros() {
        return realtimeMicros0 + (System.nanoTime() - nano0) / 1_000;
    }

    /** A port whose reads and writes feed this probe. */
    <T extends FrameSource & FrameSink> Port wrap(T port) {
        return new Port(port, port);
    }

    /** Drops what was recorded (before the ping phase). */
    void clear() {
        for (long[] h : hist) {
            java.util.Arrays.fill(h, 0);
        }
    }

    /** p50/p99 of each hop in µs and the sample count, as bench series keys. */
    Map<String, Double> summary() {
        Map<String, Double> out = new LinkedHashMap<>();
        String[] names = {"to_switch", "peer", "back"};
        for (int h = 0; h < 3; h++) {
            out.put("hop_" + names[h] + "_p50_us", percentile(hist[h], 0.5));
            out.put("hop_" + names[h] + "_p99_us", percentile(hist[h], 0.99));
        }
        long n = 0;
        for (long c : hist[0]) {
            n += c;
        }
        out.put("hop_samples", (double) n);
        return out;
    }

    static double percentile(long[] h, double p) {
        long n = 0;
        for (long c : h) {
            n += c;
        }
        if (n == 0) {
            return Double.NaN;
        }
        long rank = (long) Math.ceil(p * n);
        long seen = 0;
        for (int i = 0; i < h.length; i++) {
            seen += h[i];
            if (seen >= rank) {
                return i;
            }
        }
        return h.length - 1;
    }

    private void record(int hop, long micros) {
        hist[hop][(int) Math.max(0, Math.min(BUCKETS - 1, micros))]++;
    }

    /** ICMP type of an untagged IPv4 echo frame at {@code off}, or -1; {@code icmpAt} is set to its header. */
    private static int echoType(DirectBuffer b, int off, int len, int[] icmpAt) {
        if (len < 14 + 20 + 8 + 16 || b.getByte(off + 12) != 0x08 || b.getByte(off + 13) != 0x00) {
            return -1;
        }
        int ihl = (b.getByte(off + 14) & 0x0f) * 4;
        if (b.getByte(off + 14 + 9) != 1 || len < 14 + ihl + 8 + 16) {
            return -1;
        }
        int icmp = off + 14 + ihl;
        int type = b.getByte(icmp) & 0xff;
        icmpAt[0] = icmp;
        return type == 8 || type == 0 ? type : -1;
    }

    private static int seq(DirectBuffer b, int icmp) {
        return ((b.getByte(icmp + 6) & 0xff) << 8 | (b.getByte(icmp + 7) & 0xff)) & (SEQS - 1);
    }

    /** One probed port: the source side stamps reads, the sink side stamps the end of the reply's write. */
    final class Port implements FrameSource, FrameSink, FrameHandler {
        private final FrameSource source;
        private final FrameSink sink;
        private final int[] icmpAt = new int[1];
        private FrameHandler downstream;

        Port(FrameSource source, FrameSink sink) {
            this.source = source;
            this.sink = sink;
        }

        @Override
        public int poll(FrameHandler handler, int limit) {
            downstream = handler;
            return source.poll(this, limit);
        }

        @Override
        public void onFrame(DirectBuffer b, int off, int len, PacketMeta meta) {
            if (armed) {
                int type = echoType(b, off, len, icmpAt);
                if (type >= 0) {
                    long now = nowMicros();
                    int s = seq(b, icmpAt[0]);
                    if (type == 8) {
                        // timeval: tv_sec, tv_usec as little-endian 64-bit words at the start of the echo data
                        long sent = b.getLong(icmpAt[0] + 8, java.nio.ByteOrder.LITTLE_ENDIAN) * 1_000_000L
                            + b.getLong(icmpAt[0] + 16, java.nio.ByteOrder.LITTLE_ENDIAN);
                        record(0, now - sent);
                        requestRead[s] = now;
                    } else if (requestRead[s] != 0) {
                        record(1, now - requestRead[s]);
                        replyRead[s] = now;
                    }
                }
            }
            downstream.onFrame(b, off, len, meta);
        }

        @Override
        public boolean tryTransmit(DirectBuffer b, int off, int len, PacketMeta meta) {
            boolean sent = sink.tryTransmit(b, off, len, meta);
            if (armed && echoType(b, off, len, icmpAt) == 0) {
                int s = seq(b, icmpAt[0]);
                if (replyRead[s] != 0) {
                    record(2, nowMicros() - replyRead[s]);
                    replyRead[s] = 0;
                    requestRead[s] = 0;
                }
            }
            return sent;
        }

        @Override
        public int offloads() {
            return sink.offloads();
        }

        @Override
        public boolean offloadCapable() {
            return sink.offloadCapable();
        }

        @Override
        public boolean kernelQueue() {
            return source.kernelQueue();
        }

        @Override
        public int readinessFd() {
            return source.readinessFd();
        }

        @Override
        public int[] readinessFds() {
            return source.readinessFds();
        }

        @Override
        public boolean armWakeup() {
            return source.armWakeup();
        }

        @Override
        public void disarmWakeup() {
            source.disarmWakeup();
        }

        @Override
        public void close() {
            source.close();
        }
    }
}
