package io.phost.core.vmbus;

import java.util.function.Consumer;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.AgentTerminationException;

/**
 * Drains one channel queue: reads guest packets in place and runs the handler's own work. A hostile ring
 * (any {@link RingException} or {@link GuestMemoryException} escaping the handler) or a handler calling
 * {@link ChannelContext#fault} ends the agent and reports the reason; the partition's control thread
 * then resets the channel. Role name: {@code <vsp>-<partition>-q<subchannel>}.
 */
public final class ChannelAgent implements Agent {
    /** Packets per duty cycle before giving {@link ChannelHandler#doWork} a turn. */
    public static final int BATCH = 64;

    private final String roleName;
    private final VmbusRing rx;
    private final VmbusRing tx;
    private final ChannelHandler handler;
    private final Consumer<String> onFault;
    /** Held through each duty cycle when another thread also writes {@link #tx} (see the handler's lock). */
    private final RingWriterLock writerLock;
    private volatile String pendingFault;
    private volatile boolean stopping;

    /**
     * @param tx the host→guest ring; replies written during one duty cycle are published together
     *           (one index store, one fence, at most one signal), or null
     */
    public ChannelAgent(String roleName, VmbusRing rx, VmbusRing tx, ChannelHandler handler, Consumer<String> onFault) {
        this.roleName = roleName;
        this.rx = rx;
        this.tx = tx;
        this.handler = handler;
        this.onFault = onFault;
        this.writerLock = handler.ringWriterLock();
    }

    @Override
    public int doWork() {
        if (stopping) {
            throw new AgentTerminationException(true);
        }
        int work = 0;
        if (writerLock != null) {
            writerLock.lock();
        }
        if (tx != null) {
            tx.beginBatch();
        }
        try {
            work = rx.tryRead(handler, BATCH);
            work += handler.doWork();
        } catch (RingException | GuestMemoryException e) {
            fault(e.getMessage());
        } finally {
            try {
                if (tx != null) {
                    tx.endBatch(); // publishing validates the guest's read_index: a bad one faults this channel too
                }
            } catch (RingException e) {
                fault(e.getMessage());
            } finally {
                if (writerLock != null) {
                    writerLock.unlock();
                }
            }
        }
        String f = pendingFault;
        if (f != null) {
            onFault.accept(f);
            throw new AgentTerminationException(f);
        }
        return work;
    }

    /** Ends the agent after the current packet with {@code reason} (from the handler via the context). */
    void fault(String reason) {
        if (pendingFault == null) {
            pendingFault = reason;
        }
    }

    /**
     * Ends the agent at its next duty cycle. Set before the agent is woken for a close: woken first, it could
     * loop and fall asleep again before the runner's own running flag was cleared, and sleep out its whole
     * doorbell timeout.
     */
    void stop() {
        stopping = true;
    }

    @Override
    public String roleName() {
        return roleName;
    }
}
