package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

class StripedCountersTest {
    @Test
    void shouldLoseNoAddWhenMoreThreadsThanStripesShareTheCounters() throws Exception {
        StripedCounters c = new StripedCounters(2); // 2 stripes, 6 threads: owners add plainly, the rest atomically
        int threads = 6;
        int adds = 200_000;
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < adds; i++) {
                    c.add(StripedCounters.ADMITTED_IOS, 1);
                    c.add(StripedCounters.COMPLETED_BYTES, 3);
                }
            });
            th.start();
            ts.add(th);
        }
        go.countDown();
        long seen = 0;
        while (ts.stream().anyMatch(Thread::isAlive)) {
            long now = c.sum(StripedCounters.ADMITTED_IOS);
            assertTrue(now >= seen, "sums never go back");
            seen = now;
        }
        for (Thread th : ts) {
            th.join();
        }
        assertEquals((long) threads * adds, c.sum(StripedCounters.ADMITTED_IOS));
        assertEquals(3L * threads * adds, c.sum(StripedCounters.COMPLETED_BYTES));
    }

    @Test
    void shouldGiveAStripeToOneOwnerOnly() throws Exception {
        StripedCounters c = new StripedCounters(2);
        int mine = c.ownStripe();
        assertTrue(mine >= 0);
        assertEquals(mine, c.ownStripe(), "the owner keeps its stripe");
        int[] other = new int[1];
        Thread t;
        do { // a thread that maps to the same stripe (stripes are chosen by thread id)
            t = new Thread(() -> other[0] = c.ownStripe());
        } while (((t.threadId() ^ Thread.currentThread().threadId()) & 1) != 0);
        t.start();
        t.join();
        assertEquals(-1, other[0], "a second thread on the same stripe is not its owner");
    }

    @Test
    void shouldCountAdmissionsAndCompletionsOnTheOwnedAndTheSharedStripe() {
        StripedCounters c = new StripedCounters(2);
        int mine = c.ownStripe();
        assertEquals(1, c.addAdmission(mine, 3), "the owner gets its stripe's running admission count");
        assertEquals(2, c.addAdmission(mine, 5));
        c.addCompletion(mine, 3, 4096, 1_000);
        // a thread that does not own its stripe passes -1: the shared stripe, added atomically
        long shared = c.addAdmission(-1, 7);
        c.addCompletion(-1, 7, 512, 20);
        assertEquals(-1, shared, "no running count from the shared stripe");
        assertEquals(15 - 3, c.sum(StripedCounters.ADMITTED_EXTRA_UNITS), "units beyond one per I/O");
        assertEquals(3, c.sum(StripedCounters.ADMITTED_IOS));
        assertEquals(2, c.sum(StripedCounters.COMPLETED_IOS));
        assertEquals(10 - 2, c.sum(StripedCounters.COMPLETED_EXTRA_UNITS));
        assertEquals(4096 + 512, c.sum(StripedCounters.COMPLETED_BYTES));
        assertEquals(1_020, c.sum(StripedCounters.LATENCY_NANOS));
    }

    @Test
    void shouldHandAStripeOnWhenItsOwnerHasEnded() throws Exception {
        // Queue threads are replaced when a channel closes and reopens: each new thread must get a stripe of its
        // own again (before, the first owner kept it forever and every later thread paid the shared stripe's CAS).
        StripedCounters c = new StripedCounters(2);
        long firstId = -1;
        for (int generation = 0; generation < 4; generation++) {
            int[] got = {-2};
            Thread t;
            do { // threads mapping to one stripe (stripes are chosen by thread id)
                t = new Thread(() -> {
                    got[0] = c.ownStripe();
                    c.add(got[0], StripedCounters.ADMITTED_IOS, 5);
                });
            } while (firstId >= 0 && ((t.threadId() ^ firstId) & 1) != 0);
            if (firstId < 0) {
                firstId = t.threadId();
            }
            t.start();
            t.join();
            assertTrue(got[0] >= 0, "generation " + generation + " owns its stripe, not the shared one");
        }
        assertEquals(20L, c.sum(StripedCounters.ADMITTED_IOS), "the new owners continue from the old values");
    }
}
