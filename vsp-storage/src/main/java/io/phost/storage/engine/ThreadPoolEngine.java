package io.phost.storage.engine;

import io.phost.core.sys.DirectFile;
import io.phost.core.sys.Errno;
import io.phost.core.sys.NativeException;
import io.phost.vhdx.VirtualDisk;
import org.agrona.concurrent.ManyToManyConcurrentArrayQueue;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * The portable {@link IoEngine}: blocking calls on a shared pool of worker threads. Works for every disk:
 * fd-backed disks ({@link io.phost.vhdx.DiskCapabilities#fd()}) go straight to preadv/pwritev on their fd (no allocation), other
 * {@link VirtualDisk}s (VHDX, VHD) through their read/write methods, which split at block boundaries.
 *
 * <p>Op slots are preallocated (one per queue-depth unit); workers hand finished slots back through an
 * Agrona many-to-one queue that the owner drains in {@link #poll}. The shared {@link Workers} take ops from
 * an Agrona many-to-many queue and park when it is empty; nothing is allocated per request (a
 * {@code ThreadPoolExecutor} was: its workers' condition waits cost 40-60 B per request).
 */
public final class ThreadPoolEngine implements IoEngine {
    private static final int READ = 1;
    private static final int WRITE = 2;
    private static final int FLUSH = 3;
    private static final int UNMAP = 4;
    private static final int ZEROES = 5;

    private static final Workers POOL = new Workers(Math.max(4, Integer.getInteger("phost.storage.ioThreads", 16)));

    private final VirtualDisk disk;
    private final int fd;
    private final int depth;
    private final ArrayDeque<Op> free;
    private final ArrayDeque<Op> pending;
    private final ManyToOneConcurrentArrayQueue<Op> done;
    private volatile Thread waiter;
    private int inFlight;

    public ThreadPoolEngine(VirtualDisk disk, int depth) {
        this.disk = disk;
        this.fd = disk.capabilities().fd();
        this.depth = depth;
        this.free = new ArrayDeque<>(depth);
        this.pending = new ArrayDeque<>(depth);
        this.done = new ManyToOneConcurrentArrayQueue<>(depth);
        for (int i = 0; i < depth; i++) {
            free.push(new Op());
        }
    }

    private boolean queue(int kind, long offset, long length, IoVecs vecs, long userData) {
        Op op = free.poll();
        if (op == null) {
            return false;
        }
        op.kind = kind;
        op.offset = offset;
        op.length = length;
        op.vecs = vecs;
        op.userData = userData;
        pending.add(op);
        inFlight++;
        return true;
    }

    @Override
    public boolean tryRead(long offset, IoVecs vecs, long userData) {
        return queue(READ, offset, vecs.totalLength(), vecs, userData);
    }

    @Override
    public boolean tryWrite(long offset, IoVecs vecs, long userData) {
        return queue(WRITE, offset, vecs.totalLength(), vecs, userData);
    }

    @Override
    public boolean tryFlush(long userData) {
        return queue(FLUSH, 0, 0, null, userData);
    }

    @Override
    public boolean tryUnmap(long offset, long length, long userData) {
        return queue(UNMAP, offset, length, null, userData);
    }

    @Override
    public boolean tryWriteZeroes(long offset, long length, long userData) {
        return queue(ZEROES, offset, length, null, userData);
    }

    @Override
    public int submit() {
        int n = 0;
        Op op;
        while ((op = pending.poll()) != null) {
            POOL.execute(op);
            n++;
        }
        return n;
    }

    @Override
    public int poll(IoCompletionHandler handler) {
        int n = 0;
        Op op;
        while ((op = done.poll()) != null) {
            long userData = op.userData;
            long result = op.result;
            op.vecs = null;
            free.push(op);
            inFlight--;
            handler.onIoComplete(userData, result);
            n++;
        }
        return n;
    }

    @Override
    public int await(IoCompletionHandler handler, long timeoutNanos) {
        if (inFlight == 0) {
            return 0;
        }
        submit();
        if (done.isEmpty()) {
            waiter = Thread.currentThread();
            // Re-check after publishing the waiter: a worker that finished in between has either seen the
            // waiter (and will unpark) or its slot is already visible in `done`.
            if (done.isEmpty()) {
                LockSupport.parkNanos(this, timeoutNanos);
            }
            waiter = null;
        }
        return poll(handler);
    }

    @Override
    public int inFlight() {
        return inFlight;
    }

    @Override
    public int depth() {
        return depth;
    }

    @Override
    public String name() {
        return "threads";
    }

    @Override
    public void close() {
        drain();
    }

    private final class Op implements Runnable {
        int kind;
        long offset;
        long length;
        IoVecs vecs;
        long userData;
        volatile long result;

        @Override
        public void run() {
            long r;
            try {
                r = execute();
            } catch (NativeException e) {
                r = -e.errno();
            } catch (IOException | RuntimeException e) {
                r = io.phost.core.sys.DiskFullException.isDiskFull(e) ? -Errno.ENOSPC : -Errno.EIO;
            }
            result = r;
            while (!done.offer(this)) {
                Thread.onSpinWait(); // cannot happen: the queue holds every slot
            }
            Thread w = waiter;
            if (w != null) {
                LockSupport.unpark(w);
            }
        }

        private long execute() throws IOException {
            switch (kind) {
                case READ, WRITE -> {
                    if (fd >= 0) {
                        return vectored(kind == READ);
                    }
                    long pos = offset;
                    for (int i = 0; i < vecs.count(); i++) {
                        if (kind == READ) {
                            disk.read(pos, vecs.segmentAt(i));
                        } else {
                            disk.write(pos, vecs.segmentAt(i));
                        }
                        pos += vecs.lengthAt(i);
                    }
                    return length;
                }
                case FLUSH -> disk.flush();
                case UNMAP -> disk.unmap(offset, length);
                case ZEROES -> disk.writeZeroes(offset, length);
                default -> throw new IllegalStateException("op " + kind);
            }
            return 0;
        }

        /** preadv/pwritev on the fd, looping on short transfers for multi-entry lists. */
        private long vectored(boolean read) {
            if (vecs.count() == 1) {
                if (read) {
                    long n = DirectFile.pread(fd, vecs.baseAt(0), length, offset);
                    return n;
                }
                DirectFile.pwrite(fd, vecs.baseAt(0), length, offset);
                return length;
            }
            long n = read ? DirectFile.preadv(fd, vecs.arrayAddress(), vecs.count(), offset)
                : DirectFile.pwritev(fd, vecs.arrayAddress(), vecs.count(), offset);
            if (n < 0 || n == length) {
                return n;
            }
            // Short vectored transfer (signals, page-cache pressure): finish entry by entry.
            long skip = n;
            long pos = offset + n;
            for (int i = 0; i < vecs.count(); i++) {
                long len = vecs.lengthAt(i);
                if (skip >= len) {
                    skip -= len;
                    continue;
                }
                long base = vecs.baseAt(i) + skip;
                long rest = len - skip;
                skip = 0;
                if (read) {
                    long got = DirectFile.pread(fd, base, rest, pos);
                    if (got < rest) {
                        return pos + got - offset;
                    }
                } else {
                    DirectFile.pwrite(fd, base, rest, pos);
                }
                pos += rest;
            }
            return length;
        }
    }

    /**
     * The worker threads every thread-pool engine shares, started as load needs them (up to {@code max}) and
     * then kept. An idle worker registers itself and parks; a submitter wakes one registered worker.
     * <pre>
     *   execute: work.offer(op) ─▶ idle.poll() ─▶ unpark(w)
     *   worker:  work.poll() ─empty─▶ spin ─▶ idle.offer(self) ─▶ work.poll() again ─empty─▶ park
     * </pre>
     * Either the submitter finds the worker registered or the worker's second look finds the op (both
     * queues order their offers and polls), so no wakeup is lost.
     */
    private static final class Workers {
        private static final int SPINS = 100;
        private final ManyToManyConcurrentArrayQueue<Runnable> work = new ManyToManyConcurrentArrayQueue<>(1 << 16);
        private final ManyToManyConcurrentArrayQueue<Worker> idle;
        private final AtomicInteger started = new AtomicInteger();
        private final int max;

        Workers(int max) {
            this.max = max;
            this.idle = new ManyToManyConcurrentArrayQueue<>(max);
        }

        void execute(Runnable op) {
            while (!work.offer(op)) {
                Thread.onSpinWait(); // 64 Ki ops queued: only when engines together hold that many
            }
            Worker w = idle.poll();
            if (w != null) {
                w.registered.set(false);
                LockSupport.unpark(w);
            } else {
                startAnother();
            }
        }

        private void startAnother() {
            int n = started.get();
            if (n < max && started.compareAndSet(n, n + 1)) {
                new Worker().start();
            }
        }

        private final class Worker extends Thread {
            final AtomicBoolean registered = new AtomicBoolean();

            Worker() {
                super("storage-io");
                setDaemon(true);
            }

            @Override
            public void run() {
                for (;;) {
                    Runnable op = next();
                    if (op != null) {
                        op.run();
                    } else {
                        LockSupport.park(this);
                    }
                }
            }

            /** The next op, or null after registering as idle (the caller parks). */
            private Runnable next() {
                Runnable op = work.poll();
                for (int i = 0; op == null && i < SPINS; i++) {
                    Thread.onSpinWait();
                    op = work.poll();
                }
                if (op == null && registered.compareAndSet(false, true) && !idle.offer(this)) {
                    registered.set(false); // cannot happen: idle holds every worker
                }
                return op != null ? op : work.poll();
            }
        }
    }
}
