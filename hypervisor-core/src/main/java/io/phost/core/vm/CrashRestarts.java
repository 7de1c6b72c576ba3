package io.phost.core.vm;

import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The {@code on_crash} policy of one partition, process or VM: counts crashes in a row and says what a crash
 * turns into. Not thread-safe: the owning partition calls it holding its own monitor.
 * <pre>
 *   crash ─▶ in a row (1 again if it ran for stableAfter) ─▶ >= maxConsecutive ─▶ FAULTED (left alone)
 *                                                         └▶ otherwise CRASHED ─ RESTART: start again after
 *                                                                               backoff.delay(in a row)
 *                                                                            └ STOP: stay CRASHED
 * </pre>
 */
public final class CrashRestarts {
    /** What one crash turns into; {@code restartAfter} is null when the partition stays put. */
    public record Outcome(int inARow, boolean faulted, Duration restartAfter) {}

    private static final ScheduledExecutorService TIMER = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "partition-restart-timer");
        t.setDaemon(true);
        return t;
    });

    private final VmSpec.CrashPolicy policy;
    private final RestartBackoff backoff;
    private int inARow;
    private long runningSinceNanos;

    public CrashRestarts(VmSpec.CrashPolicy policy, RestartBackoff backoff) {
        if (policy == null || backoff == null) {
            throw new IllegalArgumentException("on_crash policy and backoff are required");
        }
        this.policy = policy;
        this.backoff = backoff;
    }

    public VmSpec.CrashPolicy policy() {
        return policy;
    }

    /** A user start: the streak begins again. */
    public void reset() {
        inARow = 0;
        runningSinceNanos = 0;
    }

    /** The partition is up (a crash after {@code stableAfter} from now starts a new streak). */
    public void running() {
        runningSinceNanos = System.nanoTime();
    }

    /** Runs a policy restart after {@code delay} on the one restart timer thread (cancel the future to call it off). */
    public static ScheduledFuture<?> schedule(Runnable restart, Duration delay) {
        return TIMER.schedule(restart, delay.toNanos(), TimeUnit.NANOSECONDS);
    }

    /** Records a crash and says what to do. */
    public Outcome crashed() {
        boolean stable = runningSinceNanos != 0 && System.nanoTime() - runningSinceNanos >= backoff.stableAfter().toNanos();
        runningSinceNanos = 0;
        inARow = stable ? 1 : inARow + 1;
        if (inARow >= backoff.maxConsecutive()) {
            return new Outcome(inARow, true, null);
        }
        return new Outcome(inARow, false, policy == VmSpec.CrashPolicy.RESTART ? backoff.delay(inARow) : null);
    }
}
