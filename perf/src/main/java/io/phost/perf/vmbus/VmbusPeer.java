package io.phost.perf.vmbus;

import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.DoorbellIdleStrategy;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.VmbusClient;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.time.Duration;
import java.util.Locale;
import org.HdrHistogram.Histogram;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;

/**
 * The second process of {@code phost bench vmbus}. It measures; the parent serves.
 * <pre>
 *   vmbus:&lt;millis&gt;:&lt;rttCount&gt;           child partition (PHOST_* env): one-way 64 B and 1 KiB, RTT busy, RTT irq
 *   agrona:&lt;file&gt;:&lt;millis&gt;:&lt;rttCount&gt;  two OneToOneRingBuffers in a tmpfs file mapped by both processes
 * </pre>
 * Prints {@code RESULT <name> <value>} lines, then {@code DONE}.
 */
public final class VmbusPeer {
    static final int AGRONA_CAPACITY = 256 * 1024;
    static final int MSG_DATA = 1;
    static final int MSG_REQUEST = 2;
    static final int RING_PAGES = 65; // 1 control + 64 data pages = 256 KiB of data, as the Agrona peer

    public static void main(String[] args) throws Exception {
        String[] a = args[args.length - 1].split(":");
        switch (a[0]) {
            case "vmbus" -> vmbus(Long.parseLong(a[1]), Integer.parseInt(a[2]));
            case "agrona" -> agrona(a[1], Long.parseLong(a[2]), Integer.parseInt(a[3]));
            default -> throw new IllegalArgumentException(a[0]);
        }
        System.out.println("DONE");
        System.out.flush();
        System.exit(0);
    }

    static void result(String name, double value) {
        System.out.println(String.format(Locale.ROOT, "RESULT %s %.3f", name, value));
        System.out.flush();
    }

    // ------------------------------------------------------------------ VMBus

    static void vmbus(long millis, int rttCount) {
        VmbusClient bus = VmbusClient.attachFromEnvironment();
        ChannelOffer busyOffer = bus.awaitOffer(BenchVsp.BUSY_TYPE, 0, Duration.ofSeconds(10));
        ChannelOffer irqOffer = bus.awaitOffer(BenchVsp.IRQ_TYPE, 0, Duration.ofSeconds(10));
        ClientChannel busy = bus.open(busyOffer, RING_PAGES, null);
        ClientChannel irq = bus.open(irqOffer, RING_PAGES, null);
        MemorySegment payload = Arena.ofAuto().allocate(1024, 8);
        busy.inbound().maskInterrupts(); // we busy-poll this channel: the host must not signal us
        for (int size : new int[] {64, 1024}) {
            vmbusOneWay(busy, payload, size, millis / 4, 1); // warm-up
            vmbusOneWay(busy, payload, size, millis / 4, BURST);
            result("vmbus-oneway-" + size, vmbusOneWay(busy, payload, size, millis, 1));
            result("vmbus-oneway-burst" + BURST + "-" + size, vmbusOneWay(busy, payload, size, millis, BURST));
        }
        rtt("vmbus-rtt-busy", busy, payload, rttCount, null);
        rtt("vmbus-rtt-irq", irq, payload, Math.max(1000, rttCount / 10),
            DoorbellIdleStrategy.interruptOnly(irq.inbound(), irq.hostDoorbell()));
    }

    /** Packets a burst-sending writer queues before it publishes (the suite's "burst" rows). */
    static final int BURST = 32;

    /**
     * Packets per second written (the host reads at the same rate: the ring is bounded). {@code burst} 1: one
     * publishing {@link ClientChannel#tryWrite} per packet. {@code burst} > 1: a sender with a queue of packets
     * ready, through the public burst API: {@link ClientChannel#tryQueue} while packets are ready (up to
     * {@code burst}) and the ring has space, then one {@link ClientChannel#flush}. The source never runs dry, so
     * every burst is {@code burst} packets unless the ring is full.
     */
    static double vmbusOneWay(ClientChannel ch, MemorySegment payload, int size, long millis, int burst) {
        long n = 0;
        long start = System.nanoTime();
        long end = start + millis * 1_000_000L;
        long now = start;
        while (now < end) {
            for (int i = 0; i < 256; i += burst) {
                if (burst == 1) {
                    if (ch.tryWrite(PacketDescriptor.TYPE_INBAND, 0, n, payload, 0, size)) {
                        n++;
                    } else {
                        Thread.onSpinWait();
                    }
                    continue;
                }
                int queued = 0;
                while (queued < burst && ch.tryQueue(PacketDescriptor.TYPE_INBAND, 0, n, payload, 0, size)) {
                    n++;
                    queued++;
                }
                ch.flush();
                if (queued < burst) {
                    Thread.onSpinWait(); // ring full: the host frees space as it reads what we just published
                }
            }
            now = System.nanoTime();
        }
        return n / ((now - start) / 1e9);
    }

