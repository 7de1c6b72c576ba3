package io.phost.core.vmbus;

import java.util.concurrent.atomic.AtomicIntegerArray;
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
 *       the last window was below 1/{@link #QUIET_FRACTION}. A trial is judged after its first
 *       {@link #MIN_EPISODES} episodes: a thread that sleeps between requests rarely waits for a CPU, so the
 *       quiet test passes under load too, and only spinning shows what spinning costs (issue 19, section 12
 *       of docs/benchmarks.md: 4–6 full-window trials per bench point at load 30).</li>
 * </ul>
 * A governor starts in the state its thread's previous one left (a guest thread that opens a new queue); a
 * thread without one (a new channel's agent) starts not spinning and waits its side's (host agents' or
 * guests') current back-off before its first trial: one window where spinning pays, up to
 * {@link #MAX_COOLDOWN} where trials keep failing (a trial per new channel cost 4-21% spinning under load).
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
    /**
     * Longest cool-down, in windows, before another trial of spinning: under sustained contention a trial
     * every ~1,024 windows (20 s at QD1 on a loaded disk, well under 1 s on a busy channel) instead of 64.
     */
    static final int MAX_COOLDOWN = 1_024;

    /**
     * A spinning thread whose run-queue waits average at most this much per switch-in is woken late, not
     * preempted, and keeps spinning (issue 19, eleventh session). A thread that blocks in the kernel once per
     * request (a QD1 disk read on the agent: one {@code preadv} each) is woken once per request, and each
     * wake-up waits a little on a run queue even on an idle machine: the VSP agent measured 1.7-3.8 µs per I/O
     * in the quiet slot (9.7 in one disturbed run). At QD1 (~55 µs per I/O) that alone is above 5% of a
     * window, so spinning stopped on a quiet machine (spin share 0.40-0.46, 20-29 "contended" stops per disk
     * point) and every later hand-off woke a sleeping thread. A preemption waits a time slice (a millisecond
     * or more), so a preempted spinner's average is far above this: one 1 ms preemption among 64 wake-ups
     * of 4 µs averages 19 µs. Only the decision to stop uses it: the
     * decision to try again still needs a window with under 1% run-queue wait, because a sleeping thread's
     * wake-ups are short on a loaded machine too (a first version that excused them in both decisions kept
     * trying to spin at load 23-29: tmpfs QD1 agent run-queue wait 28-34 µs per I/O against 7-8).
     */
    static final long WAKE_ALLOWANCE_NANOS = 10_000;

    /**
     * Cumulative ns the calling thread spent runnable but not running; negative when unknown. Optionally the
     * number of times it was switched in, read in the same sample (the third field of schedstat).
     */
    @FunctionalInterface
    public interface RunQueueProbe {
        long waitNanos();

        /** Switch-ins (times run on a CPU) as of the last {@link #waitNanos} call; negative when unknown. */
        default long switchIns() {
            return -1;
        }
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

    /** Where a governor leaves its state for the next one on the same thread. */
    static final class ThreadState {
        boolean spin;
        boolean trial;
        int cooldown;
        int cooldownLength;
    }

    /** What governors remember: each thread's last state, and each side's last cool-down length (new threads). */
    static final class Memory {
        final ThreadLocal<ThreadState> threads = new ThreadLocal<>();
        final AtomicIntegerArray sideCooldown = new AtomicIntegerArray(new int[] {1, 1});
    }

    private static final Memory PROCESS = new Memory();

    private final RunQueueProbe probe;
    private final LongSupplier clock;
    private final Memory memory;
    /** Counted with the host agents ({@link #forHostThread}) rather than by the thread's name. */
    private final boolean hostByRole;
    private ThreadState state;
    private boolean spin;
    private boolean trial;
    private int episodes;
    private int paid;
    private long windowStart = Long.MIN_VALUE;
    private long waitAtStart;
    private long switchInsAtStart;
    private int cooldown;
    private int cooldownLength;
    private long decisions;
    /** Offset into {@link #TOTALS}: host agent or guest, known from the thread's name at its first episode. */
    private int side;

    public SpinGovernor(RunQueueProbe probe, LongSupplier clock) {
        this(probe, clock, PROCESS);
    }

    /** As above, remembering states in {@code memory} (tests give each case its own). */
    SpinGovernor(RunQueueProbe probe, LongSupplier clock, Memory memory) {
        this(probe, clock, memory, false);
    }

    private SpinGovernor(RunQueueProbe probe, LongSupplier clock, Memory memory, boolean host) {
        this.probe = probe;
        this.clock = clock;
        this.memory = memory;
        this.hostByRole = host;
    }

    /** Probes whichever thread calls {@link #episodeEnded} (its own schedstat) with {@link System#nanoTime()}. */
    public static SpinGovernor forPollingThread() {
        return new SpinGovernor(new ThreadSchedstat(), System::nanoTime);
    }

    /**
     * As {@link #forPollingThread}, counted with the host agents whatever the thread's name: a back-end thread of
     * the host that is not a VMBus agent (a vhost-user queue worker, {@code <disk>-q<N>}).
     */
    public static SpinGovernor forHostThread() {
        return new SpinGovernor(new ThreadSchedstat(), System::nanoTime, PROCESS, true);
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
            adoptThreadState();
            long wait = probe.waitNanos();
            startWindow(clock.getAsLong(), wait, probe.switchIns()); // the first episode of this thread: baseline
            return;
        }
        if (spinPaid) {
            paid++;
        }
        ++episodes;
        // A slow channel (a QD1 disk at tens of IOPS) decides on time rather than wait for 64 episodes;
        // the clock read is a vDSO call, no syscall, once per idle episode only.
        if (episodes >= WINDOW
            || (episodes >= MIN_EPISODES && (trial || clock.getAsLong() - windowStart >= WINDOW_NANOS))) {
            decide();
        }
    }

    /** Once, on the polling thread: continue where this thread's previous governor stopped. */
    private void adoptThreadState() {
        boolean host = hostByRole || Thread.currentThread().getName().startsWith("vsp-");
        side = host ? 0 : Totals.FIELDS;
        state = memory.threads.get();
        if (state == null) {
            state = new ThreadState();
            // the side's current back-off: 1 window while spinning pays there, longer after failed trials
            state.cooldownLength = memory.sideCooldown.get(host ? 0 : 1);
            state.cooldown = state.cooldownLength;
            memory.threads.set(state);
        }
        spin = state.spin;
        trial = state.trial;
        cooldown = state.cooldown;
        cooldownLength = state.cooldownLength;
    }

    private void decide() {
        long now = clock.getAsLong();
        long wait = probe.waitNanos();
        long switchIns = probe.switchIns();
        long elapsed = Math.max(1, now - windowStart);
        boolean known = wait >= 0 && waitAtStart >= 0; // unknown: decide on spin hits alone
        long waited = known ? wait - waitAtStart : 0;
        // woken late rather than preempted: waits that average a wake-up's latency per switch-in (unknown: preempted)
        long switched = switchIns >= 0 && switchInsAtStart >= 0 ? switchIns - switchInsAtStart : 0;
        boolean onlyWakeLatency = switched > 0 && waited <= switched * WAKE_ALLOWANCE_NANOS;
        TOTALS.addAndGet(side + (spin ? 0 : 1), elapsed);
        TOTALS.addAndGet(side + 5, waited);
        if (spin) {
            boolean contended = waited * CONTENDED_FRACTION > elapsed && !onlyWakeLatency;
            boolean missing = paid * MISS_FRACTION < episodes;
            if (contended || missing) {
                TOTALS.incrementAndGet(side + (contended ? 2 : 3));
                spin = false;
                cooldown = cooldownLength;
                cooldownLength = Math.min(MAX_COOLDOWN, cooldownLength * 2);
            } else {
                cooldownLength = 1; // a window of spinning that paid: the next back-off starts short
            }
            trial = false;
        } else if (--cooldown <= 0 && waited * QUIET_FRACTION < elapsed) {
            spin = true; // a trial: judged after its first MIN_EPISODES episodes
            trial = true;
            TOTALS.incrementAndGet(side + 4);
        }
        decisions++;
        state.spin = spin;
        state.trial = trial;
        state.cooldown = cooldown;
        state.cooldownLength = cooldownLength;
        memory.sideCooldown.set(side == 0 ? 0 : 1, cooldownLength);
        startWindow(now, wait, switchIns);
    }

    private void startWindow(long now, long wait, long switchIns) {
        windowStart = now;
        waitAtStart = wait;
        switchInsAtStart = switchIns;
        episodes = 0;
        paid = 0;
    }

    /** How many windows have been decided (status and tests). */
    public long decisions() {
        return decisions;
    }
}
