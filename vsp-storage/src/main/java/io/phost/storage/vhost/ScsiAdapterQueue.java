package io.phost.storage.vhost;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.MemorySegment;

/**
 * A virtqueue that is an adapter over a storage-core {@link ScsiQueue}: the drain loop, completion waiting,
 * draining on close and batched used-ring notification live here; a subclass only decodes one chain into a
 * slot ({@link #start}) and encodes completions back ({@link ScsiQueue.Completion#onScsiComplete}), calling
 * {@link #push} for each chain it returns. Nothing is allocated per request.
 */
abstract class ScsiAdapterQueue implements VirtqueueHandler, ScsiQueue.Completion {
    // SAFETY: used only at host addresses of chain elements, which the virtqueue translated into mapped
    // guest regions and bounds-checked; the regions stay mapped while the queue runs.
    static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    /** How long close waits for in-flight commands before closing the core queue anyway. */
    private static final long CLOSE_DRAIN_NANOS = 30_000_000_000L;
    /** Longest sleep through a hand-off engine (a completion or a kick ends it first); the timed slice is 200 µs. */
    private static final long HANDOFF_WAIT_NANOS = 100_000_000L;

    final ScsiQueue scsi;
    private Virtqueue queue;
    private boolean notifyPending;
    private long returned;

    ScsiAdapterQueue(ScsiTarget target, int depth, int maxSegments) {
        this.scsi = new ScsiQueue(target, depth, maxSegments, this);
    }

    /** Decodes chain {@code c} into slot {@code r} and submits it, or completes it at once through {@link #push}. */
    abstract void start(ScsiRequest r, DescriptorChain c);

    @Override
    public final int doWork(Virtqueue q, DescriptorChain chain) {
        queue = q;
        int work = 0;
        while (true) {
            ScsiRequest r = scsi.tryAcquire();
            if (r == null) {
                break; // every slot busy: the rest waits in the ring (a full queue is not an error)
            }
            if (!q.tryPop(chain)) {
                scsi.release(r);
                break;
            }
            start(r, chain);
            work++;
        }
        work += scsi.doWork();
        flushNotify();
        return work;
    }

    /** A driver waits for each answer: the worker may poll for its next request ({@code [host] polling}). */
    @Override
    public final boolean pollsWhileIdle() {
        return true;
    }

    @Override
    public final int inFlight() {
        return scsi.outstanding();
    }

    @Override
    public final void awaitCompletion(long timeoutNanos) {
        scsi.awaitWork(timeoutNanos);
        flushNotify();
    }

    @Override
    public final void awaitCompletion(EventFd kick, long timeoutNanos) {
        DeviceWait device = scsi.waiter();
        if (kick != null && device.busy()) { // busy(): the engines in flight hand off (librbd; io_uring opt-in)
            // A completion or a kick wakes it; doWork reaps. The worker's short slice only bounds how late it sees a
            // stop, and a stop waits for the requests in flight anyway (close drains them): sleep until one is done.
            // A polling worker may have turned the driver's kicks off: ask for them again, or a request queued
            // behind those in flight would wait for their completion. (One that raced in before this is popped
            // after the next completion, which the requests in flight guarantee.)
            if (queue != null) {
                queue.enableKicks();
            }
            device.await(kick, Math.max(timeoutNanos, HANDOFF_WAIT_NANOS));
        } else {
            scsi.awaitWork(timeoutNanos);
        }
        flushNotify();
    }

    @Override
    public final void close(Virtqueue q) {
        queue = q;
        long deadline = System.nanoTime() + CLOSE_DRAIN_NANOS;
        while (scsi.outstanding() > 0 && System.nanoTime() - deadline < 0) {
            scsi.awaitWork(1_000_000L);
        }
        scsi.close();
        flushNotify();
    }

    /** Returns chain {@code head} to the used ring; the guest is notified once per batch, in {@link #flushNotify}. */
    final void push(int head, int written) {
        queue.pushUsed(head, written);
        notifyPending = true;
        returned++;
    }

    @Override
    public final long chainsReturned() {
        return returned;
    }

    private void flushNotify() {
        if (notifyPending) {
            notifyPending = false;
            queue.notifyIfNeeded();
        }
    }

    /** Copies {@code length} bytes from the chain's device-readable bytes at {@code from} into {@code dst}. */
    static void gatherReadable(DescriptorChain c, long from, MemorySegment dst, long length) {
        long skip = from;
        long done = 0;
        for (int i = 0; i < c.readableCount() && done < length; i++) {
            long len = c.length(i);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            long n = Math.min(len - skip, length - done);
            MemorySegment.copy(EVERYTHING, c.address(i) + skip, dst, done, n);
            done += n;
            skip = 0;
        }
    }

    /**
     * Adds {@code length} bytes of the chain to {@code v}, starting {@code from} bytes into its readable
     * ({@code readable}) or writable bytes. False when the iovec list is full.
     */
    static boolean addRange(IoVecs v, DescriptorChain c, boolean readable, long from, long length) {
        int first = readable ? 0 : c.readableCount();
        int end = readable ? c.readableCount() : c.count();
        long skip = from;
        long left = length;
        for (int i = first; i < end && left > 0; i++) {
            long len = c.length(i);
            if (skip >= len) {
                skip -= len;
                continue;
            }
            long n = Math.min(len - skip, left);
            if (!v.tryAdd(c.address(i) + skip, n)) {
                return false;
            }
            left -= n;
            skip = 0;
        }
        return left == 0;
    }
}
