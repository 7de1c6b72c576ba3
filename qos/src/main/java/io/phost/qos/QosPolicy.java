package io.phost.qos;

import io.phost.qos.QosPolicyException.Reason;

/**
 * A Storage QoS policy, as {@code New-StorageQosPolicy} defines it. IOPS are normalized: an I/O costs
 * {@code ceil(bytes / normalizationSize)} units. Zero means "none" for every limit and reservation.
 *
 * <ul>
 *   <li>{@link Type#DEDICATED}: every disk that names the policy gets the values for itself.</li>
 *   <li>{@link Type#AGGREGATED}: the policy's disks share the values (one minimum, one maximum).</li>
 * </ul>
 *
 * @param name                     policy id used by disks in appliance.toml
 * @param type                     dedicated or aggregated
 * @param minIops                  reservation in normalized IOPS (0 = none)
 * @param maxIops                  limit in normalized IOPS (0 = unlimited)
 * @param maxBandwidthBytesPerSec  limit in bytes per second (0 = unlimited)
 * @param normalizationSize        bytes per normalized I/O for this policy; 0 = the store's default (8 KiB)
 * @param weight                   share of spare capacity relative to other flows (1..10000, default 100)
 */
public record QosPolicy(String name, Type type, long minIops, long maxIops, long maxBandwidthBytesPerSec,
                        int normalizationSize, int weight) {

    public enum Type { DEDICATED, AGGREGATED }

    public static final int DEFAULT_WEIGHT = 100;
    public static final int MAX_WEIGHT = 10_000;

    public QosPolicy {
        if (name == null || name.isBlank()) {
            throw new QosPolicyException(Reason.BLANK_NAME, "policy name is empty");
        }
        if (type == null) {
            throw new QosPolicyException(Reason.MISSING_TYPE, "policy " + name + " has no type");
        }
        if (minIops < 0 || maxIops < 0 || maxBandwidthBytesPerSec < 0) {
            throw new QosPolicyException(Reason.NEGATIVE_VALUE, "policy " + name + ": minIops=" + minIops
                + " maxIops=" + maxIops + " maxBandwidth=" + maxBandwidthBytesPerSec);
        }
        if (maxIops > 0 && minIops > maxIops) {
            throw new QosPolicyException(Reason.MIN_ABOVE_MAX, "policy " + name + ": minIops=" + minIops
                + " > maxIops=" + maxIops);
        }
        checkNormalizationSize(normalizationSize, true);
        if (weight < 1 || weight > MAX_WEIGHT) {
            throw new QosPolicyException(Reason.BAD_WEIGHT, "policy " + name + ": weight=" + weight
                + " outside 1.." + MAX_WEIGHT);
        }
    }

    public static QosPolicy dedicated(String name, long minIops, long maxIops) {
        return new QosPolicy(name, Type.DEDICATED, minIops, maxIops, 0, 0, DEFAULT_WEIGHT);
    }

    public static QosPolicy aggregated(String name, long minIops, long maxIops) {
        return new QosPolicy(name, Type.AGGREGATED, minIops, maxIops, 0, 0, DEFAULT_WEIGHT);
    }

    public QosPolicy withWeight(int w) {
        return new QosPolicy(name, type, minIops, maxIops, maxBandwidthBytesPerSec, normalizationSize, w);
    }

    public QosPolicy withMaxBandwidth(long bytesPerSec) {
        return new QosPolicy(name, type, minIops, maxIops, bytesPerSec, normalizationSize, weight);
    }

    public QosPolicy withNormalizationSize(int bytes) {
        return new QosPolicy(name, type, minIops, maxIops, maxBandwidthBytesPerSec, bytes, weight);
    }

    public QosPolicy withLimits(long min, long max) {
        return new QosPolicy(name, type, min, max, maxBandwidthBytesPerSec, normalizationSize, weight);
    }

    /** 512 B .. 1 GiB in 512-byte steps (0 allowed where it means "store default"). */
    static void checkNormalizationSize(int bytes, boolean zeroAllowed) {
        if (bytes == 0 && zeroAllowed) {
            return;
        }
        if (bytes < 512 || bytes > (1 << 30) || bytes % 512 != 0) {
            throw new QosPolicyException(Reason.BAD_NORMALIZATION_SIZE, "normalizationSize=" + bytes
                + " (need a multiple of 512 between 512 and 1 GiB)");
        }
    }

    /** Normalized cost of one I/O: {@code ceil(bytes / normalizationSize)}, at least 1 (a zero-length I/O still costs a slot). */
    public static int normalizedCost(int bytes, int normalizationSize) {
        if (bytes <= normalizationSize) {
            return 1;
        }
        return (int) ((bytes + (long) normalizationSize - 1) / normalizationSize);
    }
}
