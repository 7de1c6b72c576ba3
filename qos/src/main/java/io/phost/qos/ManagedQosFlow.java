package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A flow (partition × disk) created by {@link QosService}. {@link #tryAdmit} is lock-free: a few volatile
 * reads, one CAS on the limit tag when the policy has a limit, one CAS on the share tag and three atomic
 * adds; it allocates nothing. Many queue threads may share one flow.
 *
 * <pre>
 *  tryAdmit(bytes, now)                                           units = ceil(bytes / normalization)
 *    │
 *    ├─ limit tag L > now ? ──────────────▶ wait L - now           (GCRA: exact, never over the max)
 *    ├─ bandwidth tag B > now ? ──────────▶ wait B - now
 *    ├─ reservation tag R <= now ? ───────▶ admit (behind its minimum: skips the busy gate)
 *    ├─ device outstanding < depth ? ─────▶ admit (a slot is free: work-conserving)
 *    ├─ share tag P <= now ? ─────────────▶ admit (its weighted share of a busy device is due)
 *    └─ otherwise ────────────────────────▶ wait min(P - now, retryCap)
 *  admit: CAS L += units/max, R += units/min, P += units/share, B += bytes/bw; outstanding++
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
    private static final VarHandle ADMITTED_UNITS;
    private static final VarHandle ADMITTED_IOS;
    private static final VarHandle COMPLETED_IOS;
    private static final VarHandle COMPLETED_UNITS;
    private static final VarHandle COMPLETED_BYTES;
    private static final VarHandle LATENCY_SUM;
    private static final VarHandle GATE_WAITS;
    private static final VarHandle LIMIT_WAITS;
    private static final VarHandle LEAD_WAITS;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            SHARE_TAT = l.findVarHandle(ManagedQosFlow.class, "shareTat", long.class);
            ADMITTED_UNITS = l.findVarHandle(ManagedQosFlow.class, "admittedUnits", long.class);
            ADMITTED_IOS = l.findVarHandle(ManagedQosFlow.class, "admittedIos", long.class);
            COMPLETED_IOS = l.findVarHandle(ManagedQosFlow.class, "completedIos", long.class);
            COMPLETED_UNITS = l.findVarHandle(ManagedQosFlow.class, "completedUnits", long.class);
            COMPLETED_BYTES = l.findVarHandle(ManagedQosFlow.class, "completedBytes", long.class);
            LATENCY_SUM = l.findVarHandle(ManagedQosFlow.class, "latencySumNanos", long.class);
            GATE_WAITS = l.findVarHandle(ManagedQosFlow.class, "gateWaits", long.class);
            LIMIT_WAITS = l.findVarHandle(ManagedQosFlow.class, "limitWaits", long.class);
            LEAD_WAITS = l.findVarHandle(ManagedQosFlow.class, "leadWaits", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final QosService service;
    final DeviceState device;
    final String partition;
    final String disk;
    final String policyName;
    private final long shareSlackNanos;
    private final long retryCapNanos;
    private final long shareLeadNanos;
    private final long shareCapNanos;

    volatile Binding binding;
    /** Nanoseconds of share tag per unit: 1e9 / (the flow's allocation of a busy device). */
    volatile long shareNanosPerUnit;
    @SuppressWarnings("unused") private volatile long shareTat = Long.MIN_VALUE / 4;

    // Monotonic counters; the controller turns deltas into rates.
    @SuppressWarnings("unused") private volatile long admittedUnits;
    @SuppressWarnings("unused") private volatile long admittedIos;
    @SuppressWarnings("unused") private volatile long completedIos;
    @SuppressWarnings("unused") private volatile long completedUnits;
    @SuppressWarnings("unused") private volatile long completedBytes;
    @SuppressWarnings("unused") private volatile long latencySumNanos;
    @SuppressWarnings("unused") private volatile long gateWaits;
    @SuppressWarnings("unused") private volatile long limitWaits;
    @SuppressWarnings("unused") private volatile long leadWaits;

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
            admitted(units, nowNanos);
            return 0;
        }
        final PolicyBucket.Rates r = bucket.rates;
        for (;;) {
            long limitSeen = 0;
            long limitBase = 0;
            if (r.limitNanosPerUnit() != 0) {
                limitSeen = bucket.limitTat();
                final long floor = nowNanos - r.limitSlackNanos();
                limitBase = limitSeen > floor ? limitSeen : floor;
                if (limitBase > nowNanos) {
                    LIMIT_WAITS.getAndAdd(this, 1L);
                    return limitBase - nowNanos;
                }
            }
            long bandwidthInc = 0;
            if (r.bandwidthBytesPerSec() != 0) {
                bandwidthInc = Math.max(1, (long) Math.max(bytes, 0) * 1_000_000_000L / r.bandwidthBytesPerSec());
                final long bt = bucket.bandwidthTat();
                if (bt > nowNanos) {
                    LIMIT_WAITS.getAndAdd(this, 1L);
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
            admitted(units, nowNanos);
            return 0;
        }
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
            LEAD_WAITS.getAndAdd(this, 1L);
            wait = ahead - shareLeadNanos;
        } else {
            GATE_WAITS.getAndAdd(this, 1L);
            wait = ahead;
        }
        return wait < retryCapNanos ? wait : retryCapNanos;
    }

    private void admitted(int units, long nowNanos) {
        PolicyBucket.charge(SHARE_TAT, this, nowNanos, shareSlackNanos, units * shareNanosPerUnit, shareCapNanos);
        ADMITTED_UNITS.getAndAdd(this, (long) units);
        ADMITTED_IOS.getAndAdd(this, 1L);
        device.addOutstanding(1);
    }

    @Override
    public void completed(int bytes, long latencyNanos, long nowNanos) {
        final int units = binding.units(bytes);
        COMPLETED_IOS.getAndAdd(this, 1L);
        COMPLETED_UNITS.getAndAdd(this, (long) units);
        COMPLETED_BYTES.getAndAdd(this, (long) Math.max(bytes, 0));
        LATENCY_SUM.getAndAdd(this, Math.max(latencyNanos, 0L));
        device.addOutstanding(-1);
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
        return (long) ADMITTED_UNITS.getVolatile(this);
    }

    long admittedIos() {
        return (long) ADMITTED_IOS.getVolatile(this);
    }

    long completedIos() {
        return (long) COMPLETED_IOS.getVolatile(this);
    }

    long completedUnits() {
        return (long) COMPLETED_UNITS.getVolatile(this);
    }

    long completedBytes() {
        return (long) COMPLETED_BYTES.getVolatile(this);
    }

    long latencySumNanos() {
        return (long) LATENCY_SUM.getVolatile(this);
    }

    long gateWaits() {
        return (long) GATE_WAITS.getVolatile(this);
    }

    long limitWaits() {
        return (long) LIMIT_WAITS.getVolatile(this);
    }

    long leadWaits() {
        return (long) LEAD_WAITS.getVolatile(this);
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
