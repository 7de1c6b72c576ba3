package io.phost.network.vhost;

import io.phost.core.sys.EventFd;
import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;

/**
 * The queue worker's side of a virtio-net queue that the switch's agent serves itself ({@link GuestTxPath},
 * {@link GuestRxPath}): the worker only hands the started queue to the agent, relays the guest's kicks on a
 * transmit queue to it, and reports a ring the agent found hostile as this queue's error. It sleeps in poll(2)
 * on the kick otherwise, so frames cross no thread between the two ports' rings.
 * <pre>
 *   started: attach (on the agent)   kick: tx.kicked = true, wake the agent   close: detach (on the agent, waited for)
 *   agent hits a bad ring: failure + signal ──▶ doWork throws ──▶ the queue breaks as any other (err fd, lastError)
 * </pre>
 */
final class SwitchServedQueue implements VirtqueueHandler {
    private final VhostUserNetDevice device;
    private final NetQueuePair pair;
    /** Non-null for a transmit queue. */
    private final GuestTxPath tx;
    /** Non-null for a receive queue. */
    private final GuestRxPath rx;
    private final EventFd failed = EventFd.create();
    private volatile RuntimeException failure;
    /** Set on the control thread before the worker starts (Thread.start orders it), read by the worker. */
    private boolean attached;

    private SwitchServedQueue(VhostUserNetDevice device, NetQueuePair pair, GuestTxPath tx, GuestRxPath rx) {
        this.device = device;
        this.pair = pair;
        this.tx = tx;
        this.rx = rx;
    }

    static SwitchServedQueue transmit(VhostUserNetDevice device, NetQueuePair pair, GuestTxPath tx) {
        return new SwitchServedQueue(device, pair, tx, null);
    }

    static SwitchServedQueue receive(VhostUserNetDevice device, NetQueuePair pair, GuestRxPath rx) {
        return new SwitchServedQueue(device, pair, null, rx);
    }

    @Override
    public int doWork(Virtqueue q, DescriptorChain unused) {
        RuntimeException e = failure;
        if (e != null) {
            throw e;
        }
        if (tx != null) {
            tx.kicked = true;
            device.wakeSwitch();
        }
        return 0; // sleep until the next kick (or a failure signal)
    }

    @Override
    public void started(Virtqueue q) {
        attached = true;
        device.attach(pair, this, q);
    }

    GuestTxPath tx() {
        return tx;
    }

    GuestRxPath rx() {
        return rx;
    }

    /** Agent thread: the ring broke (already detached); the worker reports it when it wakes. */
    void fail(RuntimeException e) {
        failure = e;
        failed.signal(); // the worker waits on it (wakeupFd); it closes it only after detach, so it is open here
    }

    @Override
    public int inFlight() {
        return 0;
    }

    @Override
    public void awaitCompletion(long timeoutNanos) {
    }

    @Override
    public int wakeupFd() {
        return failed.fd();
    }

    @Override
    public void close(Virtqueue q) {
        if (attached) {
            device.detach(pair, this);
            attached = false;
        }
        failed.close();
    }
}
