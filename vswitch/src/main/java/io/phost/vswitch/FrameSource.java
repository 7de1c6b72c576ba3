package io.phost.vswitch;

/** A port's ingress: polled by the switch's agent, never blocks. */
public interface FrameSource extends AutoCloseable {
    /** Hands up to {@code limit} frames to {@code handler}; returns how many. */
    int poll(FrameHandler handler, int limit);

    /**
     * An fd that becomes readable when frames arrive (for the idle strategy's poll(2)), or -1 (then the switch
     * cannot sleep and parks in 50 us steps while idle). A source fed from memory by another thread (a
     * {@link FrameRing}) uses a {@link WakeupSignal}'s eventfd and implements {@link #armWakeup}.
     */
    default int readinessFd() {
        return -1;
    }

    /** Every fd whose readiness means frames (a team polls several sockets); the default is {@link #readinessFd}. */
    default int[] readinessFds() {
        int fd = readinessFd();
        return fd < 0 ? new int[0] : new int[] {fd};
    }

    /**
     * Called on the switch's thread just before it sleeps on {@link #readinessFd}: returns false when frames are
     * already waiting (then it does not sleep). Kernel fds (TAP, socket) need nothing: the default is true.
     */
    default boolean armWakeup() {
        return true;
    }

    /**
     * True when {@link #poll} costs a system call even when nothing waits (a TAP's {@code read(2)}; an AF_PACKET
     * uplink reads its mmap'd TPACKET ring in memory, so it is not one). While
     * the switch's agent spins it then checks all such sources' {@link #readinessFds} with one zero-timeout
     * {@code poll(2)} now and then and polls them only when one is readable, instead of a {@code read(2)} per
     * source per spin round. Sources fed from memory (the default, false) are polled every round.
     */
    default boolean kernelQueue() {
        return false;
    }

    /** Called on the switch's thread after a sleep (or a refused arm) ends. */
    default void disarmWakeup() {
    }

    @Override
    default void close() {
    }
}
