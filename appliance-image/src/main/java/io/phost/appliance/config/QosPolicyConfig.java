package io.phost.appliance.config;

/**
 * {@code [[qos_policy]]}: a storage QoS policy in the manner of Hyper-V's Storage QoS.
 *
 * @param type              dedicated: each disk gets the limits; aggregated: the disks share them
 * @param minIops           reserved normalized IOPS (0 = no reservation)
 * @param maxIops           normalized IOPS cap (0 = unlimited)
 * @param maxBandwidth      bytes per second cap (0 = unlimited)
 * @param normalizationSize I/O size that counts as one normalized I/O (bytes)
 * @param weight            share of spare capacity relative to other flows on the device (1..10000)
 */
public record QosPolicyConfig(String name, Type type, long minIops, long maxIops, long maxBandwidth,
                              int normalizationSize, int weight) {
    public enum Type { DEDICATED, AGGREGATED }
}