    static void rtt(String name, ClientChannel ch, MemorySegment payload, int count, DoorbellIdleStrategy idle) {
        Histogram h = new Histogram(3_600_000_000_000L, 3);
        boolean[] got = new boolean[1];
        PacketHandler onCompletion = (b, o, l, t, f, id) -> {
            got[0] = true;
            return true;
        };
        int warm = count / 5;
        for (int i = 0; i < warm + count; i++) {
            long t0 = System.nanoTime();
            while (!ch.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, i, payload, 0, 64)) {
                Thread.onSpinWait();
            }
            got[0] = false;
            while (!got[0]) {
                int n = ch.tryRead(onCompletion, 1);
                if (idle != null) {
                    idle.idle(n);
                }
            }
            long dt = System.nanoTime() - t0;
            if (i >= warm) {
                h.recordValue(dt);
            }
        }
        result(name + "-p50-us", h.getValueAtPercentile(50) / 1000.0);
        result(name + "-p99-us", h.getValueAtPercentile(99) / 1000.0);
    }

    // ------------------------------------------------------------------ Agrona peer

    static RingBuffer[] agronaRings(String file) throws Exception {
        int len = AGRONA_CAPACITY + RingBufferDescriptor.TRAILER_LENGTH;
        try (RandomAccessFile f = new RandomAccessFile(file, "rw"); FileChannel fc = f.getChannel()) {
            MappedByteBuffer m = fc.map(FileChannel.MapMode.READ_WRITE, 0, 2L * len);
            UnsafeBuffer toParent = new UnsafeBuffer(m, 0, len);
            UnsafeBuffer toChild = new UnsafeBuffer(m, len, len);
            return new RingBuffer[] {new OneToOneRingBuffer(toParent), new OneToOneRingBuffer(toChild)};
        }
    }

    static void agrona(String file, long millis, int rttCount) throws Exception {
        RingBuffer[] r = agronaRings(file);
        RingBuffer toParent = r[0];
        RingBuffer toChild = r[1];
        UnsafeBuffer payload = new UnsafeBuffer(new byte[1024]);
        for (int size : new int[] {64, 1024}) {
            agronaOneWay(toParent, payload, size, millis / 4);
            result("agrona-oneway-" + size, agronaOneWay(toParent, payload, size, millis));
        }
        Histogram h = new Histogram(3_600_000_000_000L, 3);
        boolean[] got = new boolean[1];
        org.agrona.concurrent.MessageHandler onReply = (type, b, i, l) -> got[0] = true;
        int warm = rttCount / 5;
        for (int i = 0; i < warm + rttCount; i++) {
            long t0 = System.nanoTime();
            while (!toParent.write(MSG_REQUEST, payload, 0, 64)) {
                Thread.onSpinWait();
            }
            got[0] = false;
            while (!got[0]) {
                toChild.read(onReply, 1);
            }
            long dt = System.nanoTime() - t0;
            if (i >= warm) {
                h.recordValue(dt);
            }
        }
        result("agrona-rtt-busy-p50-us", h.getValueAtPercentile(50) / 1000.0);
        result("agrona-rtt-busy-p99-us", h.getValueAtPercentile(99) / 1000.0);
    }

    static double agronaOneWay(RingBuffer ring, UnsafeBuffer payload, int size, long millis) {
        long n = 0;
        long start = System.nanoTime();
        long end = start + millis * 1_000_000L;
        long now = start;
        while (now < end) {
            for (int i = 0; i < 256; i++) {
                if (ring.write(MSG_DATA, payload, 0, size)) {
                    n++;
                } else {
                    Thread.onSpinWait();
                }
            }
            now = System.nanoTime();
        }
        return n / ((now - start) / 1e9);
    }
}
