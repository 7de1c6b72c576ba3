package io.phost.core.sys;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

@Timeout(30)
class UringDoorbellTest {
    private static final long LONG_WAIT = 10_000_000_000L;

    @Test
    void shouldWakeARingWaitWhenTheDoorbellRingsAndDrainIt() throws Exception {
        assumeTrue(IoUring.available(), "io_uring unavailable");
        try (IoUring ring = IoUring.create(4); EventFd bell = EventFd.create()) {
            UringDoorbell doorbell = new UringDoorbell(ring);
            Thread guest = Thread.ofPlatform().start(() -> {
                sleep(100);
                bell.view().signal();
            });
            long t0 = System.nanoTime();
            doorbell.await(bell, 0, LONG_WAIT);
            long waited = System.nanoTime() - t0;
            guest.join();
            assertTrue(waited < LONG_WAIT / 2, "woken by the doorbell, not the 10 s timeout: " + waited + " ns");
            List<Long> seen = reap(ring, doorbell);
            assertEquals(List.of(), seen, "the doorbell's CQE is not a device completion");
            assertEquals(1, doorbell.rings());
            assertFalse(doorbell.armed());
            assertEquals(0, bell.tryConsume(), "drained, so the next POLL_ADD does not fire at once");
        }
    }

    @Test
    void shouldSubmitQueuedRequestsAndWaitForTheirCompletionInOneCallKeepingThePollArmed() {
        assumeTrue(IoUring.available(), "io_uring unavailable");
        try (IoUring ring = IoUring.create(4); EventFd bell = EventFd.create()) {
            UringDoorbell doorbell = new UringDoorbell(ring);
            assertTrue(ring.tryPrepare(IoUring.OP_NOP, (byte) 0, -1, 0, 0, 0, 0, 7L, 0));
            long t0 = System.nanoTime();
            int submitted = doorbell.await(bell, 1, LONG_WAIT);
            assertTrue(System.nanoTime() - t0 < LONG_WAIT / 2, "the NOP completed the wait");
            assertEquals(1, submitted, "the device SQE went in with the wait (the poll is not counted)");
            assertEquals(0, ring.sqPending());
            assertEquals(List.of(7L), reap(ring, doorbell));
            assertTrue(doorbell.armed(), "the poll stays in the kernel for the next wait");
            // the next wait arms nothing new: a queued NOP is all it submits
            assertTrue(ring.tryPrepare(IoUring.OP_NOP, (byte) 0, -1, 0, 0, 0, 0, 8L, 0));
            assertEquals(1, doorbell.await(bell, 1, LONG_WAIT));
            assertEquals(List.of(8L), reap(ring, doorbell));
            bell.signal();
            doorbell.await(bell, 0, LONG_WAIT);
            assertEquals(List.of(), reap(ring, doorbell));
            assertEquals(1, doorbell.rings());
        }
    }

    private static List<Long> reap(IoUring ring, UringDoorbell doorbell) {
        List<Long> device = new ArrayList<>();
        ring.reap((userData, res, flags) -> {
            if (!doorbell.onCqe(userData)) {
                device.add(userData);
            }
        }, 16);
        return device;
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
