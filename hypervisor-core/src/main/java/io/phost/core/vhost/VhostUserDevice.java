package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;

/**
 * A virtio device served over vhost-user (blk, scsi, net): states its features, queues and config space,
 * and handles each started queue. The transport ({@link VhostUserBackend}) owns the protocol, the memory
 * table, the rings and the threads; a device never sees a message.
 */
public interface VhostUserDevice {
    /** Device-specific virtio feature bits (the transport adds VERSION_1, INDIRECT_DESC, EVENT_IDX). */
    long features();

    /** Queues the device can serve (GET_QUEUE_NUM; QEMU's vhost-user-blk-pci asks for one per vCPU). */
    int maxQueues();

    /**
     * The GET_QUEUE_NUM answer: the queues ({@link #maxQueues}) for blk and scsi; a net device answers queue
     * pairs, as QEMU's vhost-user-net compares it with its {@code queues=} pairs.
     */
    default int queueNum() {
        return maxQueues();
    }

    /**
     * Writes the device's config space (little-endian, virtio layout) into {@code dst}, at most
     * {@code dst.byteSize()} bytes; returns the config space's full length.
     */
    int readConfig(MemorySegment dst);

    /** A handler for queue {@code index} about to start on the queue's worker thread. */
    VirtqueueHandler openQueue(int index);

    /**
     * Whether the transport may offer INFLIGHT_SHMFD for this device: its requests are idempotent (block,
     * SCSI) so resubmitting those a killed back-end left in flight is safe, and its queues never give chains
     * back ({@link SplitVirtqueue#discard}). Network devices say no (QEMU's vhost-user-net never asks).
     */
    default boolean tracksInflight() {
        return false;
    }

    /**
     * Whether the transport may offer VIRTIO_F_RING_PACKED for this device ({@link PackedVirtqueue}; dirty
     * logging and inflight tracking, where offered, work with it as with split rings).
     */
    default boolean packedRings() {
        return false;
    }

    /** Whether the device takes SEND_RARP (a NIC: the RARP protocol feature is offered). */
    default boolean announces() {
        return false;
    }

    /**
     * SEND_RARP on the control thread: after a migration, make the network learn that {@code mac} (48 bits,
     * first wire byte highest) is now here. Must not touch a queue (each has one producer, its worker).
     */
    default void announce(long mac) {
    }

    /** Called with the negotiated virtio features (SET_FEATURES). */
    default void featuresAcked(long features) {
    }
}
