package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.EventFd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

/** The adaptive polling decision, driven by a fake clock and a fake run-queue probe. */
class SpinGovernorTest {
    private long now;
    private long runQueueWait;
    private final SpinGovernor g = new SpinGovernor(() -> runQueueWait, () -> now);

    SpinGovernorTest() {
        g.episodeEnded(true); // the thread's first episode only takes the baseline
    }

    /** One window of episodes lasting {@code wallNanos}, of which the thread waited {@code waitNanos} for a CPU. */
    private void window(long wallNanos, long waitNanos, int paidEpisodes) {
        for (int i = 0; i < SpinGovernor.WINDOW; i++) {
            now += wallNanos / SpinGovernor.WINDOW;
            runQueueWait += waitNanos / SpinGovernor.WINDOW;
            g.episodeEnded(i < paidEpisodes);
        }
    }

    @Test
    void shouldKeepSpinningWhileSpinsFindWorkAndTheThreadKeepsItsCpu() {
        for (int w = 0; w < 10; w++) {
            window(1_000_000, 10_000, SpinGovernor.WINDOW); // 1% run-queue wait, every spin paid
            assertTrue(g.shouldSpin(), "window " + w);
        }
        assertEquals(10, g.decisions());
    }

    @Test
    void shouldStopSpinningWhenTheThreadWaitsForACpuAndResumeAfterACoolDownOnceQuiet() {
        window(1_000_000, 200_000, SpinGovernor.WINDOW); // 20% of the time in a run queue
        assertFalse(g.shouldSpin(), "preempted: stop spinning even though spins found work");
        window(1_000_000, 0, 0); // quiet again: cool-down of one window ends, trial begins
        assertTrue(g.shouldSpin());
        window(1_000_000, 200_000, SpinGovernor.WINDOW); // the trial is preempted again
        assertFalse(g.shouldSpin());
        window(1_000_000, 0, 0);
        assertFalse(g.shouldSpin(), "second failure: the cool-down doubled to two windows");
        window(1_000_000, 0, 0);
        assertTrue(g.shouldSpin());
    }

    @Test
    void shouldNotResumeSpinningWhileTheMachineStaysLoaded() {
        window(1_000_000, 500_000, SpinGovernor.WINDOW);
        assertFalse(g.shouldSpin());
        for (int w = 0; w < 200; w++) {
            window(1_000_000, 20_000, 0); // 2% run-queue wait: above the 1% needed to try again
            assertFalse(g.shouldSpin(), "window " + w);
        }
    }

    @Test
    void shouldStopSpinningWhenSpinsRarelyFindWorkEvenOnAnIdleMachine() {
        window(1_000_000, 0, SpinGovernor.WINDOW / 8); // 1 in 8 spins found work: below 1 in 4
        assertFalse(g.shouldSpin());
    }

    @Test
    void shouldDecideAfterTwentyMillisecondsOnASlowChannel() {
        for (int i = 0; i < SpinGovernor.MIN_EPISODES - 1; i++) {
            now += 10_000_000; // a 100 IOPS disk at QD1
            runQueueWait += 5_000_000;
            g.episodeEnded(true);
        }
        assertEquals(0, g.decisions(), "fewer than 8 episodes: no decision yet");
        now += 10_000_000;
        runQueueWait += 5_000_000;
        g.episodeEnded(true);
        assertEquals(1, g.decisions());
        assertFalse(g.shouldSpin(), "half the time in a run queue");
    }

    @Test
    void shouldDecideOnSpinHitsAloneWithoutSchedstat() {
        SpinGovernor blind = new SpinGovernor(() -> -1, () -> now);
        blind.episodeEnded(true);
        for (int w = 0; w < 3; w++) {
            for (int i = 0; i < SpinGovernor.WINDOW; i++) {
                now += 1_000;
                blind.episodeEnded(true);
            }
        }
        assertTrue(blind.shouldSpin());
        for (int i = 0; i < SpinGovernor.WINDOW; i++) {
            blind.episodeEnded(false);
        }
        assertFalse(blind.shouldSpin());
    }

    @Test
    void shouldReadTheRunQueueWaitOfTheCallingThreadFromSchedstat() {
        long w = new ThreadSchedstat().waitNanos();
        assertTrue(w >= 0 || !java.nio.file.Files.exists(java.nio.file.Path.of("/proc/thread-self/schedstat")), "wait " + w);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocateFrom("123456 7890123 42\n");
            assertEquals(7_890_123L, ThreadSchedstat.parseSecondField(s, s.byteSize() - 1));
            MemorySegment one = a.allocateFrom("5");
            assertEquals(-1, ThreadSchedstat.parseSecondField(one, 1));
        }
    }

    @Test
    void shouldSleepAfterTheShortSpinWhileTheGovernorSaysSpinningDoesNotPay() {
        try (Arena a = Arena.ofConfined(); EventFd doorbell = EventFd.create()) {
            MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
            VmbusRing.initialise(control);
            VmbusRing rx = new VmbusRing(control, a.allocate(4096, 4096), 4096, Doorbell.NONE);
            DoorbellIdleStrategy s = new DoorbellIdleStrategy(rx, doorbell, 2_000, 20, 1_000, g);
            window(1_000_000, 900_000, SpinGovernor.WINDOW);
            assertFalse(g.shouldSpin());
            doorbell.signal();
            int calls = 0;
            while (s.sleeps() == 0) {
                s.idle(0);
                calls++;
            }
            assertEquals(65, calls, "the efficiency spin (64), then sleep, instead of 2 000 spins and 20 yields");
            long before = g.decisions();
            for (int i = 0; i < SpinGovernor.WINDOW; i++) {
                s.idle(0);
                s.idle(1); // each episode (idle, then work) reports to the governor
            }
            assertEquals(before + 1, g.decisions());
        }
    }
}
