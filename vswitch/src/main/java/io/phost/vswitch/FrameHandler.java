package io.phost.vswitch;

import org.agrona.DirectBuffer;

/** Receives frames from a {@link FrameSource}; the frame is valid only during the call. */
@FunctionalInterface
public interface FrameHandler {
    void onFrame(DirectBuffer buffer, int offset, int length, PacketMeta meta);
}
