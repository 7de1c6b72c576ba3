package io.phost.qos;

/** A flow's status, as {@code Get-StorageQosFlow} reports it. */
public enum QosFlowStatus {
    /** The flow's policy is enforced and its minimum (if any) is being met. */
    Ok,
    /** The flow has a minimum that the backing device cannot deliver (or is not delivering) right now. */
    InsufficientThroughput,
    /** The flow names a policy that does not exist; it is admitted without limits. */
    UnknownPolicyId
}
