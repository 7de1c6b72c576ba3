package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The limit, bandwidth and reservation tags of one policy instance: a dedicated policy has one bucket per
 * flow, an aggregated policy one bucket shared by all its flows. Tags are GCRA "theoretical arrival
 * times" in nanoseconds: a tag at or before {@code now} means the bucket may go.
 *
 * <pre>
 *   limit tag L    ──●────────●────────●──▶ time     each admitted unit pushes L by 1/maxIops
 *                    admit    admit    admit         admit only when L <= now  (exact, CAS)
 *   reservation R  the same at 1/minIops; R <= now means "behind its minimum": skip the busy-device gate
 *   clamp          a tag never lags now by more than its slack, so idle time is not banked (a flow
 *                  that was told to wait and returns late gets the longer backlog slack); the
 *                  reservation tag never leads by more than its slack, so service far above the
 *                  minimum does not delay the next time the flow counts as "behind"
 * </pre>
 */
final class PolicyBucket {
    /** Immutable rates; swapped whole when a policy changes so the tags keep their history. */
    record Rates(long limitNanosPerUnit, long bandwidthBytesPerSec, long reservationNanosPerUnit,
                 long limitSlackNanos, long backlogSlackNanos, long reservationSlackNanos, long minIops, long maxIops) {
        static Rates of(QosPolicy p, QosConfig c) {
            long limitInc = p.maxIops() == 0 ? 0 : ceilDiv(1_000_000_000L, p.maxIops());
            long resInc = p.minIops() == 0 ? 0 : Math.max(1, 1_000_000_000L / p.minIops());
            // A backlogged flow woken late may catch up within the slack; at least one I/O so a slow
            // limit (100 IOPS) does not lose a whole interval to timer jitter.
            long slack = Math.min(Math.max(c.limitBurstNanos(), limitInc), 100_000_000L);
            // A flow that was told to wait and comes back late (a descheduled queue thread) is backlogged,
            // not idle: it may catch up over a longer span so its rate does not sag under CPU pressure.
            long backlog = Math.max(slack, c.windowNanos() / 10);
            return new Rates(limitInc, p.maxBandwidthBytesPerSec(), resInc, slack, backlog, c.reservationCatchUpNanos(),
                p.minIops(), p.maxIops());
        }
    }

    private static final VarHandle LIMIT_TAT;
    private static final VarHandle BANDWIDTH_TAT;
    private static final VarHandle RESERVATION_TAT;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            LIMIT_TAT = l.findVarHandle(PolicyBucket.class, "limitTat", long.class);
            BANDWIDTH_TAT = l.findVarHandle(PolicyBucket.class, "bandwidthTat", long.class);
            RESERVATION_TAT = l.findVarHandle(PolicyBucket.class, "reservationTat", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final QosPolicy.Type type;
    volatile Rates rates;
    // Tags start far in the past; the clamp brings them to now - slack on first use.
    @SuppressWarnings("unused") private volatile long limitTat = Long.MIN_VALUE / 4;
    @SuppressWarnings("unused") private volatile long bandwidthTat = Long.MIN_VALUE / 4;
    @SuppressWarnings("unused") private volatile long reservationTat = Long.MIN_VALUE / 4;
    /** The tag value the last limit-waiter was told to wait for; a racy hint, any recent value will do. */
    volatile long lastLimitWaitTat = Long.MIN_VALUE / 4;

    // ---- controller scratch (control lock): per-period sums, valid when epoch == the controller's ----
    long scratchEpoch = -1;
    double activeFlows;
    double nonWaitingIops;
    double waitingWeight;
    long reservedEpoch = -1;

    PolicyBucket(QosPolicy.Type type, Rates rates) {
        this.type = type;
        this.rates = rates;
    }

    static long ceilDiv(long a, long b) {
        return (a + b - 1) / b;
    }

    long limitTat() {
        return (long) LIMIT_TAT.getVolatile(this);
    }

    /** Charges the limit tag only if nobody moved it since {@code seen}; false means re-check. */
    boolean casLimit(long seen, long next) {
        return LIMIT_TAT.compareAndSet(this, seen, next);
    }

    long bandwidthTat() {
        return (long) BANDWIDTH_TAT.getVolatile(this);
    }

    long reservationTat() {
        return (long) RESERVATION_TAT.getVolatile(this);
    }

    void chargeBandwidth(long now, long slack, long inc) {
        charge(BANDWIDTH_TAT, this, now, slack, inc);
    }

    /** The reservation tag may lead now by at most {@code slack}: service far above the minimum is not banked. */
    void chargeReservation(long now, long slack, long inc) {
        charge(RESERVATION_TAT, this, now, slack, inc, slack);
    }

    /** Unconditional GCRA charge with the idle clamp: tag = max(tag, now - slack) + inc. */
    static void charge(VarHandle vh, Object owner, long now, long slack, long inc) {
        charge(vh, owner, now, slack, inc, Long.MAX_VALUE / 4);
    }

    /** As {@link #charge(VarHandle, Object, long, long, long)}, and the tag never leads now by more than {@code cap}. */
    static void charge(VarHandle vh, Object owner, long now, long slack, long inc, long cap) {
        long floor = now - slack;
        long ceiling = now + cap;
        for (;;) {
            long t = (long) vh.getVolatile(owner);
            long next = (t > floor ? t : floor) + inc;
            if (next > ceiling) {
                next = Math.max(ceiling, t);
            }
            if (vh.compareAndSet(owner, t, next)) {
                return;
            }
        }
    }

    /** Gives back a charge (an admission that was refused by a later check). */
    void refundLimit(long inc) {
        LIMIT_TAT.getAndAdd(this, -inc);
    }
}
