package io.phost.storage.nbd;

import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;

/**
 * Fixed worker threads for pipelined NBD requests that hand work over without allocating: tasks go
 * through a bounded array queue, idle workers wait on {@link LockSupport#park} and are listed (each at
 * most once) in a second array queue the submitter pops to wake one. A {@code ThreadPoolExecutor} on an
 * {@code ArrayBlockingQueue} allocates a lock-queue node whenever a worker blocks, i.e. on most requests.
 *
 * <pre>
 *   submitter: tasks.offer(r) ; w = idle.poll() ; if w: w.listed=false, unpark(w)
 *   worker:    r = tasks.poll() ; if r: run, loop
 *              else if listed.cas(false,true): idle.offer(me) ; r = tasks.poll() (re-check) ; if none: park
 * </pre>
 * The re-check closes the lost-wakeup race: the submitter's offer-then-poll and the worker's
 * list-then-poll are both ordered by the queues' CAS (full fences), so either the worker sees the task or
 * the submitter sees the worker. Spurious wakeups only cost a loop.
 */
final class NbdWorkerPool implements AutoCloseable {
    private final ManyToManyConcurrentArrayQueue<Runnable> tasks;
    private final ManyToManyConcurrentArrayQueue<Worker> idle;
    private final Worker[] workers;
    private volatile boolean closed;

    NbdWorkerPool(String name, int threads, int capacity) {
        this.tasks = new ManyToManyConcurrentArrayQueue<>(capacity);
        this.idle = new ManyToManyConcurrentArrayQueue<>(Math.max(2, threads));
        this.workers = new Worker[threads];
        for (int i = 0; i < threads; i++) {
            workers[i] = new Worker(name + "-" + i);
            workers[i].thread.start();
        }
    }

    /** Queues {@code r} and wakes an idle worker; false (nothing queued) when the queue is full or closed. */
    boolean trySubmit(Runnable r) {
        if (closed || !tasks.offer(r)) {
            return false;
        }
        Worker w = idle.poll();
        if (w != null) {
            w.listed.set(false);
            LockSupport.unpark(w.thread);
        }
        return true;
    }

    /** Stops the workers after the queued tasks ran (waits up to {@code millis} for each). */
    @Override
    public void close() {
        closed = true;
        for (Worker w : workers) {
            LockSupport.unpark(w.thread);
        }
    }

    void join(long millis) throws InterruptedException {
        for (Worker w : workers) {
            w.thread.join(millis);
        }
    }

    private final class Worker implements Runnable {
        final Thread thread;
        final AtomicBoolean listed = new AtomicBoolean();

        Worker(String name) {
            thread = new Thread(this, name);
            thread.setDaemon(true);
        }

        @Override
        public void run() {
            while (true) {
                Runnable r = tasks.poll();
                if (r != null) {
                    r.run();
                    continue;
                }
                if (closed) {
                    return;
                }
                if (listed.compareAndSet(false, true)) {
                    idle.offer(this); // capacity = threads and each worker is listed at most once: never full
                }
                r = tasks.poll();
                if (r != null) {
                    r.run();
                    continue;
                }
                LockSupport.park(this);
            }
        }
    }
}
