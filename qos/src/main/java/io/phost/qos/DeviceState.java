package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One backing device (a capacity domain): the flows on it share its throughput. The hot path touches only
 * {@link #outstanding}; everything else belongs to the controller (guarded by the service's control lock).
 *
 * <pre>
 *   outstanding >= queueDepth  ⇒ the device is busy: only flows behind their minimum or due on their
 *                                 share tag go; everyone else is told to retry shortly
 *   outstanding <  queueDepth  ⇒ a slot is free: any flow within its limits goes (work-conserving)
 * </pre>
 */
final class DeviceState {
    private static final VarHandle OUTSTANDING;

    static {
        try {
            OUTSTANDING = MethodHandles.lookup().findVarHandle(DeviceState.class, "outstanding", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final String id;
    /** Busy threshold; the device's useful parallelism. */
    volatile int queueDepth;
    @SuppressWarnings("unused") private volatile int outstanding;
    volatile ManagedQosFlow[] flows = new ManagedQosFlow[0];

    // ---- controller state (control lock) ----
    /** Normalized IOPS the device delivers when busy: measured from completions, seeded by configuration. */
    double capacityIops;
    /** What the controller hands out to share tags: the capacity, shrunk while a queue drains. */
    double allocatableIops;
    double reservedIops;
    boolean infeasible;
    boolean busy;
    long lastCompletedUnits;
    long periodCompletedUnits;
    long periodGateWaits;
    long periodLeadWaits;
    long noProbeUntilNanos = Long.MIN_VALUE / 4;

    DeviceState(String id, double capacityIops, int queueDepth) {
        this.id = id;
        this.capacityIops = capacityIops;
        this.allocatableIops = capacityIops;
        this.queueDepth = queueDepth;
    }

    int outstanding() {
        return (int) OUTSTANDING.getVolatile(this);
    }

    /** Returns the count before the change. */
    int addOutstanding(int delta) {
        return (int) OUTSTANDING.getAndAdd(this, delta);
    }
}
