package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.sys.SharedMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
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
                m[0].set(PacketDescriptor.U32, RingDescriptor.PENDING_SEND_SZ_OFFSET, rnd.nextInt(3) == 0 ? rnd.nextInt() : 0);
                try {
                    VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
                    r.publishReadIndexLazily((i & 1) == 0); // the lazy reader reads pending_send_sz and publishes on arming
                    r.tryRead((b, o, l, t, f, id) -> {
                        assertTrue(o >= 0 && o + l <= b.byteSize());
                        return true;
                    }, 64);
                    if (rnd.nextBoolean()) {
                        r.armInterrupt();
                    }
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
        sleepingReaderStress(false, DATA, RingStress::batches);
    }

    /** The same stress through the burst API: tryQueue + flush, with single publishing tryWrites mixed in. */
    @Test
    void shouldNeverLoseAWakeUpWhenQueuedBurstsAreFlushedToASleepingReader() throws Exception {
        sleepingReaderStress(false, DATA, RingStress::queuedBursts);
    }

    /**
     * A lazy reader (read_index published every quarter ring, on pending_send_sz, before arming) under the same
     * stress, per-packet writes and queued bursts alternating: arming publishes read_index before the mask is
     * cleared, so the writer's "was the ring empty" check still sees where the reader really is.
     */
    @Test
    void shouldNeverLoseAWakeUpWhenALazyReaderSleeps() throws Exception {
        sleepingReaderStress(true, 4 * DATA, s -> {
            while (s.writing()) {
                if (s.rnd.nextBoolean()) {
                    s.queuedBurst();
                } else if (s.w.tryWrite(6, 0, s.id, s.payload, 0, s.length())) {
                    s.id++;
                }
                s.nowAndThenLetTheReaderSleep();
            }
        });
    }

    /**
     * A writer blocked on space behind a lazy reader, across two threads: packets up to 600 B in a 4 KiB ring,
     * so the writer finds it full often; it then sets pending_send_sz ({@code requestSpace}) and sleeps on its
     * own doorbell, which only the reader rings. The reader must publish and signal (it sees pending_send_sz
     * on its next poll, or publishes before it sleeps itself); a writer wait that times out while the reader
     * had freed the space is a lost wake-up. Eager and lazy readers both run it.
     */
    @Test
    void shouldNeverLeaveAWriterBlockedOnSpaceBehindALazyReader() throws Exception {
        writerBlockedOnSpace(true);
    }

    /** The same with an eager reader (read_index stored after every batch). */
    @Test
    void shouldNeverLeaveAWriterBlockedOnSpaceBehindAnEagerReader() throws Exception {
        writerBlockedOnSpace(false);
    }

    private static void writerBlockedOnSpace(boolean lazy) throws Exception {
        RingStress s = sleepingReaderStress(lazy, DATA, RingStress::blockingOnSpace);
        assertEquals(0, s.lostSpaceWakeUps.get(), "lazy=" + lazy + ": a writer waiting for space was never left asleep behind free space");
        org.junit.jupiter.api.Assumptions.assumeTrue(s.spaceWaits > 0, "lazy=" + lazy + ": the writer never had to wait for space (no race window on this machine)");
    }

    @Test
    void shouldPublishReadIndexLazilyEveryQuarterRingAndBeforeArming() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger signals = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, signals::incrementAndGet);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            r.publishReadIndexLazily(true);
            r.maskInterrupts();
            MemorySegment p = bytes(a, 64, 1);
            int packet = VmbusRing.spaceFor(0, 64); // 88 bytes
            for (int i = 0; i < 3; i++) {
                assertTrue(w.tryWrite(6, 0, i, p, 0, 64));
            }
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 1));
            assertEquals(0, readIndexStored(m), "a polling lazy reader does not store read_index per batch");
            assertEquals(packet, r.unpublishedBytes());
            assertEquals(2, r.tryRead((b, o, l, t, f, id) -> true, 10));
            assertEquals(0, r.tryRead((b, o, l, t, f, id) -> true, 10), "an empty poll with nothing asked publishes nothing");
            assertEquals(0, readIndexStored(m));
            // arming publishes before it clears the mask: the writer's next publish sees an empty ring and signals
            assertTrue(r.armInterrupt());
            assertEquals(r.readIndex(), readIndexStored(m));
            assertEquals(0, r.unpublishedBytes());
            assertTrue(w.tryWrite(6, 0, 3, p, 0, 64));
            assertEquals(1, signals.get(), "the sleeping lazy reader is signalled");
            // a quarter ring (1,024 B) consumed since the last store is published at once
            r.maskInterrupts();
            for (int i = 4; i < 16; i++) {
                assertTrue(w.tryWrite(6, 0, i, p, 0, 64));
            }
            assertEquals(12, r.tryRead((b, o, l, t, f, id) -> true, 12)); // 13 x 88 = 1,144 B >= 1,024
            assertEquals(r.readIndex(), readIndexStored(m));
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 12));
            assertEquals(packet, r.unpublishedBytes());
            // turning it off publishes what is pending; the eager reader then stores per batch
            r.publishReadIndexLazily(false);
            assertEquals(r.readIndex(), readIndexStored(m));
            assertTrue(w.tryWrite(6, 0, 16, p, 0, 64));
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 12));
            assertEquals(r.readIndex(), readIndexStored(m));
        }
    }

    /**
     * A writer whose view of free space is behind a lazy reader asks with pending_send_sz: the reader's next
     * poll (an empty one here: it had consumed everything) publishes and signals once the space crosses the request.
     */
    @Test
    void shouldWakeAWriterBlockedOnSpaceFromALazyReadersNextPoll() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment[] m = ringMemory(a);
            AtomicInteger writerWakes = new AtomicInteger();
            VmbusRing w = new VmbusRing(m[0], m[1], DATA, Doorbell.NONE);
            VmbusRing r = new VmbusRing(m[0], m[1], DATA, writerWakes::incrementAndGet);
            r.publishReadIndexLazily(true);
            r.maskInterrupts();
            MemorySegment small = bytes(a, 256, 3);
            MemorySegment big = bytes(a, 3400, 4);
            for (int i = 0; i < 3; i++) {
                assertTrue(w.tryWrite(6, 0, i, small, 0, 256));
            }
            assertEquals(3, r.tryRead((b, o, l, t, f, id) -> true, 10));
            assertEquals(0, readIndexStored(m), "840 B consumed, less than a quarter ring: not published");
            assertFalse(w.tryWrite(6, 0, 3, big, 0, 3400), "from the published read_index the big packet does not fit");
            assertFalse(w.requestSpace(VmbusRing.spaceFor(0, 3400)), "nor after pending_send_sz: the writer would sleep");
            assertEquals(0, writerWakes.get());
            assertEquals(0, r.tryRead((b, o, l, t, f, id) -> true, 10), "the reader's next poll finds the ring empty");
            assertEquals(r.readIndex(), readIndexStored(m), "and publishes because the writer asked");
            assertEquals(1, writerWakes.get(), "free space crossed pending_send_sz: the writer is woken once");
            assertTrue(w.tryWrite(6, 0, 3, big, 0, 3400));
            w.clearPendingSend();
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 10));
            assertTrue(w.tryWrite(6, 0, 4, small, 0, 8));
            assertEquals(1, r.tryRead((b, o, l, t, f, id) -> true, 10));
            assertEquals(0, r.tryRead((b, o, l, t, f, id) -> true, 10));
            assertEquals(1, writerWakes.get(), "no request, no signal");
            assertEquals(VmbusRing.spaceFor(0, 8), r.unpublishedBytes(), "and no publish: lazy again once the writer cleared its request");
        }
    }

    private static int readIndexStored(MemorySegment[] m) {
        return m[0].get(PacketDescriptor.U32, RingDescriptor.READ_INDEX_OFFSET);
    }

    /** One writer loop of {@link #sleepingReaderStress}. */
    private interface WriterLoop {
        void run(RingStress s) throws Exception;
    }

    /**
     * The two-thread set-up every wake-up stress shares: a writer (this thread) and a reader thread that drains
     * the ring, checks order, and when it finds the ring empty arms its interrupt and sleeps on the writer's
     * doorbell (a sleep of 10 s that ends with data in the ring counts as a lost wake-up). The reader rings
     * {@link #space}, the writer's doorbell, when pending_send_sz asks it to.
     */
    private static final class RingStress {
        final long packets = 200_000;
        final Semaphore data = new Semaphore(0);
        final Semaphore space = new Semaphore(0);
        final VmbusRing w;
        final VmbusRing r;
        final MemorySegment payload;
        final Random rnd = new Random(11);
        final AtomicInteger lostWakeUps = new AtomicInteger();
        final AtomicInteger lostSpaceWakeUps = new AtomicInteger();
        final int dataSize;
        /** The writer stops here and the reader 15 s later: a lost wake-up fails the test instead of hanging it. */
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        long id;
        long spaceWaits;
        volatile long next;
        volatile boolean outOfOrder;

        RingStress(MemorySegment control, MemorySegment ring, int dataSize, MemorySegment payload, boolean lazy) {
            this.dataSize = dataSize;
            this.w = new VmbusRing(control, ring, dataSize, data::release);
            this.r = new VmbusRing(control, ring, dataSize, space::release);
            this.r.publishReadIndexLazily(lazy);
            this.payload = payload;
        }

        int length() {
            return 8 + rnd.nextInt(57);
        }

        void readAll() {
            long expect = 0;
            while (expect < packets && System.nanoTime() - deadline < TimeUnit.SECONDS.toNanos(15)) {
                long[] at = {expect};
                int n = r.tryRead((b, o, l, t, f, tid) -> {
                    if (tid != at[0]++) {
                        outOfOrder = true;
                    }
                    return true;
                }, 64);
                expect = at[0];
                next = expect;
                if (n == 0 && r.armInterrupt()) {
                    try {
                        if (!data.tryAcquire(10, TimeUnit.SECONDS) && !r.isEmpty()) {
                            lostWakeUps.incrementAndGet(); // data was there and nobody woke us
                        }
                    } catch (InterruptedException e) {
                        return;
                    }
                    r.maskInterrupts();
                }
            }
            r.armInterrupt(); // done: publish, as a reader going idle does
        }

        /** Batches through beginBatch/endBatch (publishing tryWrites inside a batch). */
        void batches() {
            while (writing()) {
                int burst = 1 + rnd.nextInt(40);
                w.beginBatch();
                for (int i = 0; i < burst && id < packets && w.tryWrite(6, 0, id, payload, 0, length()); i++) {
                    id++;
                }
                w.endBatch();
                nowAndThenLetTheReaderSleep();
            }
        }

        /** Whether the writer goes on: packets left and time left. */
        boolean writing() {
            return id < packets && System.nanoTime() - deadline < 0;
        }

        void queuedBursts() {
            while (writing()) {
                queuedBurst();
            }
        }

        /** One burst through tryQueue + flush, now and then a publishing tryWrite in the middle (it publishes the queue too). */
        void queuedBurst() {
            int burst = 1 + rnd.nextInt(40);
            for (int i = 0; i < burst && id < packets; i++) {
                boolean single = rnd.nextInt(16) == 0;
                if (single ? w.tryWrite(6, 0, id, payload, 0, length()) : w.tryQueue(6, 0, id, payload, 0, length())) {
                    id++;
                } else {
                    break;
                }
            }
            w.flush();
            if (id >= packets) {
                return;
            }
            nowAndThenLetTheReaderSleep();
        }

        /** Large packets; on a full ring: pending_send_sz, then sleep on the space doorbell (as ClientChannel.write). */
        void blockingOnSpace() throws InterruptedException {
            while (id < packets / 4 && writing()) {
                int len = 8 + rnd.nextInt(593);
                while (!w.tryWrite(6, 0, id, payload, 0, len) && writing()) {
                    int need = VmbusRing.spaceFor(0, len);
                    if (!w.requestSpace(need)) {
                        spaceWaits++;
                        if (!space.tryAcquire(10, TimeUnit.SECONDS) && freeSpace(r.readIndex(), w.writeIndex()) > need) {
                            lostSpaceWakeUps.incrementAndGet(); // the reader had freed it and nobody woke us
                        }
                    }
                }
                w.clearPendingSend();
                id++;
            }
            queuedBursts(); // the rest in small bursts (the reader stops at packets)
        }

        private int freeSpace(int read, int write) {
            return read > write ? read - write : dataSize - write + read;
        }

        void nowAndThenLetTheReaderSleep() {
            if (rnd.nextInt(8) == 0) {
                Thread.onSpinWait();
                Thread.yield();
            }
        }
    }

    private static RingStress sleepingReaderStress(boolean lazy, int dataSize, WriterLoop writer) throws Exception {
        try (Arena a = Arena.ofShared()) {
            MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
            VmbusRing.initialise(control);
            RingStress s = new RingStress(control, a.allocate(dataSize, 4096), dataSize, bytes(a, 600, 5), lazy);
            Thread reader = new Thread(s::readAll, "ring-sleeper");
            reader.start();
            writer.run(s);
            reader.join(30_000);
            assertFalse(reader.isAlive(), "lazy=" + lazy + ": the reader ended (stuck at " + s.next + " of "
                + s.packets + ", read_index stored " + readIndexStored(new MemorySegment[] {control}) + ", reader's " + s.r.readIndex()
                + ", write index " + s.w.writeIndex() + ")");
            assertEquals(0, s.lostWakeUps.get(), "lazy=" + lazy + ": a sleeping reader was never woken for data already published");
            assertEquals(s.packets, s.next, "lazy=" + lazy + ": every packet arrived within 60 s (writer at " + s.id + ", waits for space "
                + s.spaceWaits + ", lost space wake-ups " + s.lostSpaceWakeUps.get() + ")");
            assertFalse(s.outOfOrder, "lazy=" + lazy + ": packets arrived in order");
            assertEquals(0, s.r.unpublishedBytes(), "a reader that armed has published everything");
            org.junit.jupiter.api.Assumptions.assumeTrue(s.w.signalsSent() > 0,
                "lazy=" + lazy + ": the reader never slept, so no wake-up was tested (no race window on this machine)");
            return s;
        }
    }
}
