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
    private static final class DyingDevice implements VhostUserDevice {
        final List<Integer> taken = new CopyOnWriteArrayList<>();

        @Override
        public long features() {
            return 0;
        }

        @Override
        public int maxQueues() {
            return 1;
        }

        @Override
        public int readConfig(MemorySegment dst) {
            return 0;
        }

        @Override
        public boolean tracksInflight() {
            return true;
        }

        @Override
        public VirtqueueHandler openQueue(int index) {
            return new VirtqueueHandler() {
                @Override
                public int doWork(Virtqueue q, DescriptorChain c) {
                    int n = 0;
                    while (q.tryPop(c)) {
                        taken.add(c.head());
                        n++;
                    }
                    return n;
                }

                @Override
                public int inFlight() {
                    return 0;
                }

                @Override
                public void awaitCompletion(long timeoutNanos) {
                }

                @Override
                public void close(Virtqueue q) {
                }
            };
        }
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
            long[] src = new long[5];
            long[] dst = new long[5];
            int[] heads = new int[5];
            for (int i = 0; i < 5; i++) {
                src[i] = f.alloc(8, 8);
                dst[i] = f.alloc(8, 8);
                f.at(src[i], 8).set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0x1111_0000L + i);
                heads[i] = q.add(new long[] {src[i], dst[i]}, new int[] {8, 8}, new boolean[] {false, true});
            }
            q.kick();
            for (int i = 0; i < 500 && dying.taken.size() < 5; i++) {
                Thread.sleep(5);
            }
            assertEquals(5, dying.taken.size(), "the first back-end took all five");
            assertEquals(0, q.usedIndex(), "and completed none");
            first.close(); // gone without completing anything

            try (VhostUserBackend second = VhostUserBackend.start("echo", dir.resolve("b.sock"), new EchoDevice(1, true))) {
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

    /**
     * QEMU's vhost-user-blk acks INFLIGHT_SHMFD and then asks GET_FEATURES again before SET_FEATURES: from then on
     * RING_PACKED is not offered (the inflight layout is split-only), so {@code packed=on} gets restart-safe split
     * rings; a front-end that acked RING_PACKED first keeps it.
     */
    @Test
    void shouldStopOfferingPackedRingsOnceInflightTrackingIsAcked() throws InterruptedException {
        EchoDevice packedBlk = new EchoDevice(1, true) {
            @Override
            public boolean packedRings() {
                return true;
            }
        };
        try (VhostUserBackend b = VhostUserBackend.start("packed", dir.resolve("k.sock"), packedBlk);
             VhostUserFrontend f = VhostUserFrontend.connect(b.socketPath(), 1 << 20)) {
            long packed = 1L << F_RING_PACKED;
            long offered = f.getU64(VhostUserRequest.GET_FEATURES);
            assertEquals(packed, offered & packed, "offered before the protocol features");
            long pf = f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES);
            f.setU64(VhostUserRequest.SET_PROTOCOL_FEATURES, pf & ~(1L << PF_INFLIGHT_SHMFD));
            assertEquals(packed, f.getU64(VhostUserRequest.GET_FEATURES) & packed, "still offered without INFLIGHT_SHMFD");
            f.setU64(VhostUserRequest.SET_PROTOCOL_FEATURES, pf);
            assertEquals(0, f.getU64(VhostUserRequest.GET_FEATURES) & packed, "not offered with INFLIGHT_SHMFD");
            f.setU64(VhostUserRequest.SET_FEATURES, offered);
            for (int i = 0; i < 400 && b.lastError() == null; i++) {
                Thread.sleep(5);
            }
            assertTrue(String.valueOf(b.lastError()).contains("not offered"), "RING_PACKED acked after INFLIGHT_SHMFD is refused: " + b.lastError());
        }
        try (VhostUserBackend b = VhostUserBackend.start("packed-first", dir.resolve("l.sock"), packedBlk);
             VhostUserFrontend f = VhostUserFrontend.connect(b.socketPath(), 1 << 20)) {
            assertEquals(1L << F_RING_PACKED, f.negotiate(ALL & ~(1L << F_LOG_ALL)) & (1L << F_RING_PACKED),
                "SET_FEATURES before SET_PROTOCOL_FEATURES (the test front-end's order): packed");
            f.setU64(VhostUserRequest.SET_FEATURES, f.features());
            f.getU64(VhostUserRequest.GET_QUEUE_NUM);
            assertEquals(null, b.lastError(), "a packed ring acked before INFLIGHT_SHMFD stays acceptable");
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
