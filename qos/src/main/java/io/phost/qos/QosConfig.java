package io.phost.qos;

/**
 * Store-wide settings (the equivalent of {@code Set-StorageQosPolicyStore}) and scheduler tuning.
 *
 * @param normalizationSize        bytes per normalized I/O when a policy does not set its own (8 KiB)
 * @param defaultCapacityIops      a device's capacity in normalized IOPS before any is measured
 * @param defaultQueueDepth        outstanding I/Os at which a device counts as busy (its useful parallelism)
 * @param controlPeriodNanos       how often the controller re-estimates capacity and re-splits it (20 ms)
 * @param limitBurstNanos          how late a backlogged flow may be and still catch up on its limit (2 ms);
 *                                 also the largest burst an idle flow can bank, in time at its limit
 * @param reservationCatchUpNanos  how far behind its minimum a flow may fall and still catch up (50 ms)
 * @param retryCapNanos            the longest wait handed to a flow held back only by a busy device (200 us)
 * @param windowNanos              the rolling window of the flow statistics (1 s)
 */
public record QosConfig(int normalizationSize, long defaultCapacityIops, int defaultQueueDepth,
                        long controlPeriodNanos, long limitBurstNanos, long reservationCatchUpNanos,
                        long retryCapNanos, long windowNanos) {

    public static final int DEFAULT_NORMALIZATION_SIZE = 8192;

    public QosConfig {
        QosPolicy.checkNormalizationSize(normalizationSize, false);
        if (defaultCapacityIops < 1 || defaultQueueDepth < 1 || controlPeriodNanos < 1_000_000
            || limitBurstNanos < 0 || reservationCatchUpNanos < 0 || retryCapNanos < 1_000
            || windowNanos < controlPeriodNanos) {
            throw new IllegalArgumentException("bad QosConfig " + defaultCapacityIops + "/" + defaultQueueDepth
                + "/" + controlPeriodNanos + "/" + limitBurstNanos + "/" + reservationCatchUpNanos + "/"
                + retryCapNanos + "/" + windowNanos);
        }
    }

    public static QosConfig defaults() {
        return new QosConfig(DEFAULT_NORMALIZATION_SIZE, 100_000, 32, 20_000_000L, 2_000_000L, 50_000_000L,
            200_000L, 1_000_000_000L);
    }

    public QosConfig withNormalizationSize(int bytes) {
        return new QosConfig(bytes, defaultCapacityIops, defaultQueueDepth, controlPeriodNanos, limitBurstNanos,
            reservationCatchUpNanos, retryCapNanos, windowNanos);
    }

    public QosConfig withDevice(long capacityIops, int queueDepth) {
        return new QosConfig(normalizationSize, capacityIops, queueDepth, controlPeriodNanos, limitBurstNanos,
            reservationCatchUpNanos, retryCapNanos, windowNanos);
    }
}
