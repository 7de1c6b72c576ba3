package io.phost.qos;

/** A clock that only moves when told to: simulations and tests drive it. Safe to read from any thread. */
public final class ManualNanoClock implements NanoClock {
    private volatile long now;

    public ManualNanoClock(long startNanos) {
        this.now = startNanos;
    }

    @Override
    public long nanoTime() {
        return now;
    }

    public void set(long nanos) {
        now = nanos;
    }

    public void advance(long nanos) {
        now += nanos;
    }
}
