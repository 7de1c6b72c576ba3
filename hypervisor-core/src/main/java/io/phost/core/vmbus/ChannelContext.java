package io.phost.core.vmbus;

import java.lang.foreign.MemorySegment;
import java.util.UUID;

/**
 * What a VSP handler can do with its channel. The write methods are for the channel's agent thread
 * (the ring has one writer), or for another thread holding the handler's {@link ChannelHandler#ringWriterLock};
 * {@link #wakeup} and {@link #offerSubChannels} may be called from anywhere.
 */
public interface ChannelContext {
    /** Partition name. */
    String partition();

    UUID interfaceType();

    UUID instance();

    /** The channel's relid (unique per partition connection). */
    int relid();

    /** 0 for the primary channel, 1.. for sub-channels. */
    int subChannelIndex();

    /** The 120 user-data bytes the guest sent with OPENCHANNEL (read-only copy). */
    MemorySegment openUserData();

    /** The partition's memory; resolve guest addresses through it (only GPADL-granted pages resolve). */
    GuestMemory guestMemory();

    /** A live GPADL of this partition by the guest's handle (e.g. a receive buffer the VSC announced). */
    Gpadl gpadl(int handle);

    /** Writes a packet to the guest (host→guest ring); false when full (see {@link #requestSpace}). */
    boolean tryWrite(int type, int flags, long transId, MemorySegment src, long srcOffset, int length);

    /** Writes a completion packet (type 11) for {@code transId}; false when full. */
    default boolean tryComplete(long transId, MemorySegment src, long srcOffset, int length) {
        return tryWrite(PacketDescriptor.TYPE_COMPLETION, 0, transId, src, srcOffset, length);
    }

    /** The host→guest ring itself, for extended writes (GPA-direct to the guest is unusual but allowed). */
    VmbusRing tx();

    /**
     * Asks the guest to signal once {@code bytes} are free in the host→guest ring (pending_send_sz); the
     * agent is then woken by the guest's doorbell. Returns true if the space is already there.
     */
    boolean requestSpace(int bytes);

    /** Makes the channel's agent run soon even if the guest sends nothing (thread-safe, one eventfd write). */
    void wakeup();

    /** Offers {@code count} sub-channels of this device (indices 1..count); the guest opens them at will. */
    void offerSubChannels(int count);

    /**
     * The guest broke the device protocol: records {@code reason} against the partition and resets the
     * channel (after the current packet). Repeated faults mark the partition faulted.
     */
    void fault(String reason);
}
