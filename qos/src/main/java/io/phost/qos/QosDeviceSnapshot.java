package io.phost.qos;

/**
 * A backing device as the scheduler sees it.
 *
 * @param id            device name given to {@link QosService#createFlow(String, String, String, String)}
 * @param capacityIops  estimated normalized IOPS when busy (measured from completions)
 * @param queueDepth    outstanding I/Os at which it counts as busy
 * @param outstanding   I/Os in flight now
 * @param reservedIops  the sum of the minimums of the active flows on it
 * @param feasible      whether those minimums fit in the capacity
 */
public record QosDeviceSnapshot(String id, double capacityIops, int queueDepth, int outstanding,
                                double reservedIops, boolean feasible) {
}
