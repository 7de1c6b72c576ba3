package io.phost.core.vmbus;

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

    /** The channel closed (guest CLOSECHANNEL, rescind, reset after a fault, or partition stop). */
    default void onClose() {
    }
}
