package io.phost.vswitch;

/** A port's ingress: polled by the switch's agent, never blocks. */
public interface FrameSource extends AutoCloseable {
    /** Hands up to {@code limit} frames to {@code handler}; returns how many. */
    int poll(FrameHandler handler, int limit);

    /** An fd that becomes readable when frames arrive (for the idle strategy's poll(2)), or -1. */
    default int readinessFd() {
        return -1;
    }

    @Override
    default void close() {
    }
}
