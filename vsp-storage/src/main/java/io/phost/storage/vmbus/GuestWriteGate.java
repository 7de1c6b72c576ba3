package io.phost.storage.vmbus;

import io.phost.core.ic.WriteQuiescer;

import java.time.Duration;

/**
 * The guest storage workload's freeze for application-consistent checkpoints: while held, its jobs start no
 * new command; {@link #freeze} returns once every job has nothing in flight (each waits in {@link #awaitThaw})
 * and the disk was flushed (SYNCHRONIZE CACHE through {@code flush}), so the host's checkpoint holds every write
 * the workload made and none half-done.
 */
final class GuestWriteGate implements WriteQuiescer {
    private final Runnable flush;
    private volatile boolean held;
    private int participants;
    private int quiet;

    GuestWriteGate(Runnable flush) {
        this.flush = flush;
    }

    synchronized void join() {
        participants++;
    }

    /** A job that ended: nothing of it is in flight any more. */
    synchronized void leave() {
        participants--;
        notifyAll();
    }

    boolean held() {
        return held;
    }

    /** Called by a job with nothing in flight while {@link #held}: waits for the thaw. */
    synchronized void awaitThaw() throws InterruptedException {
        quiet++;
        notifyAll();
        try {
            while (held) {
                wait();
            }
        } finally {
            quiet--;
        }
    }

    @Override
    public synchronized boolean freeze(Duration within) {
        held = true;
        long deadline = System.nanoTime() + within.toNanos();
        try {
            while (quiet < participants) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    release();
                    return false;
                }
                wait(Math.max(1, left / 1_000_000));
            }
            flush.run();
            return true;
        } catch (InterruptedException | RuntimeException e) {
            release();
            return false;
        }
    }

    @Override
    public synchronized boolean thaw() {
        if (!held) {
            return false;
        }
        release();
        return true;
    }

    private void release() {
        held = false;
        notifyAll();
    }
}
