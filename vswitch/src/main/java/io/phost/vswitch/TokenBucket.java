package io.phost.vswitch;

/**
 * A token bucket in integer arithmetic, allocation-free, for one thread. Tokens are kept scaled by 1e9 so a
 * rate in units per second refills exactly {@code rate} scaled tokens per nanosecond.
 * <pre>
 *   tokens(now) = min(burst, tokens(last) + (now - last) * rate / 1e9)
 *   tryConsume(n): n <= tokens ? take n : refuse (policing: storm limit)
 *   consume(n):    take n, may go negative; ready() stays false until the debt is repaid (shaping)
 * </pre>
 */
public final class TokenBucket {
    private static final long SCALE = 1_000_000_000L;
    private final long rate;
    private final long capacityScaled;
    private final long fullNanos;
    private long tokensScaled;
    private long lastNanos;

    /** {@code ratePerSecond} > 0 units per second, {@code burst} units of depth. */
    public TokenBucket(long ratePerSecond, long burst, long nowNanos) {
        if (ratePerSecond <= 0 || burst <= 0 || burst > Long.MAX_VALUE / SCALE) {
            throw new IllegalArgumentException("rate " + ratePerSecond + " burst " + burst);
        }
        this.rate = ratePerSecond;
        this.capacityScaled = burst * SCALE;
        this.fullNanos = Math.max(1, capacityScaled / ratePerSecond + 1);
        this.tokensScaled = capacityScaled;
        this.lastNanos = nowNanos;
    }

    public long ratePerSecond() {
        return rate;
    }

    private void refill(long now) {
        long elapsed = now - lastNanos;
        if (elapsed <= 0) {
            return;
        }
        lastNanos = now;
        long add = Math.min(elapsed, fullNanos) * rate;
        long t = tokensScaled + add;
        tokensScaled = t > capacityScaled ? capacityScaled : t;
    }

    /** Takes {@code n} tokens if available. */
    public boolean tryConsume(long n, long now) {
        refill(now);
        long cost = n * SCALE;
        if (tokensScaled >= cost) {
            tokensScaled -= cost;
            return true;
        }
        return false;
    }

    /** Takes {@code n} tokens, going into debt if needed. */
    public void consume(long n, long now) {
        refill(now);
        tokensScaled -= n * SCALE;
    }

    /** False while in debt. */
    public boolean ready(long now) {
        refill(now);
        return tokensScaled >= 0;
    }
}
