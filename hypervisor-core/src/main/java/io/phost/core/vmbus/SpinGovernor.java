package io.phost.core.vmbus;

import java.util.concurrent.atomic.AtomicLongArray;
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

    /** Process-wide totals per side ({@link #totals}): one atomic add per decided window, none per I/O. */
    private static final AtomicLongArray TOTALS = new AtomicLongArray(2 * Totals.FIELDS);

    /**
     * What the governors of one side (host agents {@code vsp-*}, or every other polling thread: guests) did,
     * summed over all of them since the process started: window time spent allowed to spin and not, the
     * decisions to stop (and why) and the trials of spinning again.
     */
    public record Totals(long spinNanos, long sleepNanos, long contendedStops, long missStops, long trials,
                         long waitNanos) {
        static final int FIELDS = 6;

        /** The share of governed time the threads were allowed to spin. */
        public double spinShare() {
            long all = spinNanos + sleepNanos;
            return all == 0 ? Double.NaN : (double) spinNanos / all;
        }

        public Totals minus(Totals o) {
            return new Totals(spinNanos - o.spinNanos, sleepNanos - o.sleepNanos, contendedStops - o.contendedStops,
                missStops - o.missStops, trials - o.trials, waitNanos - o.waitNanos);
        }
    }

    /** Totals of the host agents ({@code host}) or of the other polling threads. */
    public static Totals totals(boolean host) {
        int b = host ? 0 : Totals.FIELDS;
        return new Totals(TOTALS.get(b), TOTALS.get(b + 1), TOTALS.get(b + 2), TOTALS.get(b + 3), TOTALS.get(b + 4),
            TOTALS.get(b + 5));
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
    /** Offset into {@link #TOTALS}: host agent or guest, known from the thread's name at its first episode. */
    private int side;

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
            side = Thread.currentThread().getName().startsWith("vsp-") ? 0 : Totals.FIELDS;
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
        TOTALS.addAndGet(side + (spin ? 0 : 1), elapsed);
        TOTALS.addAndGet(side + 5, waited);
        if (spin) {
            boolean contended = waited * CONTENDED_FRACTION > elapsed;
            boolean missing = paid * MISS_FRACTION < episodes;
            if (contended || missing) {
                TOTALS.incrementAndGet(side + (contended ? 2 : 3));
                spin = false;
                cooldown = cooldownLength;
                cooldownLength = Math.min(MAX_COOLDOWN, cooldownLength * 2);
            } else {
                cooldownLength = 1; // a window of spinning that paid: the next back-off starts short
            }
        } else if (--cooldown <= 0 && waited * QUIET_FRACTION < elapsed) {
            spin = true; // a trial: the next window decides whether it pays
            TOTALS.incrementAndGet(side + 4);
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
