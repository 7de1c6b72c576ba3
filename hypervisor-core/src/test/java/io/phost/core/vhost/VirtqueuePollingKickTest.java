package io.phost.core.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * Kick suppression for a back-end that polls (issue 14, {@code [host] polling = "latency"}): while the device polls
 * with {@link Virtqueue#disableKicks} the driver is asked not to kick; before it sleeps {@link Virtqueue#enableKicks}
 * asks again and re-reads the ring, so a request the driver adds right as the device goes to sleep is never left
 * without a wake-up. The stress runs a driver thread that kicks only when the device asks (Linux
 * {@code virtqueue_kick_prepare}: avail_event with EVENT_IDX, else used.flags NO_NOTIFY) against a device thread
 * that spins a random while, then sleeps on the kick eventfd; a sleep that times out with a request in the ring is a
 * lost wake-up.
 */
class VirtqueuePollingKickTest {
    private static final int QSIZE = 16;
    private static final long GPA = 0x10_0000L;
    private static final long DESC = 0x1000;
    private static final long AVAIL = DESC + 16L * QSIZE;
    private static final long USED = (AVAIL + 6 + 2L * QSIZE + 3) & ~3L;
    private static final long USED_EVENT = AVAIL + 4 + 2L * QSIZE;
    private static final long AVAIL_EVENT = USED + 4 + 8L * QSIZE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final int REQUESTS = 100_000;
    /** A sleep this long with a request waiting is a lost wake-up (nothing else can delay a kick that long). */
    private static final int LOST_WAKEUP_MILLIS = 5_000;

    @Test
    void shouldNeverLoseAWakeUpWhenRequestsArriveAsThePollingDeviceGoesToSleepWithEventIdx() throws Exception {
        stress(true);
    }

    @Test
    void shouldNeverLoseAWakeUpWhenRequestsArriveAsThePollingDeviceGoesToSleepWithTheNoNotifyFlag() throws Exception {
        stress(false);
    }

    @Test
    void shouldAskForNoKicksWhilePollingAndForKicksBeforeSleeping() {
        withQueue(false, (mine, q) -> {
            DescriptorChain chain = new DescriptorChain(4);
            q.disableKicks();
            assertEquals(SplitVirtqueue.USED_F_NO_NOTIFY, mine.get(U16, USED) & 0xFFFF, "polling: no kicks wanted");
            assertFalse(q.available());
            assertFalse(q.tryPop(chain), "empty ring");
            assertEquals(SplitVirtqueue.USED_F_NO_NOTIFY, mine.get(U16, USED) & 0xFFFF, "an empty pop keeps kicks off");
            post(mine, 0, 0);
            assertTrue(q.available());
            assertTrue(q.tryPop(chain));
            assertFalse(q.enableKicks(), "nothing more available");
            assertEquals(0, mine.get(U16, USED) & 0xFFFF, "kicks wanted again before sleeping");
            q.disableKicks();
            post(mine, 1, 1);
            assertTrue(q.enableKicks(), "a request made while the flag was up keeps the device awake");
        });
        withQueue(true, (mine, q) -> {
            DescriptorChain chain = new DescriptorChain(4);
            assertFalse(q.tryPop(chain));
            assertEquals(0, mine.get(U16, AVAIL_EVENT) & 0xFFFF);
            q.disableKicks();
            assertEquals(0, mine.get(U16, USED) & 0xFFFF, "EVENT_IDX: the flag is not used");
            post(mine, 0, 0);
            assertTrue(q.tryPop(chain));
            assertFalse(q.tryPop(chain));
            assertEquals(0, mine.get(U16, AVAIL_EVENT) & 0xFFFF, "a pop while polling leaves avail_event behind: no kicks");
            assertFalse(q.enableKicks());
            assertEquals(1, mine.get(U16, AVAIL_EVENT) & 0xFFFF, "kicks from the next request on");
        });
    }

    private interface QueueTest {
        void run(MemorySegment mine, SplitVirtqueue q) throws Exception;
    }

    private static void withQueue(boolean eventIdx, QueueTest body) {
        long size = 1 << 16;
        int fd = SharedMemory.createUnsealed("poll-kick-guest", size);
        MemorySegment mine = SharedMemory.mapShared(fd, 0, size);
        GuestMemory memory = GuestMemory.of(new java.util.ArrayList<>(List.of(GuestMemory.mapRegion(0, GPA, size, mine.address(), 0, Fd.dup(fd)))));
        try {
            long[] host = SplitVirtqueue.layout(0, memory, QSIZE, mine.address() + DESC, mine.address() + AVAIL, mine.address() + USED);
            body.run(mine, new SplitVirtqueue(0, memory, QSIZE, host[0], host[1], host[2], 0, eventIdx, false, null));
        } catch (Exception e) {
            throw new AssertionError(e);
        } finally {
            memory.close();
            SharedMemory.unmap(mine);
            Fd.close(fd);
        }
    }

    private static void stress(boolean eventIdx) {
        withQueue(eventIdx, (mine, q) -> {
            try (EventFd kick = EventFd.create()) {
                AtomicReference<Throwable> failure = new AtomicReference<>();
                long[] sleeps = new long[1];
                Thread device = Thread.ofPlatform().name("poll-kick-device").start(() -> {
                    try {
                        sleeps[0] = serve(q, kick.view());
                    } catch (Throwable t) {
                        failure.set(t);
                    }
                });
                long kicks;
                try {
                    kicks = drive(mine, eventIdx, kick, device::isAlive);
                } catch (AssertionError e) {
                    device.join(10_000);
                    assertNull(failure.get(), () -> "device: " + failure.get());
                    throw e;
                }
                device.join(60_000);
                assertFalse(device.isAlive(), "device thread ended");
                assertNull(failure.get(), () -> "device: " + failure.get());
                assertTrue(sleeps[0] > 0, "the device slept at least once (the race was exercised)");
                assertTrue(kicks < REQUESTS, "some requests went without a kick (suppression worked): " + kicks);
            }
        });
    }

    /** The device: pop and complete everything, spin a random while, then ask for kicks and sleep. */
    private static long serve(SplitVirtqueue q, EventFd kick) {
        DescriptorChain chain = new DescriptorChain(4);
        SplittableRandom rnd = new SplittableRandom(42);
        int done = 0;
        long sleeps = 0;
        q.disableKicks();
        while (done < REQUESTS) {
            if (q.tryPop(chain)) {
                q.pushUsed(chain.head(), 0);
                done++;
                continue;
            }
            for (int spin = rnd.nextInt(64); spin > 0 && !q.available(); spin--) {
                Thread.onSpinWait();
            }
            if (q.enableKicks()) { // no look of its own in between: the re-check is what closes the race
                q.disableKicks();
                continue;
            }
            sleeps++;
            if (kick.await(LOST_WAKEUP_MILLIS) == 0 && q.available()) {
                throw new AssertionError("lost wake-up after " + done + " requests: a request waited " + LOST_WAKEUP_MILLIS
                    + " ms in the ring with kicks enabled and no kick");
            }
            q.disableKicks();
        }
        return sleeps;
    }

    /**
     * The driver: waits until everything it sent is answered (reading used.idx), spins a random while, adds 1-3
     * requests, then kicks only if the device asks, as Linux's virtio_ring does. Returns the kicks sent.
     */
    private static long drive(MemorySegment mine, boolean eventIdx, EventFd kick, java.util.function.BooleanSupplier deviceAlive) {
        SplittableRandom rnd = new SplittableRandom(7);
        int availIdx = 0;
        int kickedAt = 0;
        long kicks = 0;
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (availIdx < REQUESTS) {
            int usedIdx;
            while (true) {
                VarHandle.acquireFence();
                usedIdx = mine.get(U16, USED + 2) & 0xFFFF;
                if (usedIdx == (availIdx & 0xFFFF)) {
                    break; // all answered: a lost wake-up now stops the run (the device times out with a request waiting)
                }
                if (System.nanoTime() > deadline || !deviceAlive.getAsBoolean()) {
                    throw new AssertionError("device stopped completing at " + usedIdx);
                }
                Thread.yield();
            }
            for (int spin = rnd.nextInt(64); spin > 0; spin--) {
                Thread.onSpinWait(); // land the next batch anywhere in the device's spin, including its last look
            }
            int n = Math.min(1 + rnd.nextInt(3), REQUESTS - availIdx);
            for (int k = 0; k < n; k++) {
                int d = availIdx % QSIZE;
                writeDescriptor(mine, d);
                mine.set(U16, AVAIL + 4 + 2L * (availIdx % QSIZE), (short) d);
                availIdx++;
            }
            VarHandle.releaseFence();
            mine.set(U16, AVAIL + 2, (short) availIdx);
            VarHandle.fullFence(); // the new index before the device's suppression is read
            boolean need;
            if (eventIdx) {
                int event = mine.get(U16, AVAIL_EVENT) & 0xFFFF;
                need = ((availIdx - event - 1) & 0xFFFF) < ((availIdx - kickedAt) & 0xFFFF);
            } else {
                need = (mine.get(U16, USED) & SplitVirtqueue.USED_F_NO_NOTIFY) == 0;
            }
            kickedAt = availIdx;
            if (need) {
                kick.signal();
                kicks++;
            }
        }
        mine.set(U16, USED_EVENT, (short) 0);
        return kicks;
    }

    private static void writeDescriptor(MemorySegment mine, int d) {
        long desc = DESC + 16L * d;
        mine.set(ValueLayout.JAVA_LONG_UNALIGNED, desc, GPA + 0x8000);
        mine.set(ValueLayout.JAVA_INT_UNALIGNED, desc + 8, 64);
        mine.set(U16, desc + 12, (short) 0);
    }

    /** Descriptor {@code d} = 64 readable bytes, made available as entry {@code slot} (avail.idx = slot + 1). */
    private static void post(MemorySegment mine, int d, int slot) {
        writeDescriptor(mine, d);
        mine.set(U16, AVAIL + 4 + 2L * slot, (short) d);
        VarHandle.releaseFence();
        mine.set(U16, AVAIL + 2, (short) (slot + 1));
    }
}
