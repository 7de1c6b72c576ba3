package io.phost.network.vhost;

import io.phost.vswitch.WakeupSignal;

/**
 * One virtio-net queue pair (receiveq {@code 2k}, transmitq {@code 2k + 1}) of a {@link VhostUserNetDevice}: its
 * own switch-bound and guest-bound frame rings (each one-producer one-consumer: the pair's worker and the
 * switch's agent), the RX worker's wakeup and the counters its two workers write.
 */
final class NetQueuePair {
    final int index;
    final VnetFrameRing toGuest;
    final VnetFrameRing fromGuest;
    /** Wakes this pair's RX worker when the switch queued a frame for it. */
    final WakeupSignal rxWake = new WakeupSignal();
    /** Written by this pair's RX and TX workers only (one writer per field). */
    final NetCounters counters = new NetCounters();
    /** Set while the pair's receive queue runs (started and enabled): the switch steers frames only to those. */
    volatile boolean rxRunning;

    NetQueuePair(int index, int ringBytes) {
        this.index = index;
        this.toGuest = new VnetFrameRing(ringBytes);
        this.fromGuest = new VnetFrameRing(ringBytes);
    }
}
