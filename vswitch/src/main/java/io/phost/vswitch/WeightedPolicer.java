package io.phost.vswitch;

/**
 * Polices what the switch sends to a capped port and shares the cap among the ports sending to it by their
 * minimum-bandwidth weight (Hyper-V's weight mode, where the bottleneck is the destination, not the switch core).
 * <pre>
 *   active(s):  s sent to this port within the last ACTIVE_NANOS; W = sum of the active senders' weights
 *   credit(s) += elapsed * rate * weight(s) / W          (bytes; at most burst * weight(s) / W)
 *   overflow of a full credit(s) ─▶ spare pool (at most burst): what a sender below its share leaves unused
 *   admit a frame of n bytes from s:  credit(s) >= n ? take it : spare >= n ? borrow it : drop (BANDWIDTH)
 * </pre>
 * Under contention every sender gets rate × weight / W; a lone sender (W = its own weight) gets the whole rate,
 * and what a sender leaves unused flows to the others through the spare pool, so the cap is work conserving.
 * A sender that stops is forgotten after {@link #ACTIVE_NANOS}, and its share goes back to the others; its
 * unused credit, and the rate of any time nobody sent, go to the spare pool, so a TCP sender that paused for a
 * retransmission timeout comes back to a full bucket, as with a plain token bucket (not to an empty one, which
 * would drop its first segment and double the timeout again).
 * One thread (the switch's); preallocated per-sender state indexed by port slot, nothing allocated per frame.
 */
final class WeightedPolicer {
    /** A sender counts as competing for this long after its last frame. */
    static final long ACTIVE_NANOS = 100_000_000L;
    private static final long SWEEP_NANOS = 10_000_000L;

    private final double bytesPerNano;
    private final double burst;
    private final double[] credit = new double[VSwitch.MAX_PORTS];
    private final long[] lastRefill = new long[VSwitch.MAX_PORTS];
    private final long[] lastSeen = new long[VSwitch.MAX_PORTS];
    private final int[] weightOf = new int[VSwitch.MAX_PORTS];
    private final int[] active = new int[VSwitch.MAX_PORTS];
    private int activeCount;
    private int activeWeight;
    private double spare;
    private long lastSweep;
    /** When the last active sender was last seen (meaningful while none is active). */
    private long idleSince;

    /** {@code bytesPerSecond} > 0; {@code burst} bytes of depth shared by all senders. */
    WeightedPolicer(long bytesPerSecond, long burst, long now) {
        if (bytesPerSecond <= 0 || burst <= 0) {
            throw new IllegalArgumentException("rate " + bytesPerSecond + " burst " + burst);
        }
        this.bytesPerNano = bytesPerSecond / 1e9;
        this.burst = burst;
        this.spare = burst;
        this.lastSweep = now;
        this.idleSince = now;
    }

    long bytesPerSecond() {
        return Math.round(bytesPerNano * 1e9);
    }

    /** Takes {@code bytes} of the cap for a frame from the port in slot {@code from} with {@code weight}. */
    boolean tryAdmit(int from, int weight, int bytes, long now) {
        if (now - lastSweep >= SWEEP_NANOS) {
            lastSweep = now;
            expire(now);
        }
        if (activeCount == 0 && now > idleSince) {
            spare = Math.min(burst, spare + (now - idleSince) * bytesPerNano); // nobody used the rate meanwhile
            idleSince = now;
        }
        if (weightOf[from] == 0) {
            weightOf[from] = weight;
            activeWeight += weight;
            active[activeCount++] = from;
            credit[from] = 0;
            lastRefill[from] = now;
        } else if (weightOf[from] != weight) {
            activeWeight += weight - weightOf[from]; // the sender was reconfigured
            weightOf[from] = weight;
        }
        lastSeen[from] = now;
        refill(from, now);
        if (credit[from] >= bytes) {
            credit[from] -= bytes;
            return true;
        }
        if (spare >= bytes) {
            spare -= bytes;
            return true;
        }
        return false;
    }

    private void refill(int from, long now) {
        long elapsed = Math.min(now - lastRefill[from], ACTIVE_NANOS);
        lastRefill[from] = now;
        if (elapsed <= 0) {
            return;
        }
        double share = (double) weightOf[from] / activeWeight;
        double c = credit[from] + elapsed * bytesPerNano * share;
        double cap = burst * share;
        if (c > cap) {
            spare = Math.min(burst, spare + c - cap); // a sender below its share: the rest is anyone's
            c = cap;
        }
        credit[from] = c;
    }

    /** Forgets senders that stopped: their weight no longer divides the rate. */
    private void expire(long now) {
        for (int i = activeCount - 1; i >= 0; i--) {
            int s = active[i];
            if (now - lastSeen[s] > ACTIVE_NANOS) {
                leave(i, lastSeen[s]);
            }
        }
    }

    /** The port in {@code slot} left the switch: its state must not be inherited by the next port there. */
    void forget(int slot) {
        for (int i = 0; i < activeCount; i++) {
            if (active[i] == slot) {
                leave(i, lastSeen[slot]);
                return;
            }
        }
    }

    /** The sender at {@code active[i]}, last seen at {@code seen}, stops competing; its credit becomes spare. */
    private void leave(int i, long seen) {
        int s = active[i];
        spare = Math.min(burst, spare + credit[s]);
        credit[s] = 0;
        activeWeight -= weightOf[s];
        weightOf[s] = 0;
        active[i] = active[--activeCount];
        if (activeCount == 0) {
            idleSince = Math.max(idleSince, seen);
        }
    }
}
