package io.phost.network.vhost;

/**
 * One virtio-net queue pair (receiveq {@code 2k}, transmitq {@code 2k + 1}) of a {@link VhostUserNetDevice}: the
 * two queues the switch's agent serves while they run, and the counters.
 */
final class NetQueuePair {
    final int index;
    /** Written by the agent thread only (the receive path, the transmit path; one writer per field). */
    final NetCounters counters = new NetCounters();
    /** The running transmit queue the agent pops, or null (agent thread only: set and cleared by commands run there). */
    SwitchServedQueue tx;
    /** The running receive queue the agent fills, or null: the switch steers frames only to running ones (agent thread). */
    SwitchServedQueue rx;

    NetQueuePair(int index) {
        this.index = index;
    }
}
