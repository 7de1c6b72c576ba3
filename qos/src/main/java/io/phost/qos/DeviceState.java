package io.phost.qos;

/**
 * One backing device (a capacity domain): the flows on it share its throughput. The hot path touches only
 * the outstanding count; everything else belongs to the controller (guarded by the service's control lock).
 * The count is not kept per I/O: it is the flows' admitted minus completed I/Os (their own thread-striped
 * counters, plain adds), summed only when a flow's share tag is ahead of now and on every
 * {@link #REFRESH_EVERY}-th admission of a queue thread, which keeps {@link #shareCharging} current.
 *
 * <pre>
 *   outstanding >= queueDepth  ⇒ the device is busy: only flows behind their minimum or due on their
 *                                 share tag go; everyone else is told to retry shortly
 *   outstanding <  queueDepth  ⇒ a slot is free: any flow within its limits goes (work-conserving)
 * </pre>
 */
final class DeviceState {
    /** A queue thread re-reads the outstanding count on this many admissions (a power of two). */
    static final int REFRESH_EVERY = 16;

    final String id;
    /** Busy threshold; the device's useful parallelism. */
    volatile int queueDepth;
    /**
     * The device was at least half full at its last reading: admissions charge the share tags. Below half
     * its depth nobody is held back, so the uncontended path skips the share tag's CAS.
     */
    volatile boolean shareCharging;
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

    /**
     * I/Os admitted and not completed on this device, summed over its flows' stripes: exact when the device
     * is quiet, otherwise off by the I/Os that moved during the sum. Also updates {@link #shareCharging}.
     */
    int outstanding() {
        long n = 0;
        for (ManagedQosFlow f : flows) {
            n += f.outstandingIos();
        }
        int out = (int) Math.max(0, Math.min(Integer.MAX_VALUE, n));
        boolean charging = out * 2L >= queueDepth;
        if (charging != shareCharging) {
            shareCharging = charging; // written only on a change: the line stays shared between queue threads
        }
        return out;
    }
}
