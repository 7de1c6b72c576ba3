package io.phost.core.vhost;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static io.phost.core.vhost.VhostUserDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * INFLIGHT_SHMFD: a back-end that dies with requests taken from the ring and not completed leaves them
 * marked in the front-end's inflight region; the next back-end resubmits them, in the order they were taken,
 * before anything new. The real-QEMU version (a SIGKILLed export mid-write) is
 * {@code VhostUserBlkKillTest} in vsp-storage.
 */
@Timeout(60)
class VhostUserInflightTest {
    private static final long ALL = ~0L;

    @TempDir
    Path dir;

    /** A device whose handler takes chains and never completes them, not even when stopped: a killed process. */
    private static final class DyingDevice extends TestDevice {
        final List<Integer> taken = new CopyOnWriteArrayList<>();

        DyingDevice() {
            super(1, true, false);
        }

        @Override
        int work(Virtqueue q, DescriptorChain c) {
            int n = 0;
            while (q.tryPop(c)) {
                taken.add(c.head());
                n++;
            }
            return n;
        }
    }

    /**
     * Makes {@code dst.length} 8-byte echo requests available on {@code q} and kicks once: request i reads
     * {@code first + i} and writes to {@code dst[i]}. Returns their heads (buffer ids on a packed ring).
     */
    private static int[] echoes(VhostUserFrontend f, VhostUserFrontend.Queue q, long first, long[] dst) {
        int[] heads = new int[dst.length];
        for (int i = 0; i < dst.length; i++) {
            long src = f.alloc(8, 8);
            dst[i] = f.alloc(8, 8);
            f.at(src, 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, first + i);
            heads[i] = q.add(new long[] {src, dst[i]}, new int[] {8, 8}, new boolean[] {false, true});
        }
        q.kick();
        return heads;
    }

    /** Waits up to 2.5 s until the dying back-end took {@code n} chains. */
    private static void awaitTaken(List<Integer> taken, int n) throws InterruptedException {
        for (int i = 0; i < 500 && taken.size() < n; i++) {
            Thread.sleep(5);
        }
        assertEquals(n, taken.size(), "the first back-end took all " + n);
    }

    @Test
    void shouldResubmitRequestsAKilledBackEndLeftInFlightInTheirOrder() throws InterruptedException {
        DyingDevice dying = new DyingDevice();
        VhostUserBackend first = VhostUserBackend.start("dying", dir.resolve("a.sock"), dying);
        VhostUserFrontend f = VhostUserFrontend.connect(dir.resolve("a.sock"), 1 << 20);
        try {
            f.negotiate(ALL);
            assertTrue(f.getInflight(1, 16) >= 16 + 16 * 16, "region for one queue of 16");
            VhostUserFrontend.Queue q = f.startQueue(0, 16);
            long[] dst = new long[5];
            int[] heads = echoes(f, q, 0x1111_0000L, dst);
            awaitTaken(dying.taken, 5);
            assertEquals(0, q.usedIndex(), "and completed none");
            first.close(); // gone without completing anything

            try (VhostUserBackend second = VhostUserBackend.start("echo", dir.resolve("b.sock"), new EchoDevice(1, true, false))) {
                f.reconnect(dir.resolve("b.sock"));
                f.negotiate(ALL);
                f.setInflight();
                f.restartQueue(q, q.usedIndex()); // QEMU restores last_avail from the used index
                int[] order = new int[5];
                for (int i = 0; i < 5; i++) {
                    int[] u = q.awaitUsed(5_000);
                    assertNotNull(u, "resubmitted request " + i + " completed");
                    order[i] = u[0];
                    assertEquals(8, u[1]);
                }
                assertArrayEquals(heads, order, "resubmitted in the order the first back-end took them");
                for (int i = 0; i < 5; i++) {
                    assertEquals(0x1111_0000L + i, f.at(dst[i], 8).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                }
                long s = f.alloc(8, 8);
                long d = f.alloc(8, 8);
                f.at(s, 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 42L);
                int h = q.add(new long[] {s, d}, new int[] {8, 8}, new boolean[] {false, true});
                q.kick();
                int[] u = q.awaitUsed(5_000);
                assertNotNull(u);
                assertEquals(h, u[0], "then new requests, once each");
                assertEquals(42L, f.at(d, 8).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                assertEquals(6, f.stopQueue(0), "next avail index counts each request once");
                assertEquals(null, second.lastError());
            }
        } finally {
            f.close();
        }
    }

    @Test
    void shouldTreatARequestWhoseUsedIndexLandedButNotItsClearAsCompleted() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment region = a.allocate(InflightRegion.queueStride(8), 64);
            InflightTracker t = new InflightTracker(region, 8);
            assertEquals(-1, t.recover(0), "a fresh region keeps SET_VRING_BASE");
            t.popped(3);
            t.popped(5);
            t.popped(1);
            t.beforePush(5); // killed after used.idx moved to 1 and before desc[5] was cleared
            InflightTracker after = new InflightTracker(region, 8);
            assertEquals(3, after.recover(1), "used 1 + two in flight");
            assertEquals(3, after.nextResubmit());
            assertEquals(1, after.nextResubmit());
            assertEquals(-1, after.nextResubmit());
        }
    }

