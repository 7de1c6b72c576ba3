package io.phost.storage.engine;

import io.phost.core.sys.Errno;
import io.phost.vhdx.MappedDisk;

import java.io.IOException;

/**
 * {@link IoEngine} for image formats (VHDX, VHD) whose steady-state I/O is a plain transfer on the image
 * file: each read/write asks the disk to map its range ({@link MappedDisk#mapRead}/{@link MappedDisk#mapWrite});
 * a mapped request goes to an {@link IoUringEngine} on the image's fd (no thread hop), anything else
 * (allocation, bitmaps, parent reads, block-crossing ranges, flush, unmap) to a {@link ThreadPoolEngine}
 * that calls the disk's own methods. A request split across blocks goes to the slow path whole.
 *
 * <pre>
 *   tryRead/tryWrite --map >= 0 and aligned--> fast (io_uring, image fd) --res == length--> deliver
 *          |                                                             --otherwise------> retry on slow (once)
 *          +--------map == -1 ---------------> slow (threads, disk.read/write) -----------> deliver
 *   tryFlush/tryUnmap/tryWriteZeroes --------> slow (disk.flush: fdatasync covers fast-path writes too)
 * </pre>
 *
 * <p>A fast-path failure or short transfer (EINVAL from an O_DIRECT alignment the device refuses, a read
 * past the end of a file another writer truncated) is retried once on the slow path, which is correct for
 * every range; EINVAL also raises the alignment to 4 KiB, then turns the fast path off for this engine.
 *
 * <p>Single-threaded like every engine: the owning queue agent calls everything. Request state lives in
 * preallocated slot arrays; sub-engine completions carry the slot index. Nothing is allocated per I/O.
 * When both paths have requests in flight, {@link #await} waits on the ring in slices of
 * {@link #SLICE_NANOS} and polls the workers in between (worker completions cannot wake io_uring_enter).
 */
public final class MappedDiskEngine implements IoEngine {
    /** Longest wait on the ring while slow-path requests are also in flight (bounds their extra latency). */
    static final long SLICE_NANOS = 50_000L;

    private static final int READ = 1;
    private static final int WRITE = 2;
    private static final int OTHER = 3;

    private final MappedDisk disk;
    private final IoUringEngine fast;
    private final ThreadPoolEngine slow;
    private final int depth;
    private final int[] freeSlots;
    private int freeCount;
    private final int[] kind;
    private final long[] offset;
    private final long[] length;
    private final IoVecs[] vecs;
    private final long[] userData;
    private final Fast onFast = new Fast();
    private final Slow onSlow = new Slow();
    private int alignment;
    private boolean fastOff;
    private boolean slowPending;
    private int inFlight;
    private int delivered;
    private IoCompletionHandler handler;
    private long fastIos;
    private long slowIos;
    private long retried;

    private MappedDiskEngine(MappedDisk disk, int fd, int depth) {
        this.disk = disk;
        this.depth = depth;
        this.fast = new IoUringEngine(fd, depth, IoUringEngine.QD1_SYNC && disk.mappedAlignment() > 1); // as IoEngines
        this.slow = new ThreadPoolEngine(disk, depth);
        this.alignment = Math.max(1, disk.mappedAlignment());
        this.freeSlots = new int[depth];
        for (int i = 0; i < depth; i++) {
            freeSlots[i] = depth - 1 - i;
        }
        this.freeCount = depth;
        this.kind = new int[depth];
        this.offset = new long[depth];
        this.length = new long[depth];
        this.vecs = new IoVecs[depth];
        this.userData = new long[depth];
    }

