package io.phost.core.vmbus;

import io.phost.core.sys.DeviceWait;

/**
 * The per-channel (per queue) side of a VSP. Runs on the channel's agent thread only: no locking needed
 * for state it keeps to itself. {@link #onPacket} gets each guest packet in place; {@link #doWork} is
 * called every duty cycle for work that does not arrive on the ring (I/O completions, timers).
 */
public interface ChannelHandler extends PacketHandler {
    /** Work not driven by packets (e.g. reaping io_uring completions); returns the amount done (0 = idle). */
    default int doWork() {
        return 0;
    }

    /**
     * Device completions that ring no doorbell (io_uring), for the agent to sleep on together with the guest's
     * doorbell ({@link DoorbellIdleStrategy#sleepThrough}), or null. The server calls this once, before the
     * first duty cycle, and only when the agent's idle strategy will use it; from then on {@link #doWork} may
     * return 0 while that device has requests in flight.
     */
    default DeviceWait deviceWait() {
        return null;
    }

    /**
     * A lock for a handler whose host→guest ring another thread also writes, or null (the ring has one writer,
     * the agent). The agent holds it through each duty cycle; the handler's other writer must hold it while it
     * writes, and {@link #onClose} must take it before the ring goes away. Asked for once, before the first duty
     * cycle.
     */
    default RingWriterLock ringWriterLock() {
        return null;
    }

    /** The channel closed (guest CLOSECHANNEL, rescind, reset after a fault, or partition stop). */
    default void onClose() {
    }
}
