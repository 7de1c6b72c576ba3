package io.phost.core.vmbus;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import java.lang.foreign.MemorySegment;
import java.util.UUID;
import org.agrona.concurrent.AgentRunner;

/** The host end of one open channel (one queue): its two rings, doorbells, handler and agent. */
final class HostChannel implements ChannelContext {
    private static final System.Logger LOG = System.getLogger(HostChannel.class.getName());
    private static final long AGENT_END_TIMEOUT_NANOS = 30_000_000_000L;
    final VmbusServer server;
    final VmbusServer.Offer offer;
    final Gpadl ringGpadl;
    final RingMapping rxMap;
    final RingMapping txMap;
    final VmbusRing rx;
    final VmbusRing tx;
    /** Guest→host doorbell: the agent sleeps on it; {@link #wakeup} rings it from other threads. */
    final EventFd fromGuest;
    private final EventFd wakeupView;
    /** Host→guest doorbell, used by the agent thread only (through the rings). */
    final EventFd toGuest;
    final MemorySegment userData;
    ChannelHandler handler;
    ChannelAgent agent;
    AgentRunner runner;
    org.agrona.concurrent.IdleStrategy idle;

    HostChannel(VmbusServer server, VmbusServer.Offer offer, Gpadl ringGpadl, RingMapping rxMap, RingMapping txMap,
                EventFd fromGuest, EventFd toGuest, MemorySegment userData) {
        this.server = server;
        this.offer = offer;
        this.ringGpadl = ringGpadl;
        this.rxMap = rxMap;
        this.txMap = txMap;
        this.fromGuest = fromGuest;
        this.wakeupView = fromGuest.view();
        this.toGuest = toGuest;
        this.userData = userData;
        Doorbell signalGuest = toGuest::signal;
        this.rx = rxMap.ring(signalGuest);
        this.tx = txMap.ring(signalGuest);
    }

    @Override
    public String partition() {
        return server.partition();
    }

    @Override
    public UUID interfaceType() {
        return offer.vsp().interfaceType();
    }

    @Override
    public UUID instance() {
        return offer.vsp().instance();
    }

    @Override
    public int relid() {
        return offer.relid();
    }

    @Override
    public int subChannelIndex() {
        return offer.subChannelIndex();
    }

    @Override
    public MemorySegment openUserData() {
        return userData;
    }

    @Override
    public GuestMemory guestMemory() {
        return server.memory();
    }

    @Override
    public Gpadl gpadl(int handle) {
        return server.gpadl(handle);
    }

    @Override
    public boolean tryWrite(int type, int flags, long transId, MemorySegment src, long srcOffset, int length) {
        return tx.tryWrite(type, flags, transId, src, srcOffset, length);
    }

    @Override
    public VmbusRing tx() {
        return tx;
    }

    @Override
    public boolean requestSpace(int bytes) {
        return tx.requestSpace(bytes);
    }

    @Override
    public void wakeup() {
        synchronized (wakeupView) {
            wakeupView.signal();
        }
    }

    @Override
    public void offerSubChannels(int count) {
        server.offerSubChannels(offer.vsp(), count);
    }

    @Override
    public void fault(String reason) {
        ChannelAgent a = agent;
        if (a != null) {
            a.fault(reason);
        } else {
            server.channelFault(this, reason);
        }
    }

    /**
     * Stops the agent (waking it first), closes the handler, unmaps the rings and closes the doorbells. The
     * rings are accessed through raw addresses ({@link VmbusRing}), so they are unmapped only once the agent
     * thread has ended and the handler has stopped its own threads ({@code onClose}); an agent that will not
     * end keeps its mappings (a leak, logged) rather than fault on unmapped memory.
     */
    void shutdown() {
        AgentRunner r = runner;
        boolean agentEnded = true;
        if (r != null) {
            Thread agentThread = r.thread(); // close() replaces it with a tombstone
            agent.stop(); // before the wakeup, so the woken agent cannot go back to sleep
            wakeup();
            r.close();
            agentEnded = awaitEnd(agentThread);
        }
        if (handler != null) {
            try {
                handler.onClose();
            } catch (RuntimeException e) {
                // a VSP failing to close must not keep the partition's resources alive
            }
        }
        if (agentEnded) {
            rxMap.close();
            txMap.close();
        } else {
            LOG.log(System.Logger.Level.ERROR, "channel agent did not end; its rings stay mapped relid=" + relid());
        }
        fromGuest.close();
        toGuest.close();
    }

    /**
     * AgentRunner.close returns early when the closing thread is interrupted or another close is under way;
     * the unmap must still wait for the agent itself (interrupts are kept for the caller).
     */
    private static boolean awaitEnd(Thread agentThread) {
        if (agentThread == null) {
            return true; // never started
        }
        if (agentThread == Thread.currentThread()) {
            return false; // the agent cannot unmap the rings it is still running on
        }
        long deadline = System.nanoTime() + AGENT_END_TIMEOUT_NANOS;
        boolean interrupted = false;
        while (agentThread.isAlive() && System.nanoTime() < deadline) {
            try {
                agentThread.join(100);
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        return !agentThread.isAlive();
    }

    static boolean isEventFd(int fd) {
        try {
            String link = java.nio.file.Files.readSymbolicLink(java.nio.file.Path.of("/proc/self/fd/" + fd)).toString();
            return link.equals("anon_inode:[eventfd]");
        } catch (java.io.IOException e) {
            return false;
        }
    }

    static void makeNonBlocking(int fd) {
        int fl = Fd.fcntl(fd, 3 /* F_GETFL */, 0);
        Fd.fcntl(fd, 4 /* F_SETFL */, fl | 0x800 /* O_NONBLOCK */);
    }
}
