package io.phost.qos;

import java.time.Instant;

/**
 * A change in a flow's status worth telling an operator about (a minimum that cannot be met, or met again).
 *
 * @param time      wall-clock time the controller noticed it
 * @param partition the flow's initiator
 * @param disk      the flow's disk
 * @param policy    the flow's policy name
 * @param status    the new status
 * @param message   one line for logs and {@code phost qos flows}
 */
public record QosAlert(Instant time, String partition, String disk, String policy, QosFlowStatus status,
                       String message) {
}
