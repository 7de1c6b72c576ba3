package io.phost.storage.engine;

import io.phost.core.sys.DirectFile;
import io.phost.core.sys.EventFd;
import io.phost.core.sys.IoUring;
import io.phost.core.sys.UringDoorbell;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@link IoEngine} over one io_uring bound to one fd. The fd is registered as fixed file 0 (saves the
 * per-I/O fget/fput); a caller may register one memory region (e.g. a guest's RAM) as fixed buffer 0, and
 * single-segment reads/writes inside it then use READ_FIXED/WRITE_FIXED (no per-I/O page pinning).
 * Submission is batched: {@code try*} only writes SQEs; {@link #submit} makes one io_uring_enter.
 * Single-threaded: the owning queue agent submits and reaps.
 *
 * <p><b>A lone request runs as psync (issue 19).</b> When a read or write is the only request of this
 * engine (nothing else in flight or queued), {@link #submit} runs it with one preadv/pwritev on the calling
 * thread, as fio's psync engine does, instead of an io_uring submit and a later wait: the thread sleeps in
 * the kernel and the device completion wakes it there, where io_uring at QD1 costs a submit, then polling or
 * a second io_uring_enter, and an extra wake-up. A second request queued before {@code submit} turns the lone
 * one back into an SQE, so any queue depth above one stays on io_uring. {@code -Dphost.storage.qd1Sync=false}
 * turns it off (comparison runs).
 */
public final class IoUringEngine implements IoEngine, IoUring.CqeHandler {
    private static final int FIXED_FILE = 0;
    /** Whether a lone read/write runs as one preadv/pwritev on the submitting thread (see the class comment). */
    public static final boolean QD1_SYNC = !"false".equals(System.getProperty("phost.storage.qd1Sync"));

    private static final int LONE_NONE = 0;
    private static final int LONE_QUEUED = 1;
    private static final int LONE_DONE = 2;

    private final IoUring ring;
    private final UringDoorbell doorbell;
    private final int fd;
    private final int depth;
    private final boolean loneSync;
    // The lone request: held back from the SQ ring until submit decides (LONE_QUEUED), then its result (LONE_DONE).
    private int loneState;
    private boolean loneRead;
    private long loneOffset;
    private IoVecs loneVecs;
    private long loneUserData;
    private long loneResult;
    private long loneRuns;
    private int unsubmitted;
    private int inFlight;
    private long fixedBase;
    private long fixedEnd;
    private IoCompletionHandler handler;

    /** Creates a ring of {@code depth} entries on {@code fd} (the caller keeps owning the fd). */
    public IoUringEngine(int fd, int depth) {
        this(fd, depth, QD1_SYNC);
    }

    /** As {@link #IoUringEngine(int, int)}; {@code loneSync} chooses whether a lone request runs as psync. */
    public IoUringEngine(int fd, int depth, boolean loneSync) {
        this.fd = fd;
        this.loneSync = loneSync;
        this.ring = IoUring.create(depth);
        try {
            ring.registerFiles(fd);
        } catch (RuntimeException e) {
            ring.close();
            throw e;
        }
        this.depth = ring.sqEntries();
        this.doorbell = new UringDoorbell(ring);
    }

    /**
     * Registers {@code region} as fixed buffer 0. Returns false when the kernel refuses (RLIMIT_MEMLOCK,
     * unsupported memory); I/O then simply uses READV/WRITEV.
     */
    public boolean registerBuffer(MemorySegment region) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment iov = arena.allocate(IoVecs.IOVEC_SIZE, 16);
            iov.set(ValueLayout.JAVA_LONG, 0, region.address());
            iov.set(ValueLayout.JAVA_LONG, 8, region.byteSize());
            if (ring.registerBuffers(iov.address(), 1) == 0) {
                fixedBase = region.address();
                fixedEnd = region.address() + region.byteSize();
                return true;
            }
            return false;
        }
    }

    /** True when a fixed buffer is registered (single-segment I/O inside it uses READ_FIXED/WRITE_FIXED). */
    public boolean hasFixedBuffer() {
        return fixedEnd != 0;
    }

    @Override
    public boolean tryRead(long offset, IoVecs vecs, long userData) {
        return rw(true, offset, vecs, userData);
    }

    @Override
    public boolean tryWrite(long offset, IoVecs vecs, long userData) {
        return rw(false, offset, vecs, userData);
    }

    private boolean rw(boolean read, long offset, IoVecs vecs, long userData) {
        if (inFlight >= depth) {
            return false;
        }
        if (loneSync && inFlight == 0) {
            loneState = LONE_QUEUED; // nothing else here: hold it back, submit decides
            loneRead = read;
            loneOffset = offset;
            loneVecs = vecs;
            loneUserData = userData;
            inFlight++;
            return true;
        }
        if (loneState == LONE_QUEUED && !unholdLone()) {
            return false;
        }
        return prepareRw(read, offset, vecs, userData);
    }

    /** A second request arrived before submit: the held lone request goes to the ring after all. */
    private boolean unholdLone() {
        inFlight--;
        loneState = LONE_NONE;
        IoVecs v = loneVecs;
        loneVecs = null;
        if (!prepareRw(loneRead, loneOffset, v, loneUserData)) {
            loneState = LONE_QUEUED; // the SQ ring is full (cannot happen below depth): keep holding it
            loneVecs = v;
            inFlight++;
            return false;
        }
        return true;
    }

    private boolean prepareRw(boolean read, long offset, IoVecs vecs, long userData) {
        boolean ok;
        if (vecs.count() == 1) {
            long base = vecs.baseAt(0);
            long len = vecs.lengthAt(0);
            if (len > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("single I/O larger than 2 GiB");
            }
            if (base >= fixedBase && base + len <= fixedEnd && fixedEnd != 0) {
                ok = ring.tryPrepare(read ? IoUring.OP_READ_FIXED : IoUring.OP_WRITE_FIXED, IoUring.IOSQE_FIXED_FILE,
                    FIXED_FILE, offset, base, (int) len, 0, userData, 0);
            } else {
                ok = ring.tryPrepare(read ? IoUring.OP_READ : IoUring.OP_WRITE, IoUring.IOSQE_FIXED_FILE,
                    FIXED_FILE, offset, base, (int) len, 0, userData, 0);
            }
        } else {
            ok = ring.tryPrepare(read ? IoUring.OP_READV : IoUring.OP_WRITEV, IoUring.IOSQE_FIXED_FILE,
                FIXED_FILE, offset, vecs.arrayAddress(), vecs.count(), 0, userData, 0);
        }
        return queued(ok);
    }

    @Override
    public boolean tryFlush(long userData) {
        if (inFlight >= depth || (loneState == LONE_QUEUED && !unholdLone())) {
            return false;
        }
        return queued(ring.tryPrepare(IoUring.OP_FSYNC, IoUring.IOSQE_FIXED_FILE, FIXED_FILE, 0, 0, 0,
            IoUring.IORING_FSYNC_DATASYNC, userData, 0));
    }

    @Override
    public boolean tryUnmap(long offset, long length, long userData) {
        return fallocate(DirectFile.FALLOC_FL_PUNCH_HOLE | DirectFile.FALLOC_FL_KEEP_SIZE, offset, length, userData);
    }

    @Override
    public boolean tryWriteZeroes(long offset, long length, long userData) {
        return fallocate(DirectFile.FALLOC_FL_ZERO_RANGE | DirectFile.FALLOC_FL_KEEP_SIZE, offset, length, userData);
    }

    private boolean fallocate(int mode, long offset, long length, long userData) {
        if (inFlight >= depth || (loneState == LONE_QUEUED && !unholdLone())) {
            return false;
        }
        // IORING_OP_FALLOCATE: off = offset, addr = length, len = mode.
        return queued(ring.tryPrepare(IoUring.OP_FALLOCATE, IoUring.IOSQE_FIXED_FILE, FIXED_FILE, offset, length,
            mode, 0, userData, 0));
    }

    private boolean queued(boolean ok) {
        if (ok) {
            unsubmitted++;
            inFlight++;
        }
        return ok;
    }

    @Override
    public int submit() {
        if (loneState == LONE_QUEUED) {
            runLone();
            return 1;
        }
        if (unsubmitted == 0) {
            return 0;
        }
        int n = ring.enter(unsubmitted, 0, false);
        if (n > 0) {
            unsubmitted -= n;
        }
        return Math.max(n, 0);
    }

    /** Runs the lone request as one preadv/pwritev here; {@link #poll} delivers its result. */
    private void runLone() {
        IoVecs v = loneVecs;
        long n = loneRead
            ? DirectFile.preadv(fd, v.arrayAddress(), v.count(), loneOffset)
            : DirectFile.pwritev(fd, v.arrayAddress(), v.count(), loneOffset);
        if (!loneRead && n >= 0 && n < v.totalLength()) {
            n = writeRest(v, loneOffset, n); // e.g. the file system filled up mid-way: the real errno (ENOSPC)
        }
        loneResult = n;
        loneState = LONE_DONE;
        loneRuns++;
    }

    /** Writes what a short pwritev left: the whole length, or -errno of the write that failed. */
    private long writeRest(IoVecs v, long offset, long done) {
        long at = offset;
        long skip = done;
        try {
            for (int s = 0; s < v.count(); s++) {
                long len = v.lengthAt(s);
                if (skip < len) {
                    DirectFile.pwrite(fd, v.baseAt(s) + skip, len - skip, at + skip);
                }
                skip = Math.max(0, skip - len);
                at += len;
            }
            return v.totalLength();
        } catch (io.phost.core.sys.NativeException e) {
            return -e.errno();
        }
    }

    /** How many requests ran as psync because they were alone (tests, status). */
    public long loneRuns() {
        return loneRuns;
    }

    @Override
    public int poll(IoCompletionHandler h) {
        int n = 0;
        if (loneState == LONE_DONE) {
            loneState = LONE_NONE;
            loneVecs = null;
            inFlight--;
            n = 1;
            h.onIoComplete(loneUserData, loneResult);
        }
        if (inFlight == 0 && !doorbell.armed()) {
            return n;
        }
        handler = h;
        n += ring.reap(this, Integer.MAX_VALUE);
        handler = null;
        return n;
    }

    @Override
    public int await(IoCompletionHandler h, long timeoutNanos) {
        if (inFlight == 0) {
            return 0;
        }
        if (loneState != LONE_NONE) {
            submit();
            return poll(h);
        }
        if (ring.cqReady() == 0) {
            int n = ring.enter(unsubmitted, 1, timeoutNanos);
            if (n > 0) {
                unsubmitted -= n;
            }
        }
        return poll(h);
    }

    @Override
    public boolean wakesOnDoorbell() {
        return true;
    }

    @Override
    public boolean awaitWithDoorbell(EventFd bell, long timeoutNanos) {
        if (loneState != LONE_NONE || ring.cqReady() > 0) {
            submit();
            return true; // a completion (or the doorbell's own CQE) is already there: poll takes it
        }
        int n = doorbell.await(bell, unsubmitted, timeoutNanos);
        if (n < 0) {
            return false;
        }
        unsubmitted -= Math.min(n, unsubmitted);
        return true;
    }

    @Override
    public boolean hasUnsubmitted() {
        return unsubmitted > 0 || loneState == LONE_QUEUED;
    }

    /** How many times a doorbell woke this engine's wait (tests). */
    public long doorbellRings() {
        return doorbell.rings();
    }

    @Override
    public void onCqe(long userData, int res, int flags) {
        if (doorbell.onCqe(userData)) {
            return;
        }
        inFlight--;
        handler.onIoComplete(userData, res);
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
        return "io_uring";
    }

    @Override
    public void close() {
        // Drain so the kernel never writes into buffers the caller frees after close.
        drain();
        ring.close();
    }
}