    /**
     * An engine for {@code disk}, or null when it offers no fd for mapped I/O (closed, cannot reopen) or no
     * ring can be set up on it (RLIMIT_MEMLOCK, ENOMEM): the caller then uses the thread pool alone.
     */
    public static MappedDiskEngine open(MappedDisk disk, int depth) {
        try {
            int fd = disk.mappedFd();
            return fd < 0 ? null : new MappedDiskEngine(disk, fd, depth);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    @Override
    public boolean tryRead(long off, IoVecs v, long u) {
        return rw(READ, off, v, u);
    }

    @Override
    public boolean tryWrite(long off, IoVecs v, long u) {
        return rw(WRITE, off, v, u);
    }

    private boolean rw(int k, long off, IoVecs v, long u) {
        if (freeCount == 0) {
            return false;
        }
        int s = freeSlots[freeCount - 1];
        long len = v.totalLength();
        if (!fastOff) {
            long at = k == READ ? disk.mapRead(off, len) : disk.mapWrite(off, len);
            if (at >= 0 && aligned(at, len, v)
                && (k == READ ? fast.tryRead(at, v, s) : fast.tryWrite(at, v, s))) {
                fastIos++;
                return taken(s, k, off, len, v, u);
            }
        }
        if (k == READ ? slow.tryRead(off, v, s) : slow.tryWrite(off, v, s)) {
            slowIos++;
            slowPending = true;
            return taken(s, k, off, len, v, u);
        }
        return false;
    }

    private boolean aligned(long at, long len, IoVecs v) {
        int a = alignment;
        return a == 1 || (((at | len) & (a - 1)) == 0 && v.aligned(a));
    }

    private boolean taken(int s, int k, long off, long len, IoVecs v, long u) {
        freeCount--;
        kind[s] = k;
        offset[s] = off;
        length[s] = len;
        vecs[s] = v;
        userData[s] = u;
        inFlight++;
        return true;
    }

    @Override
    public boolean tryFlush(long u) {
        if (freeCount == 0 || !slow.tryFlush(freeSlots[freeCount - 1])) {
            return false;
        }
        slowPending = true;
        return taken(freeSlots[freeCount - 1], OTHER, 0, 0, null, u);
    }

    @Override
    public boolean tryUnmap(long off, long len, long u) {
        if (freeCount == 0 || !slow.tryUnmap(off, len, freeSlots[freeCount - 1])) {
            return false;
        }
        slowPending = true;
        return taken(freeSlots[freeCount - 1], OTHER, off, len, null, u);
    }

    @Override
    public boolean tryWriteZeroes(long off, long len, long u) {
        if (freeCount == 0 || !slow.tryWriteZeroes(off, len, freeSlots[freeCount - 1])) {
            return false;
        }
        slowPending = true;
        return taken(freeSlots[freeCount - 1], OTHER, off, len, null, u);
    }

    @Override
    public int submit() {
        int n = fast.submit();
        if (slowPending) {
            slowPending = false;
            n += slow.submit();
        }
        return n;
    }

    @Override
    public int poll(IoCompletionHandler h) {
        if (inFlight == 0) {
            return 0;
        }
        handler = h;
        delivered = 0;
        fast.poll(onFast);
        slow.poll(onSlow);
        return finishRound();
    }

    @Override
    public int await(IoCompletionHandler h, long timeoutNanos) {
        if (inFlight == 0) {
            return 0;
        }
        submit();
        handler = h;
        delivered = 0;
        fast.poll(onFast);
        slow.poll(onSlow);
        if (delivered == 0) {
            if (slow.inFlight() == 0) {
                fast.await(onFast, timeoutNanos);
            } else if (fast.inFlight() == 0) {
                slow.await(onSlow, timeoutNanos);
            } else {
                fast.await(onFast, Math.min(timeoutNanos, SLICE_NANOS));
                slow.poll(onSlow);
            }
        }
        return finishRound();
    }

    private int finishRound() {
        if (slowPending) {
            slowPending = false;
            slow.submit(); // fast-path requests that a completion sent to the slow path for a retry
        }
        handler = null;
        return delivered;
    }

    private void deliver(int s, long result) {
        long u = userData[s];
        vecs[s] = null;
        freeSlots[freeCount++] = s;
        inFlight--;
        delivered++;
        handler.onIoComplete(u, result);
    }

    /** Completions from the ring: deliver, or send the request to the slow path once. */
    private final class Fast implements IoCompletionHandler {
        @Override
        public void onIoComplete(long slot, long result) {
            int s = (int) slot;
            if (result == length[s]) {
                deliver(s, result);
                return;
            }
            if (result == -Errno.EINVAL) {
                // O_DIRECT refused the alignment (a 4 KiB-sector host device): raise it once, then give up.
                if (alignment > 1 && alignment < 4096) {
                    alignment = 4096;
                } else {
                    fastOff = true;
                }
            }
            retried++;
            boolean ok = kind[s] == READ ? slow.tryRead(offset[s], vecs[s], s) : slow.tryWrite(offset[s], vecs[s], s);
            if (ok) {
                slowPending = true;
            } else {
                deliver(s, result < 0 ? result : -Errno.EIO); // cannot happen: the slow engine has a slot per ours
            }
        }
    }

    /** Completions from the workers: final. */
    private final class Slow implements IoCompletionHandler {
        @Override
        public void onIoComplete(long slot, long result) {
            deliver((int) slot, result);
        }
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
        return "io_uring-mapped";
    }

    /** Reads and writes that went to the ring. */
    public long fastIos() {
        return fastIos;
    }

    /** Requests that went to the disk's own methods on the worker pool (retries not included). */
    public long slowIos() {
        return slowIos;
    }

    /** Ring requests that failed or came back short and were redone on the slow path. */
    public long retried() {
        return retried;
    }

    @Override
    public void close() {
        drain();
        fast.close();
        slow.close();
    }
}
