package io.phost.core.vmbus;

import java.util.function.LongSupplier;

/**
 * Decides whether a polling thread (a channel agent or a guest queue) may spin before it sleeps on its
 * doorbell: the {@link PollingMode#ADAPTIVE} policy. Spinning pays when the next packet arrives while the
 * thread still spins and the thread keeps its CPU; on a loaded machine the spinner is preempted and waits
 * in a run queue (milliseconds, measured in docs/benchmarks.md, issue 19) for a CPU the peer it waits for
 * needed, and sleeping in the kernel wins by orders of magnitude.
 * <p>
 * The thread reports the end of every idle episode (work found after idling) and whether its spin found
 * the work. Every {@link #WINDOW} episodes (or {@link #WINDOW_NANOS}, whichever ends first) the governor reads the thread's run-queue wait (one
 * {@code pread} of {@code /proc/thread-self/schedstat}) and the clock, and:
 * <ul>
 *   <li>while spinning: stops when the thread spent more than 1/{@link #CONTENDED_FRACTION} of the window
 *       waiting for a CPU, or when fewer than 1/{@link #MISS_FRACTION} of its spins found work;</li>
 *   <li>while sleeping: after a cool-down of 1, 2, 4 … {@link #MAX_COOLDOWN} windows (doubling with every
 *       failed trial, reset by a trial that paid) tries spinning again if the thread's run-queue wait in
 *       the last window was below 1/{@link #QUIET_FRACTION}.</li>
 * </ul>
 * Nothing is allocated and no syscall is made per I/O: the probe runs once per window of idle episodes.
 * Not thread-safe: one per polling thread.
 */
public final class SpinGovernor {
    /** Idle episodes between two decisions. */
    static final int WINDOW = 64;
    /** ... or this much time, once the window has at least {@link #MIN_EPISODES}. */
    static final long WINDOW_NANOS = 20_000_000L;
    static final int MIN_EPISODES = 8;
    /** Spinning stops when run-queue wait exceeds 1/20 (5%) of the window's wall time. */
    static final int CONTENDED_FRACTION = 20;
    /** Spinning may resume when run-queue wait is below 1/100 (1%) of the window's wall time. */
    static final int QUIET_FRACTION = 100;
    /** Spinning stops when fewer than 1/4 of the window's spins found work before the thread slept. */
    static final int MISS_FRACTION = 4;
    /** Longest cool-down, in windows, before another trial of spinning. */
    static final int MAX_COOLDOWN = 64;

    /** Cumulative ns the calling thread spent runnable but not running; negative when unknown. */
    @FunctionalInterface
    public interface RunQueueProbe {
        long waitNanos();
    }

    private final RunQueueProbe probe;
    private final LongSupplier clock;
    private boolean spin = true;
    private int episodes;
    private int paid;
    private long windowStart = Long.MIN_VALUE;
    private long waitAtStart;
    private int cooldown;
    private int cooldownLength = 1;
    private long decisions;

    public SpinGovernor(RunQueueProbe probe, LongSupplier clock) {
        this.probe = probe;
        this.clock = clock;
    }

    /** Probes whichever thread calls {@link #episodeEnded} (its own schedstat) with {@link System#nanoTime()}. */
    public static SpinGovernor forPollingThread() {
        return new SpinGovernor(new ThreadSchedstat(), System::nanoTime);
    }

    /** Whether the thread should spin before it sleeps (cheap: a field read). */
    public boolean shouldSpin() {
        return spin;
    }

    /**
     * An idle episode ended with work. {@code spinPaid}: the work was found while spinning, before the
     * thread slept on its doorbell.
     */
    public void episodeEnded(boolean spinPaid) {
        if (windowStart == Long.MIN_VALUE) {
            startWindow(clock.getAsLong(), probe.waitNanos()); // the first episode of this thread: baseline
            return;
        }
        if (spinPaid) {
            paid++;
        }
        ++episodes;
        // A slow channel (a QD1 disk at tens of IOPS) decides on time rather than wait for 64 episodes;
        // the clock read is a vDSO call, no syscall, once per idle episode only.
        if (episodes >= WINDOW || (episodes >= MIN_EPISODES && clock.getAsLong() - windowStart >= WINDOW_NANOS)) {
            decide();
        }
    }

    private void decide() {
        long now = clock.getAsLong();
        long wait = probe.waitNanos();
        long elapsed = Math.max(1, now - windowStart);
        boolean known = wait >= 0 && waitAtStart >= 0; // unknown: decide on spin hits alone
        long waited = known ? wait - waitAtStart : 0;
        if (spin) {
            boolean contended = waited * CONTENDED_FRACTION > elapsed;
            boolean missing = paid * MISS_FRACTION < episodes;
            if (contended || missing) {
                spin = false;
                cooldown = cooldownLength;
                cooldownLength = Math.min(MAX_COOLDOWN, cooldownLength * 2);
            } else {
                cooldownLength = 1; // a window of spinning that paid: the next back-off starts short
            }
        } else if (--cooldown <= 0 && waited * QUIET_FRACTION < elapsed) {
            spin = true; // a trial: the next window decides whether it pays
        }
        decisions++;
        startWindow(now, wait);
    }

    private void startWindow(long now, long wait) {
        windowStart = now;
        waitAtStart = wait;
        episodes = 0;
        paid = 0;
    }

    /** How many windows have been decided (status and tests). */
    public long decisions() {
        return decisions;
    }
}
