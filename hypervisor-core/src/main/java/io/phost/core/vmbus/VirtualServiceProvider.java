package io.phost.core.vmbus;

import java.util.UUID;

/**
 * A synthetic device in the parent partition (a VSP). Register one instance per device per partition with
 * {@code Partition.offer(vsp)} (or in {@code PartitionHost.create}); the host offers it to the guest
 * (OFFERCHANNEL) and calls {@link #open} each time the guest opens the channel or one of its sub-channels.
 * Each open channel is then drained by its own polling agent (see {@link ChannelAgent}).
 */
public interface VirtualServiceProvider {
    /** The device class GUID the guest's VSC binds to (e.g. storvsc's ba6163d9-04a1-4d29-b605-72e2ffb1dc7f). */
    UUID interfaceType();

    /** This device's instance GUID (unique per partition). */
    UUID instance();

    /** Short name used in agent role names and status: {@code vsp-storage}, {@code ic-heartbeat}. */
    String name();

    /** Bytes placed in the offer's 120-byte user_def field (e.g. a pipe mode); at most 120. */
    default byte[] offerUserData() {
        return new byte[0];
    }

    /**
     * Called on the partition's control thread when the guest opens the primary channel
     * ({@code ctx.subChannelIndex() == 0}) or a sub-channel. Must not block; returns the handler the
     * channel's agent will feed packets to.
     */
    ChannelHandler open(ChannelContext ctx);

    /**
     * How each channel's agent idles. The default spins, yields, then arms the interrupt and sleeps
     * on the guest's doorbell ({@link DoorbellIdleStrategy#defaults}); a latency-critical device may return
     * {@link DoorbellIdleStrategy#busySpin} (costs a core per queue) or {@link DoorbellIdleStrategy#interruptOnly}.
     */
    default org.agrona.concurrent.IdleStrategy idleStrategy(VmbusRing rx, io.phost.core.sys.EventFd doorbell) {
        return DoorbellIdleStrategy.defaults(rx, doorbell);
    }

    /**
     * Whether each channel's agent publishes the guest→host ring's read_index lazily
     * ({@link VmbusRing#publishReadIndexLazily}: every quarter ring, whenever the guest has set pending_send_sz,
     * and always before the agent arms its interrupt to sleep) instead of after every read batch. Hyper-V's
     * signalling rules hold either way (the method comment says why); a guest sees its free space lag by less
     * than a quarter ring while the agent polls. Off by default: a device opts in once its own traffic was
     * measured with it.
     */
    default boolean lazyReadIndex() {
        return false;
    }

    /**
     * The idle strategy under the host's polling setting: in {@link PollingMode#LATENCY} the device's own
     * choice ({@link #idleStrategy(VmbusRing, io.phost.core.sys.EventFd)}); in {@link PollingMode#EFFICIENCY}
     * and {@link PollingMode#ADAPTIVE} (the default) the host's choice wins, so no device keeps a CPU
     * spinning that another thread needs.
     */
    default org.agrona.concurrent.IdleStrategy idleStrategy(VmbusRing rx, io.phost.core.sys.EventFd doorbell, PollingMode mode) {
        return mode == PollingMode.LATENCY ? idleStrategy(rx, doorbell) : mode.idleStrategy(rx, doorbell);
    }
}