    @Test
    void shouldNotTrustAHostileRegion() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment region = a.allocate(InflightRegion.queueStride(4), 64);
            new InflightTracker(region, 4).recover(0);
            region.set(ValueLayout.JAVA_SHORT_UNALIGNED, InflightRegion.LAST_BATCH_HEAD_OFFSET, (short) 0x7FFF);
            region.set(ValueLayout.JAVA_SHORT_UNALIGNED, InflightRegion.USED_IDX_OFFSET, (short) 9);
            List<Integer> flags = new ArrayList<>(List.of(1, 7, 1, 0));
            for (int h = 0; h < 4; h++) {
                long d = InflightRegion.QUEUE_HEADER_LENGTH + 16L * h;
                region.set(ValueLayout.JAVA_BYTE, d, (byte) (int) flags.get(h));
                region.set(ValueLayout.JAVA_LONG_UNALIGNED, d + 8, h == 0 ? -5L : Long.MAX_VALUE);
            }
            InflightTracker t = new InflightTracker(region, 4);
            assertEquals(2, t.recover(0), "only flag 1 means in flight; a head past the ring is ignored");
            assertEquals(0, t.nextResubmit());
            assertEquals(2, t.nextResubmit());
        }
    }

    /** A packed-ring device: it takes every chain and completes every other one (in pop order), then is killed. */
    private static final class HalfDyingDevice extends TestDevice {
        final List<Integer> taken = new CopyOnWriteArrayList<>();

        HalfDyingDevice() {
            super(1, true, true);
        }

        @Override
        int work(Virtqueue q, DescriptorChain c) {
            int n = 0;
            while (q.tryPop(c)) {
                taken.add(c.head());
                if (taken.size() % 2 == 0) {
                    q.pushUsed(c.head(), 0);
                    q.notifyIfNeeded();
                }
                n++;
            }
            return n;
        }
    }

    /**
     * Packed ring: the first back-end completes requests 1 and 3 of five, whose used elements overwrite the ring
     * slots of requests 0 and 2, and dies. The next one, given QEMU 7.2's stale SET_VRING_BASE (the ring's first
     * start), finds both positions and the three chains in the packed inflight region and resubmits them in order
     * from the region's copies; new requests then follow, each once.
     */
    @Test
    void shouldResubmitPackedRequestsAKilledBackEndLeftInFlightFromTheRegionsCopies() throws InterruptedException {
        HalfDyingDevice dying = new HalfDyingDevice();
        VhostUserBackend first = VhostUserBackend.start("dying", dir.resolve("pa.sock"), dying);
        VhostUserFrontend f = VhostUserFrontend.connect(dir.resolve("pa.sock"), 1 << 20);
        long noLog = ALL & ~(1L << F_LOG_ALL);
        try {
            assertEquals(1L << F_RING_PACKED, f.negotiate(noLog) & (1L << F_RING_PACKED), "packed with INFLIGHT_SHMFD offered");
            assertEquals(1L << PF_INFLIGHT_SHMFD, f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << PF_INFLIGHT_SHMFD));
            assertEquals(PackedInflightTracker.queueStride(16), f.getInflight(1, 16), "the packed layout's region");
            VhostUserFrontend.Queue q = f.startQueue(0, 16);
            assertTrue(q.packed);
            long[] dst = new long[5];
            int[] ids = echoes(f, q, 0x2222_0000L, dst);
            awaitTaken(dying.taken, 5);
            first.close();
            assertEquals(ids[1], q.awaitUsed(5_000)[0], "request 1 completed, in request 0's slots");
            assertEquals(ids[3], q.awaitUsed(5_000)[0]);

            try (VhostUserBackend second = VhostUserBackend.start("echo", dir.resolve("pb.sock"), new EchoDevice(1, true, true))) {
                f.reconnect(dir.resolve("pb.sock"));
                f.negotiate(noLog);
                f.setInflight();
                f.restartQueue(q, VhostUserFrontend.PACKED_FRESH_BASE); // what QEMU 7.2 still has from the first start
                for (int i : new int[] {0, 2, 4}) {
                    int[] u = q.awaitUsed(5_000);
                    assertNotNull(u, "resubmitted request " + i + " completed");
                    assertEquals(ids[i], u[0], "resubmitted in the order the first back-end took them");
                    assertEquals(8, u[1]);
                    assertEquals(0x2222_0000L + i, f.at(dst[i], 8).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                }
                long s = f.alloc(8, 8);
                long d = f.alloc(8, 8);
                f.at(s, 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 43L);
                int h = q.add(new long[] {s, d}, new int[] {8, 8}, new boolean[] {false, true});
                q.kick();
                int[] u = q.awaitUsed(5_000);
                assertNotNull(u);
                assertEquals(h, u[0], "then new requests, once each");
                assertEquals(43L, f.at(d, 8).get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                assertEquals(null, q.awaitUsed(200), "nothing completed twice");
                assertEquals(0x800C_800C, f.stopQueue(0), "avail and used at descriptor 12 of the first lap");
                assertEquals(null, second.lastError());
            }
        } finally {
            f.close();
        }
    }

    /** A push cut short before its used element reached the ring is rolled back; one cut short after it is kept. */
    @Test
    void shouldRollBackAPackedPushTheGuestDidNotSeeAndCommitOneItDid() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment region = a.allocate(PackedInflightTracker.queueStride(8), 64);
            int[] ring = new int[8]; // the guest's descriptor flags per slot: lap 1 available = AVAIL
            java.util.Arrays.fill(ring, PackedVirtqueue.DESC_F_AVAIL);
            PackedInflightTracker t = new PackedInflightTracker(region, 8);
            assertTrue(!t.recover(0, true, pos -> ring[pos], "q"), "fresh");
            for (int id = 0; id < 3; id++) { // three chains of two descriptors: slots 0-1, 2-3, 4-5
                t.descriptor(0x1000 + id, 512, id, SplitVirtqueue.DESC_F_NEXT);
                t.descriptor(0x2000 + id, 1, id, SplitVirtqueue.DESC_F_WRITE);
                assertEquals(2 * id, t.taken(), "head entries from the free list");
            }
            t.beforePush(2, 2, true); // chain 1 (entries 2-3) pushed at slot 0, killed before the ring write
            PackedInflightTracker rolledBack = new PackedInflightTracker(region, 8);
            assertTrue(rolledBack.recover(0, true, pos -> ring[pos], "q"));
            assertEquals(3, rolledBack.recovered());
            assertEquals(0, rolledBack.usedIdx(), "the push is undone");
            assertEquals(6, rolledBack.availIdx(), "used + 3 chains of 2");
            assertEquals(0, rolledBack.nextResubmit());
            assertEquals(2, rolledBack.nextResubmit());
            assertEquals(4, rolledBack.nextResubmit());
            assertEquals(0x2000 + 2, rolledBack.addr(rolledBack.nextEntry(4)), "the copy of chain 2's second descriptor");

            rolledBack.beforePush(2, 2, true); // again, and this time the used element reached slot 0
            ring[0] = PackedVirtqueue.DESC_F_AVAIL | PackedVirtqueue.DESC_F_USED;
            PackedInflightTracker committed = new PackedInflightTracker(region, 8);
            assertTrue(committed.recover(0, true, pos -> ring[pos], "q"));
            assertEquals(2, committed.recovered(), "chain 1 was completed");
            assertEquals(2, committed.usedIdx());
            assertEquals(6, committed.availIdx());
            assertEquals(0, committed.nextResubmit());
            assertEquals(4, committed.nextResubmit());
            assertEquals(-1, committed.nextResubmit());
        }
    }

    /**
     * Packed regions left by random pops and (cut-short) pushes, then scribbled on by the front-end in up to three
     * random bytes: recovery either refuses with a VhostUserException or yields chains whose entries, lengths and
     * positions stay inside the ring, and exactly the entries not in flight can be taken again.
     */
    @Test
    void shouldSurviveRandomPackedRegions() {
        java.util.Random r = new java.util.Random(14);
        int accepted = 0;
        int resubmitted = 0;
        try (Arena a = Arena.ofConfined()) {
            for (int round = 0; round < 3_000; round++) {
                int size = 1 << r.nextInt(5);
                MemorySegment region = a.allocate(PackedInflightTracker.queueStride(size), 64);
                PackedInflightTracker before = new PackedInflightTracker(region, size); // a real state first ...
                before.recover(0, true, pos -> 0, "q");
                List<Integer> heads = new ArrayList<>();
                for (int left = size; left > 0 && r.nextBoolean(); ) {
                    int n = 1 + r.nextInt(left);
                    for (int k = 0; k < n; k++) {
                        before.descriptor(0x1000 + k, 1, heads.size(), k + 1 < n ? SplitVirtqueue.DESC_F_NEXT : 0);
                    }
                    heads.add(before.taken());
                    left -= n;
                }
                int used = 0;
                for (int h : heads) {
                    if (r.nextBoolean()) {
                        used = (used + before.chainLength(h)) % size;
                        before.beforePush(h, used, true);
                        if (r.nextBoolean()) {
                            before.afterPush(h);
                        }
                    }
                }
                for (int k = r.nextInt(4); k > 0; k--) { // ... then the front-end scribbles on it
                    region.set(ValueLayout.JAVA_BYTE, r.nextInt((int) region.byteSize()), (byte) r.nextInt(256));
                }
                PackedInflightTracker t = new PackedInflightTracker(region, size);
                try {
                    t.recover(0, true, pos -> r.nextInt(1 << 16), "q");
                } catch (VhostUserException refused) {
                    continue;
                }
                assertTrue(t.usedIdx() < size && t.availIdx() < size);
                accepted++;
                resubmitted += t.recovered() > 0 ? 1 : 0;
                int descriptors = 0;
                for (int h = t.nextResubmit(); h >= 0; h = t.nextResubmit()) {
                    int e = h;
                    for (int k = 1; k < t.chainLength(h); k++) {
                        e = t.nextEntry(e);
                        assertTrue(e >= 0 && e < size);
                    }
                    descriptors += t.chainLength(h);
                }
                assertTrue(descriptors <= size);
                for (int k = 0; k < size - descriptors; k++) { // every entry not in flight is free again
                    t.descriptor(0x1000, 1, 0, 0);
                    t.taken();
                }
                int extra = 0;
                try {
                    t.descriptor(0x1000, 1, 0, 0);
                } catch (VhostUserException full) {
                    extra = -1;
                }
                assertEquals(-1, extra, "no entry beyond the ring's size");
            }
        }
        System.out.println("random packed regions: " + accepted + " of 3000 accepted, " + resubmitted + " with chains to resubmit");
        assertTrue(resubmitted > 50, "the accepted path with chains in flight was exercised: " + resubmitted);
    }

    @Test
    void shouldRefuseAnInconsistentPackedRegion() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment region = a.allocate(PackedInflightTracker.queueStride(4), 64);
            PackedInflightTracker t = new PackedInflightTracker(region, 4);
            t.recover(0, true, pos -> 0, "q");
            t.descriptor(0x1000, 8, 0, 0);
            t.taken();
            region.set(ValueLayout.JAVA_SHORT_UNALIGNED, PackedInflightTracker.HEADER_LENGTH + PackedInflightTracker.E_NUM, (short) 9);
            VhostUserException e = org.junit.jupiter.api.Assertions.assertThrows(VhostUserException.class,
                () -> new PackedInflightTracker(region, 4).recover(0, true, pos -> 0, "queue 0"));
            assertTrue(e.getMessage().contains("queue 0: inflight region inconsistent: in-flight entry 0 has 9 descriptors"), e.getMessage());
        }
    }

    @Test
    void shouldOfferInflightOnlyToDevicesThatTrackIt() {
        try (VhostUserBackend plain = VhostUserBackend.start("plain", dir.resolve("p.sock"), new EchoDevice(1));
             VhostUserFrontend f = VhostUserFrontend.connect(plain.socketPath(), 1 << 20)) {
            f.negotiate(ALL);
            assertEquals(0, f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << PF_INFLIGHT_SHMFD));
        }
    }
}
