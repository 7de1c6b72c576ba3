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
    private final SpinGovernor.Memory memory = new SpinGovernor.Memory();
    private final SpinGovernor g = governor();

    SpinGovernorTest() {
        g.episodeEnded(true); // the thread's first episode only takes the baseline
    }

    private SpinGovernor governor() {
        return new SpinGovernor(() -> runQueueWait, () -> now, memory);
    }

    /** One window of episodes lasting {@code wallNanos}, of which the thread waited {@code waitNanos} for a CPU. */
    private void window(long wallNanos, long waitNanos, int paidEpisodes) {
        episodes(g, SpinGovernor.WINDOW, wallNanos, waitNanos, paidEpisodes);
    }

    /** A trial's window: decided after {@link SpinGovernor#MIN_EPISODES} episodes. */
    private void trial(long wallNanos, long waitNanos, int paidEpisodes) {
        episodes(g, SpinGovernor.MIN_EPISODES, wallNanos, waitNanos, paidEpisodes);
    }

    private void episodes(SpinGovernor gov, int n, long wallNanos, long waitNanos, int paidEpisodes) {
        for (int i = 0; i < n; i++) {
            now += wallNanos / n;
            runQueueWait += waitNanos / n;
            gov.episodeEnded(i < paidEpisodes);
        }
    }

    /** From the fresh state (not spinning): one quiet window starts a trial, which pays. */
    private void startSpinning() {
        window(1_000_000, 0, 0);
        assertTrue(g.shouldSpin(), "a quiet window after the first starts a trial");
        trial(100_000, 0, SpinGovernor.MIN_EPISODES);
        assertTrue(g.shouldSpin(), "the trial paid");
    }

    @Test
    void shouldStartNotSpinningAndTrySpinningAfterOneQuietWindow() {
        assertFalse(g.shouldSpin(), "a new thread starts as efficiency does");
        window(1_000_000, 0, 0);
        assertTrue(g.shouldSpin());
    }

    @Test
    void shouldJudgeATrialAfterItsFirstEightEpisodes() {
        window(1_000_000, 0, 0);
        assertTrue(g.shouldSpin());
        long before = g.decisions();
        // 100 µs episodes, half of it in a run queue: long before a 20 ms or 64-episode window would end
        episodes(g, SpinGovernor.MIN_EPISODES - 1, 700_000, 350_000, SpinGovernor.MIN_EPISODES - 1);
        assertEquals(before, g.decisions(), "seven episodes: not judged yet");
        assertTrue(g.shouldSpin());
        episodes(g, 1, 100_000, 50_000, 1);
        assertEquals(before + 1, g.decisions(), "judged after eight episodes (0.8 ms), not a full window");
        assertFalse(g.shouldSpin(), "the trial waited for a CPU half the time");
    }

    @Test
    void shouldKeepSpinningWhileSpinsFindWorkAndTheThreadKeepsItsCpu() {
        startSpinning();
        for (int w = 0; w < 10; w++) {
            window(1_000_000, 10_000, SpinGovernor.WINDOW); // 1% run-queue wait, every spin paid
            assertTrue(g.shouldSpin(), "window " + w);
        }
        assertEquals(12, g.decisions());
    }

    @Test
    void shouldStopSpinningWhenTheThreadWaitsForACpuAndResumeAfterACoolDownOnceQuiet() {
        startSpinning();
        window(1_000_000, 200_000, SpinGovernor.WINDOW); // 20% of the time in a run queue
        assertFalse(g.shouldSpin(), "preempted: stop spinning even though spins found work");
        window(1_000_000, 0, 0); // quiet again: cool-down of one window ends, trial begins
        assertTrue(g.shouldSpin());
        trial(100_000, 20_000, SpinGovernor.MIN_EPISODES); // the trial is preempted again
        assertFalse(g.shouldSpin());
        window(1_000_000, 0, 0);
        assertFalse(g.shouldSpin(), "second failure: the cool-down doubled to two windows");
        window(1_000_000, 0, 0);
        assertTrue(g.shouldSpin());
    }

    @Test
    void shouldCapTheCoolDownAtAbout1024Windows() {
        startSpinning();
        window(1_000_000, 200_000, SpinGovernor.WINDOW);
        int expected = 1;
        for (int trials = 0; trials < 14; trials++) {
            int windows = quietUntilTrial(g);
            assertEquals(expected, windows, "cool-down before trial " + trials);
            expected = Math.min(SpinGovernor.MAX_COOLDOWN, expected * 2);
            trial(100_000, 20_000, SpinGovernor.MIN_EPISODES); // every trial is preempted
            assertFalse(g.shouldSpin());
        }
        assertEquals(1_024, SpinGovernor.MAX_COOLDOWN);
    }

    @Test
    void shouldNotResumeSpinningWhileTheMachineStaysLoaded() {
        startSpinning();
        window(1_000_000, 500_000, SpinGovernor.WINDOW);
        assertFalse(g.shouldSpin());
        for (int w = 0; w < 200; w++) {
            window(1_000_000, 20_000, 0); // 2% run-queue wait: above the 1% needed to try again
            assertFalse(g.shouldSpin(), "window " + w);
        }
    }

    @Test
    void shouldStartANewQueueInTheStateItsThreadLastHad() {
        startSpinning();
        SpinGovernor spinningQueue = governor();
        assertFalse(spinningQueue.shouldSpin(), "nothing known before the queue's first episode");
        spinningQueue.episodeEnded(true);
        assertTrue(spinningQueue.shouldSpin(), "the thread's last governor was spinning and it paid");

        episodes(spinningQueue, SpinGovernor.WINDOW, 1_000_000, 200_000, SpinGovernor.WINDOW);
        assertFalse(spinningQueue.shouldSpin());
        episodes(spinningQueue, SpinGovernor.WINDOW, 1_000_000, 0, 0);
        assertTrue(spinningQueue.shouldSpin(), "trial");
        episodes(spinningQueue, SpinGovernor.MIN_EPISODES, 100_000, 20_000, SpinGovernor.MIN_EPISODES);
        assertFalse(spinningQueue.shouldSpin(), "failed trial: the next cool-down is two windows");

        SpinGovernor next = governor(); // a bench round's new queue on the same thread
        next.episodeEnded(true);
        assertFalse(next.shouldSpin(), "starts where the last queue stopped: not spinning");
        episodes(next, SpinGovernor.WINDOW, 1_000_000, 0, 0);
        assertFalse(next.shouldSpin(), "and inherits its cool-down (two windows), not a fresh trial");
        episodes(next, SpinGovernor.WINDOW, 1_000_000, 0, 0);
        assertTrue(next.shouldSpin());
    }

    /** Windows a governor on a new thread (named as a guest's) waits before its first trial of spinning. */
    private int newThreadWindowsToFirstTrial() throws InterruptedException {
        int[] windows = {-1};
        Thread t = new Thread(() -> {
            SpinGovernor fresh = governor();
            fresh.episodeEnded(true);
            windows[0] = fresh.shouldSpin() ? 0 : quietUntilTrial(fresh);
        }, "guest-2");
        t.start();
        t.join();
        return windows[0];
    }

    @Test
    void shouldStartANewThreadOneWindowBeforeATrialWhereSpinningPays() throws Exception {
        startSpinning();
        assertEquals(1, newThreadWindowsToFirstTrial());
    }

    @Test
    void shouldStartANewThreadWithItsSidesBackOffWhereTrialsFail() throws Exception {
        startSpinning();
        window(1_000_000, 200_000, SpinGovernor.WINDOW); // first failure: next back-off 2 windows
        for (int fails = 0; fails < 4; fails++) { // four failed trials: back-off 4, 8, 16, 32
            quietUntilTrial(g);
            trial(100_000, 20_000, SpinGovernor.MIN_EPISODES);
            assertFalse(g.shouldSpin());
        }
        assertEquals(32, newThreadWindowsToFirstTrial(), "a new channel under sustained contention: no trial for 32 windows");
    }

    /** Quiet 20 ms windows of {@link SpinGovernor#MIN_EPISODES} episodes until a trial starts; how many. */
    private int quietUntilTrial(SpinGovernor gov) {
        int windows = 0;
        while (!gov.shouldSpin() && windows < 5_000) {
            episodes(gov, SpinGovernor.MIN_EPISODES, SpinGovernor.WINDOW_NANOS, 0, 0);
            windows++;
        }
        return windows;
    }

    @Test
    void shouldStopSpinningWhenSpinsRarelyFindWorkEvenOnAnIdleMachine() {
        startSpinning();
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
        assertFalse(g.shouldSpin(), "half the time in a run queue: no trial");
    }

    @Test
    void shouldDecideOnSpinHitsAloneWithoutSchedstat() {
        SpinGovernor blind = new SpinGovernor(() -> -1, () -> now, new SpinGovernor.Memory());
        blind.episodeEnded(true);
        episodes(blind, SpinGovernor.WINDOW, 64_000, 0, 0);
        assertTrue(blind.shouldSpin(), "no run-queue wait known: a trial");
        episodes(blind, SpinGovernor.MIN_EPISODES, 8_000, 0, SpinGovernor.MIN_EPISODES);
        episodes(blind, SpinGovernor.WINDOW, 64_000, 0, SpinGovernor.WINDOW);
        assertTrue(blind.shouldSpin());
        episodes(blind, SpinGovernor.WINDOW, 64_000, 0, 0);
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
            assertEquals(42L, ThreadSchedstat.parseField(s, s.byteSize() - 1, 3), "switch-ins");
            assertEquals(-1, ThreadSchedstat.parseField(one, 1, 3));
        }
        ThreadSchedstat live = new ThreadSchedstat();
        if (live.waitNanos() >= 0) {
            assertTrue(live.switchIns() > 0, "this thread has run: switch-ins " + live.switchIns());
        }
    }

    /**
     * Issue 19 (eleventh session): a QD1 disk agent blocks in preadv once per request and waits a few µs on a run
     * queue at each wake-up even on an idle machine; that is not contention and must not stop spinning, while the
     * same wait in a few long slices (preemptions) still does; trying to spin again still needs a quiet window.
     */
    @Test
    void shouldNotHoldWakeUpLatencyAgainstSpinningButStillStopOnPreemption() {
        long[] switchIns = {0};
        SpinGovernor gov = new SpinGovernor(new SpinGovernor.RunQueueProbe() {
            @Override
            public long waitNanos() {
                return runQueueWait;
            }

            @Override
            public long switchIns() {
                return switchIns[0];
            }
        }, () -> now, new SpinGovernor.Memory());
        gov.episodeEnded(true);
        episodes(gov, SpinGovernor.WINDOW, 1_000_000, 0, 0);
        assertTrue(gov.shouldSpin(), "a quiet window starts a trial");
        // a 55 µs QD1 disk I/O per episode, each ending in a wake-up that waited 4 µs: 7% of the window
        for (int w = 0; w < 5; w++) {
            int n = w == 0 ? SpinGovernor.MIN_EPISODES : SpinGovernor.WINDOW;
            for (int i = 0; i < n; i++) {
                now += 55_000;
                runQueueWait += 4_000;
                switchIns[0]++;
                gov.episodeEnded(true);
            }
            assertTrue(gov.shouldSpin(), "window " + w + ": wake-up latency is not contention");
        }
        // the same 7% in two slices of a time slice each: preempted
        for (int i = 0; i < SpinGovernor.WINDOW; i++) {
            now += 55_000;
            if (i % 32 == 0) {
                runQueueWait += 128_000;
                switchIns[0]++;
            }
            gov.episodeEnded(true);
        }
        assertFalse(gov.shouldSpin(), "two 128 µs waits in 3.5 ms: contention");
        // not spinning: short wake-ups that add up to more than 1% of a window still keep it from trying again
        // (on a loaded machine a sleeping thread's wake-ups are short too)
        for (int w = 0; w < 4; w++) {
            for (int i = 0; i < SpinGovernor.WINDOW; i++) {
                now += 55_000;
                runQueueWait += 4_000;
                switchIns[0]++;
                gov.episodeEnded(false);
            }
            assertFalse(gov.shouldSpin(), "window " + w + " after the stop: 7% run-queue wait is not quiet");
        }
    }

    @Test
    void shouldSleepAfterTheShortSpinWhileTheGovernorSaysSpinningDoesNotPay() {
        try (Arena a = Arena.ofConfined(); EventFd doorbell = EventFd.create()) {
            MemorySegment control = a.allocate(RingDescriptor.CONTROL_LENGTH, 4096);
            VmbusRing.initialise(control);
            VmbusRing rx = new VmbusRing(control, a.allocate(4096, 4096), 4096, Doorbell.NONE);
            DoorbellIdleStrategy s = new DoorbellIdleStrategy(rx, doorbell, 2_000, 20, 1_000, g);
            window(1_000_000, 900_000, SpinGovernor.WINDOW); // a new thread starts not spinning; no trial
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
