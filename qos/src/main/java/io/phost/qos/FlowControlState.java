package io.phost.qos;

/**
 * The controller's private view of one flow: last counter values, the rolling statistics ring and the
 * current allocation. Touched only under the service's control lock.
 *
 * <pre>
 *   samples ring (one row per stats tick, newest at head):
 *   row i: [ timeNanos | completedIos | completedUnits | completedBytes | latencySumNanos ]
 *   window rate = (newest - oldest) / (newest.time - oldest.time)
 * </pre>
 */
final class FlowControlState {
    static final int TIME = 0;
    static final int IOS = 1;
    static final int UNITS = 2;
    static final int BYTES = 3;
    static final int LATENCY = 4;
    static final int COLUMNS = 5;

    final long[] ring;
    final int rows;
    int head = -1;
    int filled;

    long lastAdmittedUnits;
    long lastCompletedUnits;
    long lastGateWaits;
    long lastLimitWaits;
    long lastLeadWaits;
    /** One bit per control period, newest in bit 0: the flow wanted more than it got or had I/O in flight. */
    long busyBits;
    double demandIops;
    double measuredIops;
    /** This flow's part of an aggregated maximum (infinite when not aggregated). */
    double portionIops = Double.POSITIVE_INFINITY;
    boolean waiting;
    double allocatedIops;
    boolean active;
    QosFlowStatus status = QosFlowStatus.Ok;

    FlowControlState(int rows) {
        this.rows = rows;
        this.ring = new long[rows * COLUMNS];
    }

    void sample(long now, long ios, long units, long bytes, long latency) {
        head = (head + 1) % rows;
        int o = head * COLUMNS;
        ring[o + TIME] = now;
        ring[o + IOS] = ios;
        ring[o + UNITS] = units;
        ring[o + BYTES] = bytes;
        ring[o + LATENCY] = latency;
        if (filled < rows) {
            filled++;
        }
    }

    /** Rate of a column per second over the ring (0 with fewer than two samples). */
    double rate(int column) {
        if (filled < 2) {
            return 0;
        }
        int oldest = ((head - filled + 1) % rows + rows) % rows;
        long dt = ring[head * COLUMNS + TIME] - ring[oldest * COLUMNS + TIME];
        if (dt <= 0) {
            return 0;
        }
        return (ring[head * COLUMNS + column] - ring[oldest * COLUMNS + column]) * 1e9 / dt;
    }

    /** Average latency in ns over the ring. */
    double latencyNanos() {
        if (filled < 2) {
            return 0;
        }
        int oldest = ((head - filled + 1) % rows + rows) % rows;
        long ios = ring[head * COLUMNS + IOS] - ring[oldest * COLUMNS + IOS];
        return ios <= 0 ? 0 : (double) (ring[head * COLUMNS + LATENCY] - ring[oldest * COLUMNS + LATENCY]) / ios;
    }

    long windowSpanNanos() {
        if (filled < 2) {
            return 0;
        }
        int oldest = ((head - filled + 1) % rows + rows) % rows;
        return ring[head * COLUMNS + TIME] - ring[oldest * COLUMNS + TIME];
    }
}
