package io.phost.perf.vmbus;

import com.lmax.disruptor.BusySpinWaitStrategy;
import com.lmax.disruptor.EventPoller;
import com.lmax.disruptor.RingBuffer;
import com.lmax.disruptor.dsl.Disruptor;
import com.lmax.disruptor.dsl.ProducerType;
import com.lmax.disruptor.util.DaemonThreadFactory;
import org.HdrHistogram.Histogram;

/** The in-process LMAX Disruptor peer: one-way throughput and a ping-pong round trip, both busy-spinning. */
final class DisruptorPeer {
    static final class Event {
        final byte[] data = new byte[1024];
        int length;
        long value;
    }

    private DisruptorPeer() {}

    /** Events per second from a producer thread to one consumer, copying {@code size} bytes into each event. */
    static double oneWay(int size, long millis) {
        long[] consumed = new long[1];
        Disruptor<Event> d = new Disruptor<>(Event::new, 4096, DaemonThreadFactory.INSTANCE, ProducerType.SINGLE, new BusySpinWaitStrategy());
        d.handleEventsWith((e, seq, end) -> consumed[0] += e.data[0] + e.length);
        RingBuffer<Event> rb = d.start();
        byte[] src = new byte[1024];
        try {
            run(rb, src, size, millis / 4);
            return run(rb, src, size, millis);
        } finally {
            d.halt();
        }
    }

    private static double run(RingBuffer<Event> rb, byte[] src, int size, long millis) {
        long n = 0;
        long start = System.nanoTime();
        long end = start + millis * 1_000_000L;
        long now = start;
        while (now < end) {
            for (int i = 0; i < 256; i++) {
                long seq = rb.next();
                Event e = rb.get(seq);
                System.arraycopy(src, 0, e.data, 0, size);
                e.length = size;
                rb.publish(seq);
                n++;
            }
            now = System.nanoTime();
        }
        return n / ((now - start) / 1e9);
    }

    /** p50 and p99 (µs) of a request to a consumer thread that publishes a reply the caller polls. */
    static double[] roundTrip(int count) throws Exception {
        RingBuffer<Event> replies = RingBuffer.createSingleProducer(Event::new, 1024, new BusySpinWaitStrategy());
        EventPoller<Event> poller = replies.newPoller();
        replies.addGatingSequences(poller.getSequence());
        Disruptor<Event> d = new Disruptor<>(Event::new, 1024, DaemonThreadFactory.INSTANCE, ProducerType.SINGLE, new BusySpinWaitStrategy());
        d.handleEventsWith((e, seq, end) -> {
            long s = replies.next();
            replies.get(s).value = e.value;
            replies.publish(s);
        });
        RingBuffer<Event> requests = d.start();
        Histogram h = new Histogram(3_600_000_000_000L, 3);
        boolean[] got = new boolean[1];
        EventPoller.Handler<Event> onReply = (e, seq, end) -> {
            got[0] = true;
            return false;
        };
        int warm = count / 5;
        try {
            for (int i = 0; i < warm + count; i++) {
                long t0 = System.nanoTime();
                long s = requests.next();
                requests.get(s).value = i;
                requests.publish(s);
                got[0] = false;
                while (!got[0]) {
                    poller.poll(onReply);
                }
                if (i >= warm) {
                    h.recordValue(System.nanoTime() - t0);
                }
            }
        } finally {
            d.halt();
        }
        return new double[] {h.getValueAtPercentile(50) / 1000.0, h.getValueAtPercentile(99) / 1000.0};
    }
}
