package io.phost.core.vhost;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

import static io.phost.core.vhost.VhostUserDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dirty logging with a packed ring (VIRTIO_F_RING_PACKED with VHOST_F_LOG_ALL and LOG_SHMFD), driven as QEMU
 * drives it. A device holds every chain it pops, then completes them in reverse order, writing every
 * device-writable byte: each used element lands on the ring slot of a chain still in flight (so its descriptors
 * are gone when it is pushed), an indirect chain's writable entries sit in a table, buffers straddle pages.
 * The pages marked must be exactly the pages whose bytes changed (a snapshot of the whole guest memory before the
 * completions, compared after): none missing, none extra. Two rounds, so the ring and its wrap counters wrap.
 */
@Timeout(60)
class VhostUserPackedDirtyLogTest {
    private static final long MEMORY = 4 << 20;
    private static final int QUEUE = 8;
    private static final long PACKED_WITH_LOG = (1L << F_RING_PACKED) | (1L << F_LOG_ALL) | (1L << F_RING_INDIRECT_DESC)
        | (1L << F_RING_EVENT_IDX) | (1L << F_VERSION_1);

    @TempDir
    Path dir;
    private VhostUserBackend backend;
    private HoldingDevice device;
    private FrontendDirtyLog log;

    /** Pops chains and holds them until released, then completes them newest first, filling every writable byte. */
    private static final class HoldingDevice extends TestDevice {
        private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
        final AtomicBoolean release = new AtomicBoolean();
        volatile int held;
        private final List<long[]> chains = new ArrayList<>();

        HoldingDevice() {
            super(1, false, true);
        }

        @Override
        int work(Virtqueue q, DescriptorChain c) {
            int n = 0;
            while (q.tryPop(c)) {
                long[] w = new long[1 + 2 * (c.count() - c.readableCount())];
                w[0] = c.head();
                for (int i = c.readableCount(), k = 1; i < c.count(); i++, k += 2) {
                    w[k] = c.address(i);
                    w[k + 1] = c.length(i);
                }
                chains.add(w);
                n++;
            }
            held = chains.size();
            if (release.get() && !chains.isEmpty()) {
                for (int i = chains.size() - 1; i >= 0; i--) {
                    long[] w = chains.get(i);
                    long written = 0;
                    for (int k = 1; k < w.length; k += 2) {
                        EVERYTHING.asSlice(w[k], w[k + 1]).fill((byte) (0xA0 + i));
                        written += w[k + 1];
                    }
                    q.pushUsed((int) w[0], (int) written);
                }
                n += chains.size();
                chains.clear();
                held = 0;
                release.set(false);
                q.notifyIfNeeded();
            }
            return n;
        }

        @Override
        int held() {
            return chains.size();
        }

        @Override
        void awaitCompletion(long timeoutNanos) {
            LockSupport.parkNanos(timeoutNanos);
        }

        @Override
        void stopped(Virtqueue q) {
            for (long[] w : chains) {
                q.pushUsed((int) w[0], 0);
            }
            chains.clear();
        }
    }

    @BeforeEach
    void start() {
        device = new HoldingDevice();
        backend = VhostUserBackend.start("pdirty", dir.resolve("pdirty.sock"), device);
    }

    @AfterEach
    void stop() {
        backend.close();
        if (log != null) {
            log.close();
        }
    }

    @Test
    void shouldMarkExactlyThePagesAPackedRingChangedWithOutOfOrderCompletions() throws InterruptedException {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), MEMORY)) {
            long acked = f.negotiate(PACKED_WITH_LOG);
            assertEquals(PACKED_WITH_LOG, acked & PACKED_WITH_LOG,
                "packed ring and LOG_ALL are offered and accepted together: 0x" + Long.toHexString(acked));
            assertTrue((f.getU64(VhostUserRequest.GET_PROTOCOL_FEATURES) & (1L << PF_LOG_SHMFD)) != 0, "LOG_SHMFD offered");
            log = FrontendDirtyLog.attach(f);
            VhostUserFrontend.Queue q = f.startQueue(0, QUEUE);
            assertTrue(q.packed);
            log.clear();
            log.logRing(q); // as QEMU at migration start: the running ring restarts with VHOST_VRING_F_LOG
            assertTrue(log.marked().contains(q.usedAddress() >>> 12), "the device area, written at the ring's start, is marked");
            for (int round = 0; round < 2; round++) {
                List<Integer> ids = new ArrayList<>();
                for (int i = 0; i < 3; i++) { // 3 direct chains of 2 descriptors + 1 indirect: 7 of 8 slots
                    long src = f.alloc(64, 8);
                    long dst = f.alloc(2 * 4096 + 100, 8) + 4096 - 50; // straddles two page boundaries
                    ids.add(q.add(new long[] {src, dst}, new int[] {64, 4096 + 100}, new boolean[] {false, true}));
                }
                long a = f.alloc(3 * 4096, 4096);
                ids.add(q.addIndirect(new long[] {f.alloc(16, 8), a + 100, a + 2 * 4096 + 8},
                    new int[] {16, 24, 16}, new boolean[] {false, true, true}));
                assertTrue(!ids.contains(-1), "the driver had room: " + ids);
                q.kick();
                long deadline = System.nanoTime() + 10_000_000_000L;
                while (device.held < ids.size() && System.nanoTime() < deadline) {
                    Thread.sleep(2);
                }
                assertEquals(ids.size(), device.held, "the device popped all " + ids.size() + " chains within 10 s");
                log.clear();
                byte[] before = log.snapshot();
                device.release.set(true);
                q.kick();
                List<Integer> completed = new ArrayList<>();
                for (int i = 0; i < ids.size(); i++) {
                    int[] u = q.awaitUsed(10_000);
                    assertNotNull(u, "round " + round + ": used element " + i + " within 10 s");
                    completed.add(u[0]);
                }
                assertEquals(ids.reversed(), completed, "completed newest first");
                Set<Long> changed = log.changedSince(before);
                Set<Long> marked = log.marked();
                assertEquals(changed, marked, "round " + round + ": marked pages must be exactly the changed ones");
                assertTrue(changed.size() >= 8, "the test wrote into enough pages to mean something: " + changed);
            }
        }
        assertNull(backend.lastError());
    }

    @Test
    void shouldOfferPackedRingsWithLogAllAndMarkNothingWithoutIt() throws InterruptedException {
        try (VhostUserFrontend f = VhostUserFrontend.connect(backend.socketPath(), MEMORY)) {
            long offered = f.getU64(VhostUserRequest.GET_FEATURES);
            assertEquals((1L << F_RING_PACKED) | (1L << F_LOG_ALL), offered & ((1L << F_RING_PACKED) | (1L << F_LOG_ALL)));
            f.negotiate(PACKED_WITH_LOG & ~(1L << F_LOG_ALL));
            log = FrontendDirtyLog.attach(f);
            VhostUserFrontend.Queue q = f.startQueue(0, QUEUE);
            log.logRing(q);
            log.clear();
            long dst = f.alloc(4096, 4096);
            int id = q.add(new long[] {f.alloc(8, 8), dst}, new int[] {8, 4096}, new boolean[] {false, true});
            device.release.set(true);
            q.kick();
            int[] u = q.awaitUsed(10_000);
            assertNotNull(u, "completed within 10 s");
            assertArrayEquals(new int[] {id, 4096}, u);
            assertEquals((byte) 0xA0, f.at(dst, 1).get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(Set.of(), log.marked(), "without LOG_ALL nothing is marked");
        }
    }
}
