package io.phost.qos;

/**
 * One flow as {@code Get-StorageQosFlow} shows it; rates are over the rolling window (1 s by default).
 *
 * @param partition              the initiator (child partition name)
 * @param disk                   the virtual disk (file path or id)
 * @param device                 the backing device whose capacity the flow shares
 * @param policy                 the policy name, or null when the flow has none
 * @param status                 Ok, InsufficientThroughput or UnknownPolicyId
 * @param initiatorIops          normalized IOPS completed
 * @param initiatorRawIops       I/Os completed per second, unnormalized
 * @param initiatorLatencyMicros average completion latency
 * @param initiatorBandwidth     bytes per second completed
 * @param minimumIops            the reservation in force (aggregated: the policy's shared value)
 * @param maximumIops            the limit in force (0 = unlimited)
 * @param maximumBandwidth       bytes per second limit (0 = unlimited)
 * @param outstanding            I/Os admitted and not yet completed
 * @param allocatedIops          what the scheduler currently grants the flow when the device is busy
 * @param completedIos           I/Os completed since the flow was created (a counter; the rates above are its
 *                               derivative over the window)
 * @param completedNormalizedIos normalized I/Os completed since creation
 * @param completedBytes         bytes completed since creation
 * @param latencySumNanos        sum of the completion latencies of those I/Os (mean = sum / completedIos)
 */
public record QosFlowSnapshot(String partition, String disk, String device, String policy, QosFlowStatus status,
                              double initiatorIops, double initiatorRawIops, double initiatorLatencyMicros,
                              double initiatorBandwidth, long minimumIops, long maximumIops, long maximumBandwidth,
                              long outstanding, double allocatedIops, long completedIos,
                              long completedNormalizedIos, long completedBytes, long latencySumNanos) {
}
