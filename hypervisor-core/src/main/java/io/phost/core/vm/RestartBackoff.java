package io.phost.core.vm;

import java.time.Duration;

/**
 * Delay before the n-th consecutive automatic restart: {@code first * 2^(n-1)}, capped at {@code max}. A VM
 * that stayed up for {@code stableAfter} before it crashed starts again from the first delay; after
 * {@code maxConsecutive} crashes in a row it is FAULTED and left alone (as a process partition is after
 * too many guest faults).
 */
public record RestartBackoff(Duration first, Duration max, Duration stableAfter, int maxConsecutive) {
    public RestartBackoff {
        if (first.isNegative() || max.compareTo(first) < 0 || maxConsecutive < 1) {
            throw new IllegalArgumentException("restart backoff: 0 <= first <= max and maxConsecutive >= 1");
        }
    }

    public static RestartBackoff defaults() {
        return new RestartBackoff(Duration.ofSeconds(1), Duration.ofSeconds(60), Duration.ofSeconds(60), 8);
    }

    /** The delay before restart number {@code consecutive} (1-based). */
    public Duration delay(int consecutive) {
        int shift = Math.min(30, Math.max(0, consecutive - 1));
        long nanos = first.toNanos();
        long d = nanos > (Long.MAX_VALUE >> shift) ? Long.MAX_VALUE : nanos << shift;
        return Duration.ofNanos(Math.min(d, max.toNanos()));
    }
}
