package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A flow (partition × disk) created by {@link QosService}. {@link #tryAdmit} is lock-free: a few volatile
 * reads, one CAS per tag the policy uses (limit, bandwidth, minimum; the share tag only when the device
 * is at least half full) and plain adds to the calling thread's own counter stripe (the device's outstanding
 * count is derived from those); it allocates nothing. Many queue threads may share one flow. A policy with
 * only a maximum, far below it, spends a per-thread lease of limit units instead of a CAS per I/O
 * ({@link #tryLeased}): an unconstrained flow takes no locked instruction per I/O.
 *
 * <pre>
 *  tryAdmit(bytes, now)                                           units = ceil(bytes / normalization)
 *    │
 *    ├─ limit tag L > now ? ──────────────▶ wait L - now           (GCRA: exact, never over the max)
 *    ├─ aggregated max binding and P > now + lead ? ─▶ wait (fair split of a shared maximum)
 *    ├─ bandwidth tag B > now ? ──────────▶ wait B - now
 *    ├─ reservation tag R <= now ? ───────▶ admit (behind its minimum: skips the busy gate)
 *    ├─ device outstanding < depth ? ─────▶ admit (a slot is free: work-conserving)
 *    ├─ share tag P <= now ? ─────────────▶ admit (its weighted share of a busy device is due)
 *    └─ otherwise ────────────────────────▶ wait min(P - now, retryCap)
 *  admit: CAS L += units/max, R += units/min, P += units/share (device half full), B += bytes/bw
 * </pre>
 * Every admission charges every tag, so service in one phase counts toward the others (as in mClock,
 * where weight-phase service reduces the reservation tags): a flow gets max(minimum, weighted share).
 */
public final class ManagedQosFlow implements QosFlow, AutoCloseable {

    /** What the flow is bound to; immutable and swapped whole on a policy change. */
    record Binding(QosPolicy policy, PolicyBucket bucket, int normalization, int normalizationShift, int weight,
                   boolean unknownPolicy) {
        int units(int bytes) {
            if (bytes <= normalization) {
                return 1;
            }
            return normalizationShift >= 0
                ? (int) ((bytes + (long) normalization - 1) >>> normalizationShift)
                : (int) ((bytes + (long) normalization - 1) / normalization);
        }
    }

    private static final VarHandle SHARE_TAT;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            SHARE_TAT = l.findVarHandle(ManagedQosFlow.class, "shareTat", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final QosService service;
    final DeviceState device;
    final String partition;
    final String disk;
    /** Changed only under the service's control lock ({@link QosService#changeFlowPolicy}). */
    volatile String policyName;
    private final long shareSlackNanos;
    private final long retryCapNanos;
    private final long shareLeadNanos;
    private final long shareCapNanos;

    volatile Binding binding;
    /** Nanoseconds of share tag per unit: 1e9 / (the flow's allocation of a busy device). */
    volatile long shareNanosPerUnit;
    @SuppressWarnings("unused") private volatile long shareTat = Long.MIN_VALUE / 4;

    /** Monotonic counters; the controller turns deltas into rates. */
    private final StripedCounters counters = StripedCounters.forThisMachine();
    /** Most limit units one stripe leases at a time. */
    private static final long MAX_LEASE_UNITS = 64;
    /** A lease smaller than this many I/Os saves too few CASes to be worth its burst. */
    private static final long MIN_LEASE_UNITS = 8;
    /** The Rates each stripe's lease was charged under (owner-thread only); a policy change voids the lease. */
    private final PolicyBucket.Rates[] leaseRates = new PolicyBucket.Rates[counters.stripes() + 1];

    /** Controller-private state (guarded by the service's control lock). */
    final FlowControlState ctl;
    /** Own bucket when the policy is dedicated (kept across updates so tags keep their history). */
    PolicyBucket dedicatedBucket;
    volatile boolean closed;

    ManagedQosFlow(QosService service, DeviceState device, String partition, String disk, String policyName,
                   Binding binding, QosConfig config, long shareNanosPerUnit, int windowSamples) {
        this.service = service;
        this.device = device;
        this.partition = partition;
        this.disk = disk;
        this.policyName = policyName;
        this.binding = binding;
        this.shareNanosPerUnit = shareNanosPerUnit;
        this.shareSlackNanos = Math.max(config.limitBurstNanos(), config.controlPeriodNanos());
        this.retryCapNanos = config.retryCapNanos();
        this.shareLeadNanos = config.controlPeriodNanos() / 2;
        this.shareCapNanos = config.controlPeriodNanos() * 5;
        this.ctl = new FlowControlState(windowSamples);
    }

    @Override
    public long tryAdmit(int bytes, long nowNanos) {
        service.maybeControl(nowNanos);
        final Binding b = binding;
        final int units = b.units(bytes);
        final PolicyBucket bucket = b.bucket;
        if (bucket == null) {
            final long wait = busyGate(nowNanos);
            if (wait != 0) {
                return wait;
            }
            admitted(units, nowNanos, false);
            return 0;
        }
        final PolicyBucket.Rates r = bucket.rates;
        final boolean sharedLimit = bucket.type == QosPolicy.Type.AGGREGATED && r.limitNanosPerUnit() != 0;
        if (!sharedLimit && r.limitNanosPerUnit() != 0 && r.bandwidthBytesPerSec() == 0 && r.reservationNanosPerUnit() == 0) {
            final long wait = tryLeased(bucket, r, units, nowNanos);
            if (wait >= 0) {
                return wait;
            }
        }
        for (;;) {
            long limitSeen = 0;
            long limitBase = 0;
            if (r.limitNanosPerUnit() != 0) {
                limitSeen = bucket.limitTat();
                final long backlogged = bucket.lastLimitWaitTat;
                final long floor = nowNanos - (nowNanos - backlogged <= r.backlogSlackNanos()
                    ? r.backlogSlackNanos() : r.limitSlackNanos());
                limitBase = limitSeen > floor ? limitSeen : floor;
                if (limitBase > nowNanos) {
                    if (backlogged != limitBase) {
                        bucket.lastLimitWaitTat = limitBase; // plain volatile store: a hint, races are harmless
                    }
                    counters.add(StripedCounters.LIMIT_WAITS, 1);
                    return limitBase - nowNanos;
                }
            }
            if (sharedLimit && limitSeen > nowNanos - r.limitSlackNanos()) {
                // The shared maximum is binding: take its next slot only within this flow's portion (its
                // share tag), so one disk's threads cannot keep every slot of the policy.
                final long ahead = (long) SHARE_TAT.getVolatile(this) - nowNanos;
                if (ahead > shareLeadNanos) {
                    counters.add(StripedCounters.LIMIT_WAITS, 1);
                    final long wait = ahead - shareLeadNanos;
                    return wait < retryCapNanos ? wait : retryCapNanos;
                }
            }
            long bandwidthInc = 0;
            if (r.bandwidthBytesPerSec() != 0) {
                bandwidthInc = Math.max(1, (long) Math.max(bytes, 0) * 1_000_000_000L / r.bandwidthBytesPerSec());
                final long bt = bucket.bandwidthTat();
                if (bt > nowNanos) {
                    counters.add(StripedCounters.LIMIT_WAITS, 1);
                    return bt - nowNanos;
                }
            }
            final boolean behindMinimum = r.reservationNanosPerUnit() != 0 && bucket.reservationTat() <= nowNanos;
            if (!behindMinimum) {
                final long wait = busyGate(nowNanos);
                if (wait != 0) {
                    return wait;
                }
            }
            // The limit tag is the one that must be exact under races: charge it only if unchanged since
            // the check, else re-check (another queue thread took the slot).
            if (r.limitNanosPerUnit() != 0 && !bucket.casLimit(limitSeen, limitBase + units * r.limitNanosPerUnit())) {
                continue;
            }
            if (bandwidthInc != 0) {
                bucket.chargeBandwidth(nowNanos, r.limitSlackNanos(), bandwidthInc);
            }
            if (r.reservationNanosPerUnit() != 0) {
                bucket.chargeReservation(nowNanos, r.reservationSlackNanos(), units * r.reservationNanosPerUnit());
            }
            admitted(units, nowNanos, sharedLimit);
            return 0;
        }
    }

    /**
     * The fast path of a maximum-only policy far from its limit: limit units charged ahead (a lease) are
     * spent without touching the shared limit tag, so an unconstrained flow pays no CAS per I/O. A lease is
     * taken only when the tag lags now by its whole slack (the flow is well under its maximum) and is
     * charged to the tag up front, so the maximum is never exceeded over time; all stripes' leases together
     * hold at most half the slack's worth of units, the only extra burst they allow. Returns the wait
     * (0 = admitted), or -1 to take the exact path (no lease, not the lease owner, or near the limit).
     * <pre>
     *   credit >= units (same Rates) ─▶ credit -= units ─▶ busy gate ─▶ admit
     *   tag <= now - slack           ─▶ CAS tag = floor + K units  ─▶ credit = K - units ─▶ admit
     *   otherwise                    ─▶ -1 (exact GCRA path, CAS per I/O)
     * </pre>
     */
    private long tryLeased(PolicyBucket bucket, PolicyBucket.Rates r, int units, long nowNanos) {
        final StripedCounters c = counters;
        final int stripe = c.ownStripe();
        if (stripe < 0) {
            return -1;
        }
        long credit = leaseRates[stripe / StripedCounters.STRIDE] == r ? c.getOwned(stripe, StripedCounters.LEASED_UNITS) : 0;
        if (credit < units) {
            final long perUnit = r.limitNanosPerUnit();
            final long leaseUnits = Math.min(MAX_LEASE_UNITS, r.limitSlackNanos() / (2L * c.stripes() * perUnit));
            if (leaseUnits < MIN_LEASE_UNITS * units) {
                return -1; // the limit is too tight for leases to be worth their burst
            }
            if (nowNanos - bucket.lastLimitWaitTat <= r.backlogSlackNanos()) {
                return -1; // recently held back: the exact path owes it its backlog catch-up
            }
            final long seen = bucket.limitTat();
            final long floor = nowNanos - r.limitSlackNanos();
            if (seen > floor || !bucket.casLimit(seen, floor + leaseUnits * perUnit)) {
                return -1; // near the limit (or raced): charge exactly
            }
            leaseRates[stripe / StripedCounters.STRIDE] = r;
            credit = leaseUnits;
        }
        final long wait = busyGate(nowNanos);
        if (wait != 0) {
            c.setOwned(stripe, StripedCounters.LEASED_UNITS, credit);
            return wait;
        }
        c.setOwned(stripe, StripedCounters.LEASED_UNITS, credit - units);
        admitted(stripe, units, nowNanos, false);
        return 0;
    }

    /**
     * 0 when the flow may use the device now, else how long to wait. Due on its share tag: go. Device idle:
     * go. A free slot: go if the share tag is at most {@code shareLead} ahead — borrowing is bounded, so a
     * closed-loop flow cannot keep re-capturing the slots its own completions free (slot capture), and
     * once every contender has borrowed its lead the share tags alone divide the device.
     */
    private long busyGate(long nowNanos) {
        final long st = (long) SHARE_TAT.getVolatile(this);
        if (st <= nowNanos) {
            return 0;
        }
        final DeviceState d = device;
        final int out = d.outstanding();
        if (out == 0) {
            return 0;
        }
        final long ahead = st - nowNanos;
        long wait;
        if (out < d.queueDepth) {
            if (ahead <= shareLeadNanos) {
                return 0;
            }
            counters.add(StripedCounters.LEAD_WAITS, 1);
            wait = ahead - shareLeadNanos;
        } else {
            counters.add(StripedCounters.GATE_WAITS, 1);
            wait = ahead;
        }
        return wait < retryCapNanos ? wait : retryCapNanos;
    }

    private void admitted(int units, long nowNanos, boolean alwaysChargeShare) {
        admitted(counters.ownStripe(), units, nowNanos, alwaysChargeShare);
    }

    /** {@code stripe}: the caller's {@link StripedCounters#ownStripe}, when it has looked it up already. */
    private void admitted(int stripe, int units, long nowNanos, boolean alwaysChargeShare) {
        final DeviceState d = device;
        final long admittedHere = counters.addAdmission(stripe, units);
        // The device's fill is read (a sum over its flows' stripes) on every REFRESH_EVERY-th admission of
        // this thread, and whenever a share tag is ahead of now (busyGate): nothing per I/O is shared.
        if (admittedHere < 0 || (admittedHere & (DeviceState.REFRESH_EVERY - 1)) == 0) {
            d.outstanding();
        }
        // The share tag only matters once the device fills up; below half its depth nobody is held back,
        // so skipping the CAS keeps the uncontended path cheap and forgets borrowing done while idle.
        if (alwaysChargeShare || d.shareCharging) {
            PolicyBucket.charge(SHARE_TAT, this, nowNanos, shareSlackNanos, units * shareNanosPerUnit, shareCapNanos);
        }
    }

    /** Admitted minus completed I/Os (completed read first, so a racing I/O cannot make it negative). */
    long outstandingIos() {
        long done = completedIos();
        return admittedIos() - done;
    }

    @Override
    public void completed(int bytes, long latencyNanos, long nowNanos) {
        final int units = binding.units(bytes);
        final StripedCounters c = counters;
        c.addCompletion(c.ownStripe(), units, Math.max(bytes, 0), Math.max(latencyNanos, 0L));
        service.maybeControl(nowNanos);
    }

    /** Removes the flow from its service; it keeps admitting (unlimited) if a straggler still calls it. */
    @Override
    public void close() {
        service.remove(this);
    }

    public String partition() {
        return partition;
    }

    public String disk() {
        return disk;
    }

    public String policyName() {
        return policyName;
    }

    public String deviceId() {
        return device.id;
    }

    long admittedUnits() {
        // every I/O is at least one unit: only the units beyond one are counted apart
        return counters.sum(StripedCounters.ADMITTED_IOS) + counters.sum(StripedCounters.ADMITTED_EXTRA_UNITS);
    }

    long admittedIos() {
        return counters.sum(StripedCounters.ADMITTED_IOS);
    }

    long completedIos() {
        return counters.sum(StripedCounters.COMPLETED_IOS);
    }

    long completedUnits() {
        return counters.sum(StripedCounters.COMPLETED_IOS) + counters.sum(StripedCounters.COMPLETED_EXTRA_UNITS);
    }

    long completedBytes() {
        return counters.sum(StripedCounters.COMPLETED_BYTES);
    }

    long latencySumNanos() {
        return counters.sum(StripedCounters.LATENCY_NANOS);
    }

    long gateWaits() {
        return counters.sum(StripedCounters.GATE_WAITS);
    }

    long limitWaits() {
        return counters.sum(StripedCounters.LIMIT_WAITS);
    }

    long leadWaits() {
        return counters.sum(StripedCounters.LEAD_WAITS);
    }

    /** Total I/Os admitted and total completed since creation (for tests and accounting checks). */
    public long totalAdmitted() {
        return admittedIos();
    }

    public long totalCompleted() {
        return completedIos();
    }

    public long totalCompletedUnits() {
        return completedUnits();
    }

    @Override
    public String toString() {
        return "QosFlow[" + partition + "/" + disk + " policy=" + policyName + " device=" + device.id + "]";
    }
}
