package io.phost.network.vhost;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Counters of one vhost-user-net device. Each field has a single writer (named), read anywhere.
 */
public final class NetCounters {
    /**
     * Switch agent (receive fill): frames written into guest buffers, added once per burst (before the guest is told,
     * so before the release fence that publishes used.idx). Opaque, as txFrames and txBursts: a plain store on x86,
     * not a locked instruction per burst.
     */
    private long rxFrames;
    /** Switch agent (receive fill): frames dropped because they do not fit the guest's receive buffers. */
    volatile long rxTooBig;
    /** Switch agent: frames for the guest while it had no running receive queue. */
    volatile long rxNoQueue;
    /** Switch agent: frames either way dropped while the port's link is down ({@link VhostUserNetPort#link(boolean)}). */
    volatile long linkDownDrops;
    /** Switch agent: RARP announcements injected for SEND_RARP (after a migration). */
    volatile long announcements;
    /** Switch agent (transmit pop): frames from the guest handed to the switch, added once per burst (opaque). */
    private long txFrames;
    /**
     * Switch agent (transmit pop): polls that took at least one chain; txFrames / txBursts is the mean burst. Opaque,
     * not volatile: a statistic, so no fence per burst ({@link #burstTaken}).
     */
    private long txBursts;
    /** Switch agent (transmit pop): malformed frames from the guest (too short or long, offload state not negotiated or out of range). */
    volatile long txErrors;

    public long rxFrames() {
        return (long) RX_FRAMES.getOpaque(this);
    }

    public long rxTooBig() {
        return rxTooBig;
    }

    public long rxNoQueue() {
        return rxNoQueue;
    }

    public long linkDownDrops() {
        return linkDownDrops;
    }

    public long announcements() {
        return announcements;
    }

    public long txFrames() {
        return (long) TX_FRAMES.getOpaque(this);
    }

    public long txErrors() {
        return txErrors;
    }

    private static final VarHandle RX_FRAMES;
    private static final VarHandle TX_FRAMES;
    private static final VarHandle TX_BURSTS;

    static {
        try {
            var lookup = MethodHandles.lookup();
            RX_FRAMES = lookup.findVarHandle(NetCounters.class, "rxFrames", long.class);
            TX_FRAMES = lookup.findVarHandle(NetCounters.class, "txFrames", long.class);
            TX_BURSTS = lookup.findVarHandle(NetCounters.class, "txBursts", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** Switch agent (single writer): frames written into the guest's receive buffers. */
    void addRxFrames(long n) {
        RX_FRAMES.setOpaque(this, (long) RX_FRAMES.getOpaque(this) + n);
    }

    /** Switch agent (single writer): frames from the guest handed to the switch. */
    void addTxFrames(long n) {
        TX_FRAMES.setOpaque(this, (long) TX_FRAMES.getOpaque(this) + n);
    }

    /** Switch agent: one more transmit burst (a plain store on x86: untorn, visible soon, no fence). */
    void burstTaken() {
        addTxBursts(1);
    }

    /** Transmit polls that took at least one chain (the mean burst is txFrames / txBursts, errors aside). */
    public long txBursts() {
        return (long) TX_BURSTS.getOpaque(this);
    }

    void addTxBursts(long n) {
        TX_BURSTS.setOpaque(this, (long) TX_BURSTS.getOpaque(this) + n);
    }

    @Override
    public String toString() {
        return "rxFrames=" + rxFrames() + " rxTooBig=" + rxTooBig + " rxNoQueue=" + rxNoQueue + " linkDownDrops=" + linkDownDrops
            + " announcements=" + announcements + " txFrames=" + txFrames() + " txErrors=" + txErrors + " txBursts=" + txBursts();
    }
}
