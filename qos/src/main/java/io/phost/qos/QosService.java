package io.phost.qos;

import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The policy store and scheduler the appliance wires between each storage VSP queue and its I/O engine.
 *
 * <pre>
 *   VSP queue threads ──tryAdmit/completed──▶ ManagedQosFlow ──tags──▶ PolicyBucket (limit, bw, min)
 *                                                   │                    DeviceState (outstanding)
 *                                                   ▼ every controlPeriod (piggybacked, tryLock)
 *                                              controller: measure capacity, split it by weight
 *                                              (water-fill between minimums and limits), set share
 *                                              tags, statuses, alerts, rolling statistics
 * </pre>
 *
 * Management calls ({@link #updatePolicy}, {@link #flows}, …) take the control lock; I/O threads only
 * ever {@code tryLock} it, so they never block. Policy changes reach live flows before the call returns.
 *
 * <p>Why one class of about 700 lines: the policy store, the flows and the controller share the control lock and
 * the per-device state it guards; apart, that lock and state would have to be shared across classes.
 */
public final class QosService {
    private static final System.Logger LOG = System.getLogger("io.phost.qos");
    private static final String DEFAULT_DEVICE = "default";
    private static final int MAX_ALERTS = 256;
    private static final double DEMAND_HEADROOM = 1.25;

    private final NanoClock clock;
    private final ReentrantLock control = new ReentrantLock();
    private final int windowRows;
    private final long statsPeriodNanos;
    private final CopyOnWriteArrayList<Consumer<QosAlert>> alertListeners = new CopyOnWriteArrayList<>();

    // ---- guarded by control ----
    private QosConfig config;
    private final Map<String, QosPolicy> policies = new LinkedHashMap<>();
    private final Map<String, PolicyBucket> aggregatedBuckets = new HashMap<>();
    private final Map<String, DeviceState> devices = new LinkedHashMap<>();
    /** The same devices as an array: the controller iterates it without allocating an iterator. */
    private DeviceState[] deviceArray = new DeviceState[0];
    private final ArrayDeque<QosAlert> alerts = new ArrayDeque<>();
    /** Bumped every controller run so bucket scratch sums need no clearing and no maps (zero allocation). */
    private long sampleEpoch;
    /** Bumped every device pass: marks buckets already counted in a device's reserved sum. */
    private long reserveEpoch;
    private long lastControlNanos;
    private long lastStatsNanos;
    private long alertCount;
    private volatile ManagedQosFlow[] flows = new ManagedQosFlow[0];
    /** Read on every I/O: the only shared word the hot path checks for housekeeping. */
    private volatile long nextControlNanos;

    public QosService(QosConfig config, NanoClock clock) {
        this.config = Objects.requireNonNull(config);
        this.clock = Objects.requireNonNull(clock);
        this.statsPeriodNanos = Math.max(config.controlPeriodNanos(), config.windowNanos() / 10);
        this.windowRows = (int) (config.windowNanos() / statsPeriodNanos) + 1;
        long now = clock.nanoTime();
        this.lastControlNanos = now;
        this.lastStatsNanos = now - statsPeriodNanos;
        this.nextControlNanos = now + config.controlPeriodNanos();
    }

    public QosService() {
        this(QosConfig.defaults(), NanoClock.SYSTEM);
    }

    public NanoClock clock() {
        return clock;
    }

    // ------------------------------------------------------------------ policies and devices

    /** Creates or replaces a policy; flows naming it pick up the new values immediately. */
    public void updatePolicy(QosPolicy policy) {
        Objects.requireNonNull(policy);
        control.lock();
        try {
            QosPolicy old = policies.put(policy.name(), policy);
            if (old != null && old.type() == QosPolicy.Type.AGGREGATED && policy.type() != QosPolicy.Type.AGGREGATED) {
                aggregatedBuckets.remove(policy.name());
            }
            rebindAll(policy.name());
        } finally {
            control.unlock();
        }
    }

    /** Removes a policy; its flows become UnknownPolicyId and are admitted without limits. */
    public boolean removePolicy(String name) {
        control.lock();
        try {
            boolean removed = policies.remove(name) != null;
            aggregatedBuckets.remove(name);
            rebindAll(name);
            return removed;
        } finally {
            control.unlock();
        }
    }

    /**
     * Moves every flow of (partition, disk) to {@code policyName} (null: no policy), as a live config change of a
     * disk's policy does; the flows keep their counters. Returns how many flows moved.
     */
    public int changeFlowPolicy(String partition, String disk, String policyName) {
        control.lock();
        try {
            int moved = 0;
            for (ManagedQosFlow f : flows) {
                if (f.partition.equals(partition) && f.disk.equals(disk)) {
                    f.policyName = policyName;
                    f.dedicatedBucket = null; // another policy: a fresh bucket, not the old one's history
                    f.binding = bind(f);
                    f.ctl.status = f.binding.unknownPolicy() ? QosFlowStatus.UnknownPolicyId : QosFlowStatus.Ok;
                    moved++;
                }
            }
            return moved;
        } finally {
            control.unlock();
        }
    }

    public Optional<QosPolicy> policy(String name) {
        control.lock();
        try {
            return Optional.ofNullable(policies.get(name));
        } finally {
            control.unlock();
        }
    }

    public List<QosPolicy> policies() {
        control.lock();
        try {
            return List.copyOf(policies.values());
        } finally {
            control.unlock();
        }
    }

    /** The store-wide normalization size (Set-StorageQosPolicyStore -IOPSNormalizationSize). */
    public void setNormalizationSize(int bytes) {
        QosPolicy.checkNormalizationSize(bytes, false);
        control.lock();
        try {
            config = config.withNormalizationSize(bytes);
            rebindAll(null);
        } finally {
            control.unlock();
        }
    }

    public int normalizationSize() {
        control.lock();
        try {
            return config.normalizationSize();
        } finally {
            control.unlock();
        }
    }

    /**
     * Declares a backing device: its capacity before one is measured (normalized IOPS) and the number of
     * outstanding I/Os at which it counts as busy (its useful parallelism).
     */
    public void configureDevice(String deviceId, long capacityIops, int queueDepth) {
        if (capacityIops < 1 || queueDepth < 1) {
            throw new IllegalArgumentException("device " + deviceId + ": capacity=" + capacityIops + " depth=" + queueDepth);
        }
        control.lock();
        try {
            DeviceState d = device(deviceId);
            d.capacityIops = capacityIops;
            d.allocatableIops = capacityIops;
            d.queueDepth = queueDepth;
        } finally {
            control.unlock();
        }
    }

    // ------------------------------------------------------------------ flows

    /** A flow on the default device; {@code policyName} may be null (no policy: unconstrained, but measured). */
    public ManagedQosFlow createFlow(String partition, String disk, String policyName) {
        return createFlow(partition, disk, policyName, DEFAULT_DEVICE);
    }

    /** A flow whose I/O lands on {@code deviceId} (flows on one device share its capacity). */
    public ManagedQosFlow createFlow(String partition, String disk, String policyName, String deviceId) {
        Objects.requireNonNull(partition);
        Objects.requireNonNull(disk);
        Objects.requireNonNull(deviceId);
        control.lock();
        try {
            DeviceState d = device(deviceId);
            double share = Math.max(1, d.allocatableIops / (d.flows.length + 1));
            ManagedQosFlow f = new ManagedQosFlow(this, d, partition, disk, policyName, null, config,
                shareIncrement(share), windowRows);
            f.binding = bind(f);
            f.ctl.status = f.binding.unknownPolicy() ? QosFlowStatus.UnknownPolicyId : QosFlowStatus.Ok;
            f.ctl.lastAdmittedUnits = 0;
            ManagedQosFlow[] all = Arrays.copyOf(flows, flows.length + 1);
            all[all.length - 1] = f;
            flows = all;
            ManagedQosFlow[] onDevice = Arrays.copyOf(d.flows, d.flows.length + 1);
            onDevice[onDevice.length - 1] = f;
            d.flows = onDevice;
            if (f.binding.unknownPolicy()) {
                raise(f, QosFlowStatus.UnknownPolicyId, "policy " + policyName + " does not exist; flow is unlimited");
            }
            return f;
        } finally {
            control.unlock();
        }
    }

    void remove(ManagedQosFlow f) {
        control.lock();
        try {
            if (f.closed) {
                return;
            }
            f.closed = true;
            flows = without(flows, f);
            f.device.flows = without(f.device.flows, f);
        } finally {
            control.unlock();
        }
    }

    private static ManagedQosFlow[] without(ManagedQosFlow[] a, ManagedQosFlow f) {
        ArrayList<ManagedQosFlow> l = new ArrayList<>(Arrays.asList(a));
        l.remove(f);
        return l.toArray(new ManagedQosFlow[0]);
    }

    private DeviceState device(String id) {
        DeviceState d = devices.get(id);
        if (d == null) {
            d = new DeviceState(id, config.defaultCapacityIops(), config.defaultQueueDepth());
            devices.put(id, d);
            deviceArray = devices.values().toArray(new DeviceState[0]);
        }
        return d;
    }

    private void rebindAll(String policyName) {
        for (ManagedQosFlow f : flows) {
            if (policyName == null || policyName.equals(f.policyName)) {
                f.binding = bind(f);
                if (f.binding.unknownPolicy() && f.ctl.status != QosFlowStatus.UnknownPolicyId) {
                    f.ctl.status = QosFlowStatus.UnknownPolicyId;
                    raise(f, QosFlowStatus.UnknownPolicyId, "policy " + f.policyName + " removed; flow is unlimited");
                } else if (!f.binding.unknownPolicy() && f.ctl.status == QosFlowStatus.UnknownPolicyId) {
                    f.ctl.status = QosFlowStatus.Ok;
                }
            }
        }
    }

    private ManagedQosFlow.Binding bind(ManagedQosFlow f) {
        int storeNorm = config.normalizationSize();
        if (f.policyName == null) {
            return binding(null, null, storeNorm, QosPolicy.DEFAULT_WEIGHT, false);
        }
        QosPolicy p = policies.get(f.policyName);
        if (p == null) {
            return binding(null, null, storeNorm, QosPolicy.DEFAULT_WEIGHT, true);
        }
        PolicyBucket.Rates rates = PolicyBucket.Rates.of(p, config);
        PolicyBucket bucket;
        if (p.type() == QosPolicy.Type.AGGREGATED) {
            bucket = aggregatedBuckets.computeIfAbsent(p.name(), k -> new PolicyBucket(QosPolicy.Type.AGGREGATED, rates));
        } else {
            if (f.dedicatedBucket == null) {
                f.dedicatedBucket = new PolicyBucket(QosPolicy.Type.DEDICATED, rates);
            }
            bucket = f.dedicatedBucket;
        }
        bucket.rates = rates;
        return binding(p, bucket, p.normalizationSize() != 0 ? p.normalizationSize() : storeNorm, p.weight(), false);
    }

    private static ManagedQosFlow.Binding binding(QosPolicy p, PolicyBucket b, int norm, int weight, boolean unknown) {
        int shift = Integer.bitCount(norm) == 1 ? Integer.numberOfTrailingZeros(norm) : -1;
        return new ManagedQosFlow.Binding(p, b, norm, shift, weight, unknown);
    }

    private static long shareIncrement(double iops) {
        return (long) Math.ceil(1e9 / Math.max(iops, 1.0));
    }

    // ------------------------------------------------------------------ controller

    /** Called on the I/O path: runs the controller if a period has passed and nobody else is running it. */
    void maybeControl(long now) {
        if (now - nextControlNanos >= 0 && control.tryLock()) {
            try {
                if (now - nextControlNanos >= 0) {
                    runControl(now);
                }
            } finally {
                control.unlock();
            }
        }
    }

    /** Runs the controller now (an appliance timer may call this when I/O is sparse). */
    public void tick() {
        long now = clock.nanoTime();
        control.lock();
        try {
            runControl(now);
        } finally {
            control.unlock();
        }
    }

    private void runControl(long now) {
        long dt = now - lastControlNanos;
        nextControlNanos = now + config.controlPeriodNanos();
        if (dt <= 0) {
            return;
        }
        lastControlNanos = now;
        boolean statsTick = now - lastStatsNanos >= statsPeriodNanos;
        if (statsTick) {
            lastStatsNanos = now;
        }
        sampleEpoch++;
        for (DeviceState d : deviceArray) {
            sampleFlows(d, now, dt, statsTick);
        }
        splitAggregatedLimits();
        for (DeviceState d : deviceArray) {
            controlDevice(d, now, dt);
        }
    }

    /** Turns counter deltas into demand, activity and statistics; sums what the device completed. */
    private void sampleFlows(DeviceState d, long now, long dt, boolean statsTick) {
        ManagedQosFlow[] fs = d.flows;
        long completedUnits = 0;
        long gateWaits = 0;
        long leadWaits = 0;
        for (ManagedQosFlow f : fs) {
            FlowControlState c = f.ctl;
            long adm = f.admittedUnits();
            long gate = f.gateWaits();
            long lim = f.limitWaits();
            long lead = f.leadWaits();
            long comp = f.completedUnits();
            long dAdm = adm - c.lastAdmittedUnits;
            long dGate = gate - c.lastGateWaits;
            long dLim = lim - c.lastLimitWaits;
            long dLead = lead - c.lastLeadWaits;
            completedUnits += comp;
            gateWaits += dGate;
            leadWaits += dLead;
            c.lastAdmittedUnits = adm;
            c.lastGateWaits = gate;
            c.lastLimitWaits = lim;
            c.lastLeadWaits = lead;
            long inFlight = f.admittedIos() - f.completedIos();
            c.waiting = dGate > 0 || dLim > 0 || dLead > 0;
            c.measuredIops = dAdm * 1e9 / dt;
            c.active = dAdm > 0 || c.waiting || inFlight > 0;
            c.busyBits = (c.busyBits << 1) | (c.waiting || inFlight > 0 ? 1 : 0);
            c.demandIops = c.waiting || inFlight > 0 ? Double.POSITIVE_INFINITY : c.measuredIops * DEMAND_HEADROOM;
            c.portionIops = Double.POSITIVE_INFINITY;
            if (statsTick) {
                c.sample(now, f.completedIos(), comp, f.completedBytes(), f.latencySumNanos());
            }
            PolicyBucket b = f.binding.bucket();
            if (b != null && c.active) {
                if (b.scratchEpoch != sampleEpoch) {
                    b.scratchEpoch = sampleEpoch;
                    b.activeFlows = 0;
                    b.nonWaitingIops = 0;
                    b.waitingWeight = 0;
                }
                b.activeFlows++;
                if (c.waiting) {
                    b.waitingWeight += f.binding.weight();
                } else {
                    b.nonWaitingIops += c.measuredIops;
                }
            }
        }
        d.periodCompletedUnits = completedUnits - d.lastCompletedUnits;
        d.lastCompletedUnits = completedUnits;
        d.periodGateWaits = gateWaits;
        d.periodLeadWaits = leadWaits;
    }

    /**
     * Fairness inside an aggregated limit: flows that did not wait keep what they use (plus headroom);
     * the rest of the policy's maximum is split by weight among the flows that waited. The shared limit
     * tag still caps the sum exactly; portions only decide who gets the next slot.
     */
    private void splitAggregatedLimits() {
        for (ManagedQosFlow f : flows) {
            PolicyBucket b = f.binding.bucket();
            FlowControlState c = f.ctl;
            if (b == null || b.type != QosPolicy.Type.AGGREGATED || b.rates.maxIops() == 0 || !c.active) {
                continue;
            }
            if (c.waiting && b.waitingWeight > 0) {
                c.portionIops = Math.max(0, b.rates.maxIops() - b.nonWaitingIops) * f.binding.weight() / b.waitingWeight;
            } else {
                c.portionIops = c.measuredIops * DEMAND_HEADROOM + 1;
            }
            c.portionIops = Math.max(c.portionIops, b.rates.maxIops() * 1e-3);
        }
    }

    private void controlDevice(DeviceState d, long now, long dt) {
        ManagedQosFlow[] fs = d.flows;
        // Capacity estimate of the backing device, from completions.
        double measured = d.periodCompletedUnits * 1e9 / dt;
        long gateWaits = d.periodGateWaits;
        long leadWaits = d.periodLeadWaits;
        int out = d.outstanding();
        d.busy = gateWaits > 0 || out >= d.queueDepth;
        // A flow with I/O in flight throughout the last periods whose reservation tag lags far behind now is
        // not getting its minimum although it asks: the device delivers less than we hand out. Shrink.
        boolean shortfall = false;
        for (ManagedQosFlow f : fs) {
            PolicyBucket b = f.binding.bucket();
            if (b != null && b.rates.minIops() > 0 && f.ctl.active && (f.ctl.busyBits & 0xF) == 0xF
                && b.reservationTat() < now - b.rates.reservationSlackNanos() / 2) {
                shortfall = true;
                break;
            }
        }
        if (shortfall && measured > 0) {
            d.capacityIops = Math.min(d.capacityIops, measured) * 0.95;
            d.noProbeUntilNanos = now + 10 * config.controlPeriodNanos(); // do not undo it by probing
        } else if (leadWaits > gateWaits && out < d.queueDepth && measured >= 0.8 * d.capacityIops
            && now - d.noProbeUntilNanos >= 0) {
            // Flows mostly waited while slots were free and the device did about what we estimated: the
            // estimate is what holds them back. Probe up (iocost-style), fast when the device is mostly idle.
            d.capacityIops = Math.max(d.capacityIops, measured) * (out < d.queueDepth / 2 ? 2.0 : 1.05);
        } else if (d.busy) {
            // The device is full (flows waited on it, or a queue stands): what it completed is what it can do.
            if (measured > 0) {
                d.capacityIops += (measured - d.capacityIops) * 0.25;
            }
        } else if (measured > d.capacityIops) {
            d.capacityIops = measured;
        }
        d.allocatableIops = d.capacityIops;

        double reserved = 0;
        reserveEpoch++;
        for (ManagedQosFlow f : fs) {
            PolicyBucket b = f.binding.bucket();
            if (b != null && f.ctl.active && b.reservedEpoch != reserveEpoch) {
                b.reservedEpoch = reserveEpoch;
                reserved += b.rates.minIops();
            }
        }
        d.reservedIops = reserved;
        d.infeasible = reserved > d.capacityIops * 1.0001;
        allocate(d, fs);
        for (ManagedQosFlow f : fs) {
            updateStatus(d, f);
        }
    }

    /**
     * Water-filling: find λ with Σ clamp(λ·w, lo, hi) = capacity over the active flows, where lo is the
     * flow's minimum (capped by its demand) and hi its limit (capped by its demand). An idle flow gets
     * λ·w so that it starts at its fair share when it wakes.
     */
    private void allocate(DeviceState d, ManagedQosFlow[] fs) {
        double total = d.allocatableIops;
        double sumLo = 0;
        double sumHi = 0;
        int minWeight = Integer.MAX_VALUE;
        int active = 0;
        for (ManagedQosFlow f : fs) {
            FlowControlState c = f.ctl;
            if (!c.active) {
                continue;
            }
            active++;
            sumLo += lo(f);
            sumHi += hi(f);
            minWeight = Math.min(minWeight, f.binding.weight());
        }
        double lambda;
        if (active == 0) {
            lambda = total / Math.max(1, fs.length) / QosPolicy.DEFAULT_WEIGHT;
        } else if (sumLo >= total) {
            lambda = 0;
        } else if (sumHi <= total) {
            lambda = total / minWeight;
        } else {
            double a = 0;
            double b = total / minWeight;
            for (int i = 0; i < 48; i++) {
                double m = (a + b) / 2;
                double s = 0;
                for (ManagedQosFlow f : fs) {
                    if (f.ctl.active) {
                        s += clamp(m * f.binding.weight(), lo(f), hi(f));
                    }
                }
                if (s > total) {
                    b = m;
                } else {
                    a = m;
                }
            }
            lambda = a;
        }
        // Never starve: every flow keeps a small share of a busy device.
        double floor = Math.max(1.0, total * 1e-4);
        for (ManagedQosFlow f : fs) {
            FlowControlState c = f.ctl;
            double alloc = c.active ? clamp(lambda * f.binding.weight(), lo(f), hi(f)) : lambda * f.binding.weight();
            alloc = Math.min(Math.max(alloc, floor), Math.max(total, floor));
            c.allocatedIops = alloc;
            f.shareNanosPerUnit = shareIncrement(alloc);
        }
    }

    private double lo(ManagedQosFlow f) {
        PolicyBucket b = f.binding.bucket();
        if (b == null || b.rates.minIops() == 0) {
            return 0;
        }
        double min = b.rates.minIops();
        if (b.type == QosPolicy.Type.AGGREGATED) {
            min /= b.scratchEpoch == sampleEpoch ? Math.max(1, b.activeFlows) : 1;
        }
        return Math.min(min, f.ctl.demandIops);
    }

    private static double hi(ManagedQosFlow f) {
        PolicyBucket b = f.binding.bucket();
        double max = b == null || b.rates.maxIops() == 0 ? Double.POSITIVE_INFINITY : b.rates.maxIops();
        return Math.max(Math.min(Math.min(max, f.ctl.portionIops), f.ctl.demandIops), 0);
    }

    private static double clamp(double v, double lo, double hi) {
        return v < lo ? lo : (v > hi ? Math.max(hi, lo) : v);
    }

    private void updateStatus(DeviceState d, ManagedQosFlow f) {
        FlowControlState c = f.ctl;
        QosFlowStatus next;
        String why = null;
        ManagedQosFlow.Binding b = f.binding;
        if (b.unknownPolicy()) {
            next = QosFlowStatus.UnknownPolicyId;
        } else if (b.bucket() != null && b.bucket().rates.minIops() > 0 && c.active) {
            long min = b.bucket().rates.minIops();
            boolean windowFull = c.windowSpanNanos() >= config.windowNanos() * 9 / 10;
            int periods = (int) Math.min(63, config.windowNanos() / config.controlPeriodNanos());
            long mask = (1L << periods) - 1;
            boolean busyAllWindow = Long.bitCount(c.busyBits & mask) >= periods * 9 / 10;
            double got = c.rate(FlowControlState.UNITS);
            if (b.bucket().type == QosPolicy.Type.AGGREGATED) {
                got = aggregatedRate(b.bucket());
            }
            if (d.infeasible) {
                next = QosFlowStatus.InsufficientThroughput;
                if (c.status != next) {
                    why = String.format("minimums on device %s sum to %.0f IOPS but it delivers about %.0f",
                        d.id, d.reservedIops, d.capacityIops);
                }
            } else if (windowFull && busyAllWindow && got < 0.9 * min) {
                next = QosFlowStatus.InsufficientThroughput;
                if (c.status != next) {
                    why = String.format("minimum %d IOPS not met: %.0f IOPS over the last window on device %s",
                        min, got, d.id);
                }
            } else {
                // Hysteresis: once short, a flow is Ok again only when it gets 95% of its minimum.
                next = c.status == QosFlowStatus.InsufficientThroughput && got < 0.95 * min
                    ? QosFlowStatus.InsufficientThroughput : QosFlowStatus.Ok;
            }
        } else {
            next = QosFlowStatus.Ok;
        }
        if (next != c.status) {
            QosFlowStatus was = c.status;
            c.status = next;
            if (next == QosFlowStatus.InsufficientThroughput) {
                raise(f, next, why);
            } else if (was == QosFlowStatus.InsufficientThroughput) {
                raise(f, next, "minimum met again");
            }
        }
    }

    private double aggregatedRate(PolicyBucket bucket) {
        double sum = 0;
        for (ManagedQosFlow g : flows) {
            if (g.binding.bucket() == bucket) {
                sum += g.ctl.rate(FlowControlState.UNITS);
            }
        }
        return sum;
    }

    private void raise(ManagedQosFlow f, QosFlowStatus status, String message) {
        QosAlert a = new QosAlert(Instant.now(), f.partition, f.disk, f.policyName, status, message);
        alerts.addLast(a);
        alertCount++;
        while (alerts.size() > MAX_ALERTS) {
            alerts.removeFirst();
        }
        System.Logger.Level level = status == QosFlowStatus.Ok ? System.Logger.Level.INFO : System.Logger.Level.WARNING;
        LOG.log(level, "qos flow {0}/{1} policy {2}: {3}: {4}", f.partition, f.disk, f.policyName, status, message);
        for (Consumer<QosAlert> l : alertListeners) {
            try {
                l.accept(a);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "qos alert listener failed", e);
            }
        }
    }

    // ------------------------------------------------------------------ observation

    /** Registers a callback for every alert (called under the control lock: keep it short). */
    public void onAlert(Consumer<QosAlert> listener) {
        alertListeners.add(Objects.requireNonNull(listener));
    }

    /** The most recent alerts, oldest first (at most 256 kept). */
    public List<QosAlert> alerts() {
        control.lock();
        try {
            return List.copyOf(alerts);
        } finally {
            control.unlock();
        }
    }

    public long alertCount() {
        control.lock();
        try {
            return alertCount;
        } finally {
            control.unlock();
        }
    }

    /** Immutable snapshots of every flow (runs the controller first if a period is due). */
    public List<QosFlowSnapshot> flows() {
        long now = clock.nanoTime();
        control.lock();
        try {
            if (now - nextControlNanos >= 0) {
                runControl(now);
            }
            List<QosFlowSnapshot> out = new ArrayList<>(flows.length);
            for (ManagedQosFlow f : flows) {
                out.add(snapshot(f));
            }
            return List.copyOf(out);
        } finally {
            control.unlock();
        }
    }

    public List<QosDeviceSnapshot> devices() {
        control.lock();
        try {
            List<QosDeviceSnapshot> out = new ArrayList<>();
            for (DeviceState d : devices.values()) {
                out.add(new QosDeviceSnapshot(d.id, d.capacityIops, d.queueDepth, d.outstanding(), d.reservedIops, !d.infeasible));
            }
            return List.copyOf(out);
        } finally {
            control.unlock();
        }
    }

    private QosFlowSnapshot snapshot(ManagedQosFlow f) {
        FlowControlState c = f.ctl;
        ManagedQosFlow.Binding b = f.binding;
        PolicyBucket.Rates r = b.bucket() == null ? null : b.bucket().rates;
        return new QosFlowSnapshot(f.partition, f.disk, f.device.id, f.policyName, c.status,
            c.rate(FlowControlState.UNITS), c.rate(FlowControlState.IOS), c.latencyNanos() / 1000.0,
            c.rate(FlowControlState.BYTES), r == null ? 0 : r.minIops(), r == null ? 0 : r.maxIops(),
            r == null ? 0 : r.bandwidthBytesPerSec(), Math.max(0, f.admittedIos() - f.completedIos()),
            c.allocatedIops, f.completedIos(), f.completedUnits(), f.completedBytes(), f.latencySumNanos());
    }
}
