package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.sys.SharedMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class VmbusRingTest {
    private static final int DATA = 4096;

    private static MemorySegment[] ringMemory(Arena a) {
        MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
        VmbusRing.initialise(control);
        return new MemorySegment[] {control, a.allocate(DATA, 4096)};
    }

    private static MemorySegment bytes(Arena a, int n, int seed) {
        MemorySegment s = a.allocate(Math.max(1, n));
        for (int i = 0; i < n; i++) {
            s.set(ValueLayout.JAVA_BYTE, i, (byte) (seed + i));
        }
        return s;
    }

    @Test
    void shouldWriteDescriptorPayloadAndTrailerInHyperVLayout() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            assertTrue(w.tryWrite(PacketDescriptor.TYPE_INBAND, 1, 0x1122334455L, bytes(a, 13, 7), 0, 13));
            MemorySegment d = m[1];
            assertEquals(6, d.get(PacketDescriptor.U16, 0));
            assertEquals(2, d.get(PacketDescriptor.U16, 2), "offset8 = 16 bytes / 8");
            assertEquals(4, d.get(PacketDescriptor.U16, 4), "len8 = (16 + 16 padded payload) / 8");
            assertEquals(1, d.get(PacketDescriptor.U16, 6));
            assertEquals(0x1122334455L, d.get(PacketDescriptor.U64, 8));
            assertEquals(7, d.get(ValueLayout.JAVA_BYTE, 16));
            assertEquals(0L, d.get(PacketDescriptor.U64, 32), "trailer holds the previous write index (0) << 32");
            assertEquals(40, m[0].get(PacketDescriptor.U32, RingDescriptor.WRITE_INDEX_OFFSET));
        }
    }

    @Test
    void shouldSignalOnlyOnEmptyToNonEmptyWhenInterruptsAreUnmasked() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger signals = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, signals::incrementAndGet);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment p = bytes(a, 64, 1);
            assertTrue(w.tryWrite(6, 0, 1, p, 0, 64));
            assertTrue(w.tryWrite(6, 0, 2, p, 0, 64));
            assertEquals(1, signals.get(), "second packet into a non-empty ring must not signal");
            assertEquals(2, r.tryRead((b, o, l, t, f, id) -> true, 10));
            r.maskInterrupts();
            assertTrue(w.tryWrite(6, 0, 3, p, 0, 64));
            assertEquals(1, signals.get(), "masked reader must not be signalled");
            assertFalse(r.armInterrupt(), "arming with a packet present reports non-empty");
            r.tryRead((b, o, l, t, f, id) -> true, 10);
            assertTrue(r.armInterrupt());
            assertTrue(w.tryWrite(6, 0, 4, p, 0, 64));
            assertEquals(2, signals.get());
        }
    }

    @Test
    void shouldRefuseToFillTheRingCompletelyAndReturnFalseWhenFull() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment p = bytes(a, 1000, 3);
            int n = 0;
            while (w.tryWrite(6, 0, n, p, 0, 1000)) {
                n++;
            }
            assertEquals(3, n, "3 x 1024-byte packets fit in 4096 (a 4th would fill it exactly)");
            assertTrue(w.bytesFree() > 0);
        }
    }

    @Test
    void shouldReadTheReadIndexOnlyWhenTheCachedOneSaysTheRingIsFull() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            r.maskInterrupts(); // polling reader: the writer has no reason to look at read_index to signal
            MemorySegment p = bytes(a, 1000, 3);
            assertTrue(w.tryWrite(6, 0, 0, p, 0, 1000));
            assertTrue(w.tryWrite(6, 0, 1, p, 0, 1000));
            assertTrue(w.tryWrite(6, 0, 2, p, 0, 1000));
            assertFalse(w.tryWrite(6, 0, 3, p, 0, 1000), "full by the fresh read index too");
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 1));
            assertTrue(w.tryWrite(6, 0, 3, p, 0, 1000), "the reader freed space: the writer re-reads read_index");
            assertEquals(3, r.tryRead((b, o, l, t, f, id) -> true, 3));
            assertTrue(w.tryWrite(6, 0, 4, bytes(a, 8, 0), 0, 8));
            m[0].set(PacketDescriptor.U32, 4, 13); // corrupted now, but the cached index still has room
            assertTrue(w.tryWrite(6, 0, 5, bytes(a, 8, 0), 0, 8), "no control-page read per packet");
            while (true) { // until the cache says full: then the fresh (bad) value is read and refused
                try {
                    if (!w.tryWrite(6, 0, 6, p, 0, 1000)) {
                        throw new AssertionError("full without re-reading read_index");
                    }
                } catch (RingException e) {
                    assertEquals(RingException.Reason.BAD_INDEX, e.reason());
                    break;
                }
            }
        }
    }

    @Test
    void shouldSignalBlockedWriterWhenFreeSpaceCrossesPendingSendSize() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger readerSignals = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, readerSignals::incrementAndGet);
            MemorySegment p = bytes(a, 1000, 3);
            while (w.tryWrite(6, 0, 0, p, 0, 1000)) { }
            assertFalse(w.requestSpace(VmbusRing.spaceFor(0, 1000)));
            r.tryRead((b, o, l, t, f, id) -> true, 1);
            assertEquals(1, readerSignals.get(), "free space crossed pending_send_sz: writer woken");
            w.clearPendingSend();
            r.tryRead((b, o, l, t, f, id) -> true, 1);
            assertEquals(1, readerSignals.get(), "no pending request, no signal");
        }
    }

    @Test
    void shouldDeliverWrappedPacketsContiguouslyWhenDoubleMapped() {
        int fd = SharedMemory.createSealed("ring-test", 2 * 4096);
        try (RingMapping map = RingMapping.map(fd, new long[] {0, 1}, 0, 2, true); Arena a = Arena.ofConfined()) {
            VmbusRing.initialise(map.control());
            roundTrip(map.ring(Doorbell.NONE), map.ring(Doorbell.NONE), a);
        } finally {
            io.phost.core.sys.Fd.close(fd);
        }
    }

    @Test
    void shouldDeliverWrappedPacketsThroughScratchCopyWhenSingleMapped() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            roundTrip(new VmbusRing(m[0], m[1], DATA, Doorbell.NONE), new VmbusRing(m[0], m[1], DATA, Doorbell.NONE), a);
        }
    }

    private static void roundTrip(VmbusRing w, VmbusRing r, Arena a) {
        Random rnd = new Random(42);
        List<Integer> sizes = new ArrayList<>();
        int written = 0;
        int[] read = {0};
        for (int round = 0; round < 2000; round++) {
            int len = rnd.nextInt(700);
            MemorySegment p = bytes(a, len, written);
            if (w.tryWrite(6, 0, written, p, 0, len)) {
                sizes.add(len);
                written++;
            }
            r.tryRead((b, o, l, t, f, id) -> {
                int want = sizes.get(read[0]);
                assertEquals(read[0], id);
                assertEquals(want, PacketDescriptor.dataLength(b, o, l) - ((8 - want % 8) % 8));
                long d = PacketDescriptor.dataOffset(b, o);
                for (int i = 0; i < want; i++) {
                    assertEquals((byte) (id + i), b.get(ValueLayout.JAVA_BYTE, d + i));
                }
                read[0]++;
                return true;
            }, rnd.nextInt(3) + 1);
        }
        assertTrue(read[0] > 1000);
    }

    @Test
    void shouldRejectHostileIndicesAndDescriptorsWithTypedReasons() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            m[0].set(PacketDescriptor.U32, 0, DATA + 8);
            assertEquals(RingException.Reason.BAD_INDEX, assertThrows(RingException.class, () -> r.tryRead((b, o, l, t, f, id) -> true, 1)).reason());
            m[0].set(PacketDescriptor.U32, 0, 0);
            w.tryWrite(6, 0, 0, bytes(a, 8, 0), 0, 8);
            m[1].set(PacketDescriptor.U16, 4, (short) 400); // len8 past write_index
            assertEquals(RingException.Reason.BAD_DESCRIPTOR, assertThrows(RingException.class, () -> r.tryRead((b, o, l, t, f, id) -> true, 1)).reason());
            m[1].set(PacketDescriptor.U16, 4, (short) 3);
            m[1].set(PacketDescriptor.U16, 2, (short) 1); // offset8 below the descriptor
            assertEquals(RingException.Reason.BAD_DESCRIPTOR, assertThrows(RingException.class, () -> r.tryRead((b, o, l, t, f, id) -> true, 1)).reason());
            m[1].set(PacketDescriptor.U16, 2, (short) 2);
            m[1].set(PacketDescriptor.U16, 4, (short) 0xffff);
            assertEquals(RingException.Reason.PACKET_TOO_LARGE, assertThrows(RingException.class, () -> r.tryRead((b, o, l, t, f, id) -> true, 1)).reason());
            m[0].set(PacketDescriptor.U32, 4, 13); // writer sees an unaligned read index
            assertEquals(RingException.Reason.BAD_INDEX, assertThrows(RingException.class, () -> w.tryWrite(6, 0, 0, bytes(a, 8, 0), 0, 8)).reason());
        }
    }

    /** The hot path writes through raw addresses: a caller's length must be refused before any byte is written. */
    @Test
    void shouldRefuseCallerLengthsThatCannotFitBeforeWritingAnything() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment src = bytes(a, 64, 3);
            int[][] bad = {{Integer.MAX_VALUE, 0}, {Integer.MAX_VALUE - 3, 0}, {-1, 0}, {DATA, 0}, {8, Integer.MAX_VALUE - 7},
                {8, -8}, {8, 12}, {DATA - 16, 0}};
            for (int[] b : bad) {
                assertThrows(IllegalArgumentException.class, () -> w.tryWrite(6, 0, 0, src, 0, b[1], src, 0, b[0]),
                    "length " + b[0] + " ext " + b[1]);
            }
            // a length that fits the ring but not the caller's buffer: refused by the source bounds check
            assertThrows(IndexOutOfBoundsException.class, () -> w.tryWrite(6, 0, 0, src, 0, 128));
            assertThrows(IndexOutOfBoundsException.class, () -> w.tryWrite(6, 0, 0, src, 60, 8));
            assertEquals(0, m[0].get(PacketDescriptor.U32, 0), "nothing was published");
            assertEquals(0, w.packetsWritten());
            assertTrue(w.tryWrite(6, 0, 0, src, 0, 64), "the ring still works");
        }
    }

    @Test
    void shouldOnlyEverThrowRingExceptionForRandomControlAndDataBytes() {
        Random rnd = new Random(7);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            for (int i = 0; i < 20_000; i++) {
                m[0].set(PacketDescriptor.U32, 0, rnd.nextInt(4) == 0 ? rnd.nextInt() : rnd.nextInt(DATA / 8) * 8);
                m[0].set(PacketDescriptor.U32, 4, rnd.nextInt(4) == 0 ? rnd.nextInt() : rnd.nextInt(DATA / 8) * 8);
                for (int j = 0; j < 8; j++) {
                    m[1].set(PacketDescriptor.U64, rnd.nextInt(DATA / 8) * 8L, rnd.nextLong());
                }
                try {
                    VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
                    r.tryRead((b, o, l, t, f, id) -> {
                        assertTrue(o >= 0 && o + l <= b.byteSize());
                        return true;
                    }, 64);
                } catch (RingException expected) {
                    // the only allowed failure
                }
            }
        }
    }

    @Test
    void shouldPublishABatchWithOneIndexStoreAndAtMostOneSignal() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger signals = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, signals::incrementAndGet);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment p = bytes(a, 64, 1);
            w.beginBatch();
            assertTrue(w.tryWrite(6, 0, 1, p, 0, 64));
            assertTrue(w.tryWrite(6, 0, 2, p, 0, 64));
            assertEquals(0, r.tryRead((b, o, l, t, f, id) -> true, 10), "nothing visible before the batch ends");
            assertEquals(0, signals.get());
            w.endBatch();
            assertEquals(1, signals.get());
            assertEquals(2, r.tryRead((b, o, l, t, f, id) -> true, 10));
            w.beginBatch();
            w.endBatch();
            assertEquals(1, signals.get(), "an empty batch publishes nothing");
        }
    }
    @Test
    void shouldQueueWithoutPublishingUntilFlushAndSignalOncePerBurst() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger signals = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, signals::incrementAndGet);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment p = bytes(a, 64, 1);
            List<Long> ids = new ArrayList<>();
            PacketHandler collect = (b, o, l, t, f, id) -> ids.add(id);
            assertFalse(w.flush(), "nothing queued: nothing to publish");
            assertTrue(w.tryQueue(6, 0, 1, p, 0, 64));
            assertTrue(w.tryQueue(6, 0, 2, p, 0, 13));
            assertTrue(w.hasQueued());
            assertEquals(0, m[0].get(PacketDescriptor.U32, RingDescriptor.WRITE_INDEX_OFFSET), "write_index not stored yet");
            assertEquals(0, r.tryRead(collect, 10), "queued packets are invisible to the reader");
            assertEquals(0, signals.get(), "and the peer is not signalled");
            assertTrue(w.flush());
            assertFalse(w.hasQueued());
            assertEquals(w.writeIndex(), m[0].get(PacketDescriptor.U32, RingDescriptor.WRITE_INDEX_OFFSET));
            assertEquals(1, signals.get(), "one signal for the burst into an empty ring");
            assertFalse(w.flush());
            assertEquals(1, signals.get(), "an empty flush signals nothing");
            // a publishing tryWrite publishes the queue before it, in order, with the queue's signal decision
            assertEquals(2, r.tryRead(collect, 10));
            assertTrue(w.tryQueue(6, 0, 3, p, 0, 8));
            assertTrue(w.tryWrite(6, 0, 4, p, 0, 8));
            assertFalse(w.hasQueued());
            assertEquals(2, signals.get());
            assertEquals(2, r.tryRead(collect, 10));
            assertEquals(List.of(1L, 2L, 3L, 4L), ids);
            // a burst into a ring the reader has not drained does not signal (it was not empty)
            assertTrue(w.tryWrite(6, 0, 5, p, 0, 8));
            assertTrue(w.tryQueue(6, 0, 6, p, 0, 8));
            assertTrue(w.flush());
            assertEquals(3, signals.get(), "only the write into the empty ring signalled");
            // masked interrupts: no signal at all
            r.tryRead(collect, 10);
            r.maskInterrupts();
            assertTrue(w.tryQueue(6, 0, 7, p, 0, 8));
            assertTrue(w.flush());
            assertEquals(3, signals.get());
        }
    }

    @Test
    void shouldPublishTheQueueBeforeAWriterWaitsForSpace() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            MemorySegment p = bytes(a, 256, 3);
            int queued = 0;
            while (w.tryQueue(6, 0, queued, p, 0, 256)) {
                queued++;
            }
            assertTrue(queued > 10);
            assertFalse(w.hasSpaceFor(0, 256), "queued packets use the space");
            assertEquals(0, r.tryRead((b, o, l, t, f, id) -> true, 1000));
            // requestSpace publishes first: the reader can then free what the writer waits for
            assertFalse(w.requestSpace(VmbusRing.spaceFor(0, 256)));
            assertFalse(w.hasQueued());
            assertEquals(queued, r.tryRead((b, o, l, t, f, id) -> true, 1000));
            assertTrue(w.hasSpaceFor(0, 256), "free again once read (read_index re-read when the cache says full)");
            w.clearPendingSend();
            // a failing publishing tryWrite publishes the queue too
            int more = 0;
            while (w.tryQueue(6, 0, more, p, 0, 256)) {
                more++;
            }
            assertFalse(w.tryWrite(6, 0, -1, p, 0, 256));
            assertFalse(w.hasQueued());
            assertEquals(more, r.tryRead((b, o, l, t, f, id) -> true, 1000));
        }
    }

    /**
     * Hyper-V's signalling rule with batches, across two threads: a reader that finds the ring empty arms its
     * interrupt and sleeps on the doorbell; the writer publishes bursts of random size with one index store and
     * signals only if the ring was empty before the burst. No wake-up may be lost: the reader's sleeps are
     * bounded by a long timeout that counts as a failure, and every packet arrives in order.
     */
    @Test
    void shouldNeverLoseAWakeUpWhenBatchesArePublishedToASleepingReader() throws Exception {
        neverLoseAWakeUp(false);
    }

    /** The same stress through the burst API: tryQueue + flush, with single publishing tryWrites mixed in. */
    @Test
    void shouldNeverLoseAWakeUpWhenQueuedBurstsAreFlushedToASleepingReader() throws Exception {
        neverLoseAWakeUp(true);
    }

    private static void neverLoseAWakeUp(boolean queueAndFlush) throws Exception {
        try (Arena a = Arena.ofShared()) {
            MemorySegment[] m = ringMemory(a);
            java.util.concurrent.Semaphore doorbell = new java.util.concurrent.Semaphore(0);
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, doorbell::release);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            final long packets = 200_000;
            AtomicInteger lostWakeUps = new AtomicInteger();
            long[] next = {0};
            boolean[] outOfOrder = {false};
            Thread reader = new Thread(() -> {
                while (next[0] < packets) {
                    int n = r.tryRead((b, o, l, t, f, id) -> {
                        outOfOrder[0] |= id != next[0]++;
                        return true;
                    }, 64);
                    if (n == 0 && r.armInterrupt()) {
                        try {
                            if (!doorbell.tryAcquire(10, java.util.concurrent.TimeUnit.SECONDS) && !r.isEmpty()) {
                                lostWakeUps.incrementAndGet(); // data was there and nobody woke us
                            }
                        } catch (InterruptedException e) {
                            return;
                        }
                        r.maskInterrupts();
                    }
                }
            }, "ring-sleeper");
            reader.start();
            MemorySegment p = bytes(a, 64, 5);
            Random rnd = new Random(11);
            long id = 0;
            while (id < packets) {
                int burst = 1 + rnd.nextInt(40);
                if (queueAndFlush) {
                    for (int i = 0; i < burst && id < packets; i++) {
                        // now and then a publishing write in the middle of a burst (it publishes the queue too)
                        boolean single = rnd.nextInt(16) == 0;
                        if (single ? w.tryWrite(6, 0, id, p, 0, 8 + rnd.nextInt(57)) : w.tryQueue(6, 0, id, p, 0, 8 + rnd.nextInt(57))) {
                            id++;
                        } else {
                            break;
                        }
                    }
                    w.flush();
                } else {
                    w.beginBatch();
                    for (int i = 0; i < burst && id < packets; i++) {
                        if (w.tryWrite(6, 0, id, p, 0, 8 + rnd.nextInt(57))) {
                            id++;
                        } else {
                            break;
                        }
                    }
                    w.endBatch();
                }
                if (rnd.nextInt(8) == 0) {
                    Thread.onSpinWait(); // let the reader drain and fall asleep now and then
                    Thread.yield();
                }
            }
            reader.join(60_000);
            assertFalse(reader.isAlive(), "the reader got every packet within 60 s (stuck at " + next[0] + " of " + packets + ")");
            assertEquals(0, lostWakeUps.get(), "a sleeping reader was never woken for data already published");
            assertFalse(outOfOrder[0], "packets arrived in order");
            assertTrue(w.signalsSent() > 0, "the reader slept and was signalled at least once");
        }
    }
}
