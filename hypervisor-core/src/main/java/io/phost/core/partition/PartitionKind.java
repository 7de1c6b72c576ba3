package io.phost.core.partition;

/** What runs a partition: an OS process reaching phost over VMBus, or a QEMU virtual machine over vhost-user. */
public enum PartitionKind {
    PROCESS, VM
}
