package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A raw io_uring instance bound through FFM: {@code io_uring_setup}, {@code io_uring_enter} and
 * {@code io_uring_register} via {@code syscall(2)}, and the SQ/CQ rings and SQE array mapped with mmap.
 * One thread submits and reaps (the owner's queue agent); nothing here is thread-safe.
 *
 * <pre>
 * struct io_uring_params (120 bytes)            struct io_uring_sqe (64 bytes)
 *   0 sq_entries   4 cq_entries   8 flags          0 opcode u8   1 flags u8   2 ioprio u16   4 fd s32
 *  12 sq_thread_cpu 16 sq_thread_idle              8 off u64    16 addr u64   24 len u32
 *  20 features     24 wq_fd      28 resv[3]       28 rw_flags/fsync_flags u32
 *  40 sq_off { head, tail, ring_mask, ring_entries, 32 user_data u64   40 buf_index u16
 *              flags, dropped, array, resv1, user_addr u64 }  42 personality  44 splice_fd_in  48 addr3  56 pad
 *  80 cq_off { head, tail, ring_mask, ring_entries,
 *              overflow, cqes, flags, resv1, user_addr u64 }  struct io_uring_cqe (16): 0 user_data u64, 8 res s32, 12 flags
 *
 *  SQ ring:  head (kernel advances) .. tail (we advance, store-release) ; array[i] = SQE index (identity here)
 *  CQ ring:  head (we advance, store-release) .. tail (kernel advances, load-acquire)
 * </pre>
 */
public final class IoUring implements AutoCloseable {
    public static final byte OP_NOP = 0;
    public static final byte OP_READV = 1;
    public static final byte OP_WRITEV = 2;
    public static final byte OP_FSYNC = 3;
    public static final byte OP_READ_FIXED = 4;
    public static final byte OP_POLL_ADD = 6;
    public static final byte OP_WRITE_FIXED = 5;
    public static final byte OP_FALLOCATE = 17;
    public static final byte OP_READ = 22;
    public static final byte OP_WRITE = 23;

    /** sqe flags: the fd field is an index into the registered file table. */
    public static final byte IOSQE_FIXED_FILE = 1;
    /** poll32_events of a POLL_ADD: readable. */
    public static final int POLLIN = 1;
    /** fsync_flags: fdatasync semantics. */
    public static final int IORING_FSYNC_DATASYNC = 1;

    private static final int SYS_IO_URING_SETUP = 425;
    private static final int SYS_IO_URING_ENTER = 426;
    private static final int SYS_IO_URING_REGISTER = 427;
    private static final int IORING_ENTER_GETEVENTS = 1;
    private static final int IORING_ENTER_EXT_ARG = 8;
    private static final int ETIME = 62;
    private static final int IORING_REGISTER_BUFFERS = 0;
    private static final int IORING_REGISTER_FILES = 2;
    private static final int IORING_SETUP_CLAMP = 1 << 4;
    private static final int IORING_FEAT_SINGLE_MMAP = 1;
    private static final long IORING_OFF_SQ_RING = 0L;
    private static final long IORING_OFF_CQ_RING = 0x8000000L;
    private static final long IORING_OFF_SQES = 0x10000000L;

    private static final int PARAMS_SIZE = 120;
    private static final int SQ_OFF = 40;
    private static final int CQ_OFF = 80;
    public static final int SQE_SIZE = 64;
    public static final int CQE_SIZE = 16;

    private static final int PROT_READ = 1;
    private static final int PROT_WRITE = 2;
    private static final int MAP_SHARED = 1;
    private static final int MAP_POPULATE = 0x8000;

    private static final Linker.Option ERRNO = Linker.Option.captureCallState("errno");
    // long syscall(long number, ...): six variadic longs, the kernel reads the ones it needs.
    private static final MethodHandle SYSCALL = Native.LINKER.downcallHandle(
        Native.LIBC.find("syscall").orElseThrow(),
        FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG),
        ERRNO, Linker.Option.firstVariadicArg(1));
    // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
    private static final MethodHandle MMAP = Native.downcall("mmap",
        FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    // int munmap(void *addr, size_t length)
    private static final MethodHandle MUNMAP = Native.downcall("munmap",
        FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));

    private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

    private static volatile String unavailable;
    private static volatile boolean probed;

    private final int ringFd;
    private final int sqEntries;
    private final int cqEntries;
    private final int sqMask;
    private final int cqMask;
    private final MemorySegment sqRing;
    private final MemorySegment cqRing;
    private final MemorySegment sqes;
    private final long sqRingSize;
    private final long cqRingSize;
    private final long sqesSize;
    private final boolean singleMmap;
    private final long sqHeadOff;
    private final long sqTailOff;
    private final long cqHeadOff;
    private final long cqTailOff;
    private final long cqesOff;
    private final MemorySegment waitArg = Arena.ofAuto().allocate(40, 8);
    private int sqTail;       // our private copy; published with a store-release
    private int cqHead;       // our private copy; published with a store-release
    private boolean closed;

    private IoUring(int entries) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment params = arena.allocate(PARAMS_SIZE, 8);
            params.set(JAVA_INT, 8, IORING_SETUP_CLAMP);
            long fd = syscall(SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
            if (fd < 0) {
                throw new NativeException("io_uring_setup entries=" + entries, (int) -fd);
            }
            ringFd = (int) fd;
            sqEntries = params.get(JAVA_INT, 0);
            cqEntries = params.get(JAVA_INT, 4);
            int features = params.get(JAVA_INT, 20);
            singleMmap = (features & IORING_FEAT_SINGLE_MMAP) != 0;
            int sqArray = params.get(JAVA_INT, SQ_OFF + 24);
            sqHeadOff = params.get(JAVA_INT, SQ_OFF);
            sqTailOff = params.get(JAVA_INT, SQ_OFF + 4);
            cqHeadOff = params.get(JAVA_INT, CQ_OFF);
            cqTailOff = params.get(JAVA_INT, CQ_OFF + 4);
            cqesOff = params.get(JAVA_INT, CQ_OFF + 20);
            long sqSize = sqArray + (long) sqEntries * 4;
            long cqSize = cqesOff + (long) cqEntries * CQE_SIZE;
            if (singleMmap) {
                sqSize = Math.max(sqSize, cqSize);
                cqSize = sqSize;
            }
            sqRingSize = sqSize;
            cqRingSize = cqSize;
            sqesSize = (long) sqEntries * SQE_SIZE;
            MemorySegment sq = null;
            MemorySegment cq = null;
            MemorySegment se = null;
            try {
                sq = map(sqRingSize, IORING_OFF_SQ_RING);
                cq = singleMmap ? sq : map(cqRingSize, IORING_OFF_CQ_RING);
                se = map(sqesSize, IORING_OFF_SQES);
            } catch (RuntimeException e) {
                if (sq != null) {
                    unmap(sq, sqRingSize);
                }
                if (cq != null && !singleMmap) {
                    unmap(cq, cqRingSize);
                }
                DirectFile.close(ringFd);
                throw e;
            }
            sqRing = sq;
            cqRing = cq;
            sqes = se;
            sqMask = sqRing.get(JAVA_INT, params.get(JAVA_INT, SQ_OFF + 8));
            cqMask = cqRing.get(JAVA_INT, params.get(JAVA_INT, CQ_OFF + 8));
            // Identity mapping: SQ slot i always names SQE i, so only the tail moves afterwards.
            for (int i = 0; i < sqEntries; i++) {
                sqRing.set(JAVA_INT, sqArray + 4L * i, i);
            }
            sqTail = (int) INT.getAcquire(sqRing, sqTailOff);
            cqHead = (int) INT.getAcquire(cqRing, cqHeadOff);
        }
    }

    /** Creates a ring of at least {@code entries} SQEs (the kernel rounds up to a power of two). */
    public static IoUring create(int entries) {
        return new IoUring(entries);
    }

    /** True when this kernel and its sysctl/seccomp policy let us create a ring. Probed once. */
    public static boolean available() {
        return unavailableReason() == null;
    }

    /** Null when io_uring works, otherwise why not (for logs and status). */
    public static String unavailableReason() {
        if (!probed) {
            synchronized (IoUring.class) {
                if (!probed) {
                    try (IoUring ring = new IoUring(2)) {
                        ring.nop();
                        unavailable = null;
                    } catch (Throwable t) {
                        unavailable = String.valueOf(t.getMessage());
                    }
                    probed = true;
                }
            }
        }
        return unavailable;
    }

    private void nop() {
        if (!tryPrepare(OP_NOP, (byte) 0, -1, 0, 0, 0, 0, 42L, 0)) {
            throw new IllegalStateException("empty ring is full");
        }
        enter(1, 1, true);
        long[] got = new long[1];
        int n = reap((userData, res, flags) -> got[0] = userData, 1);
        if (n != 1 || got[0] != 42L) {
            throw new IllegalStateException("io_uring NOP did not complete");
        }
    }

    public int sqEntries() {
        return sqEntries;
    }

    public int cqEntries() {
        return cqEntries;
    }

    /** SQEs prepared but not yet handed to the kernel plus those the kernel has not consumed. */
    public int sqPending() {
        return sqTail - (int) INT.getAcquire(sqRing, sqHeadOff);
    }

    /**
     * Writes one SQE at the private tail and publishes it. Returns false (and writes nothing) when the SQ is
     * full. The kernel sees it at the next {@link #enter}.
     */
    public boolean tryPrepare(byte opcode, byte flags, int fd, long off, long addr, int len, int opFlags,
                              long userData, int bufIndex) {
        // Acquire pairs with the kernel's release of sq.head: the slot we reuse is no longer read.
        int head = (int) INT.getAcquire(sqRing, sqHeadOff);
        if (sqTail - head >= sqEntries) {
            return false;
        }
        long sqe = (long) (sqTail & sqMask) * SQE_SIZE;
        sqes.set(ValueLayout.JAVA_BYTE, sqe, opcode);
        sqes.set(ValueLayout.JAVA_BYTE, sqe + 1, flags);
        sqes.set(ValueLayout.JAVA_SHORT, sqe + 2, (short) 0);
        sqes.set(JAVA_INT, sqe + 4, fd);
        sqes.set(JAVA_LONG, sqe + 8, off);
        sqes.set(JAVA_LONG, sqe + 16, addr);
        sqes.set(JAVA_INT, sqe + 24, len);
        sqes.set(JAVA_INT, sqe + 28, opFlags);
        sqes.set(JAVA_LONG, sqe + 32, userData);
        sqes.set(ValueLayout.JAVA_SHORT, sqe + 40, (short) bufIndex);
        sqes.set(ValueLayout.JAVA_SHORT, sqe + 42, (short) 0);
        sqes.set(JAVA_INT, sqe + 44, 0);
        sqes.set(JAVA_LONG, sqe + 48, 0L);
        sqes.set(JAVA_LONG, sqe + 56, 0L);
        sqTail++;
        // Release: the SQE bytes above become visible before the kernel can observe the new tail.
        INT.setRelease(sqRing, sqTailOff, sqTail);
        return true;
    }

    /**
     * io_uring_enter: submits {@code toSubmit} published SQEs and, if {@code wait}, blocks until
     * {@code minComplete} completions are posted. Returns the number submitted, or -errno for EAGAIN/EBUSY/EINTR.
     */
    public int enter(int toSubmit, int minComplete, boolean wait) {
        long r = syscall(SYS_IO_URING_ENTER, ringFd, toSubmit, wait ? minComplete : 0,
            wait ? IORING_ENTER_GETEVENTS : 0, 0, 0);
        if (r < 0) {
            int e = (int) -r;
            if (e == Errno.EAGAIN || e == Errno.EBUSY || e == Errno.EINTR) {
                return (int) r;
            }
            throw new NativeException("io_uring_enter fd=" + ringFd, e);
        }
        return (int) r;
    }

    /**
     * io_uring_enter with a timeout (IORING_ENTER_EXT_ARG): submits {@code toSubmit} and waits until
     * {@code minComplete} completions are posted or {@code timeoutNanos} pass. Returns the number submitted
     * (0 on timeout/interrupt).
     */
    public int enter(int toSubmit, int minComplete, long timeoutNanos) {
        // struct io_uring_getevents_arg { u64 sigmask; u32 sigmask_sz; u32 min_wait_usec; u64 ts; } -> timespec
        waitArg.set(JAVA_LONG, 0, 0L);
        waitArg.set(JAVA_INT, 8, 0);
        waitArg.set(JAVA_INT, 12, 0);
        waitArg.set(JAVA_LONG, 16, waitArg.address() + 24);
        waitArg.set(JAVA_LONG, 24, timeoutNanos / 1_000_000_000L);
        waitArg.set(JAVA_LONG, 32, timeoutNanos % 1_000_000_000L);
        long r = syscall(SYS_IO_URING_ENTER, ringFd, toSubmit, minComplete,
            IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, waitArg.address(), 24);
        if (r < 0) {
            int e = (int) -r;
            if (e == Errno.EAGAIN || e == Errno.EBUSY || e == Errno.EINTR || e == ETIME) {
                return 0;
            }
            throw new NativeException("io_uring_enter(EXT_ARG) fd=" + ringFd, e);
        }
        return (int) r;
    }

    /** Receives completions; implementations must not allocate on the hot path. */
    @FunctionalInterface
    public interface CqeHandler {
        void onCqe(long userData, int res, int flags);
    }

    /** Reaps up to {@code max} CQEs without entering the kernel. */
    public int reap(CqeHandler handler, int max) {
        // Acquire pairs with the kernel's release of cq.tail: the CQE bytes are complete before we read them.
        int tail = (int) INT.getAcquire(cqRing, cqTailOff);
        int n = 0;
        while (cqHead != tail && n < max) {
            long cqe = cqesOff + (long) (cqHead & cqMask) * CQE_SIZE;
            long userData = cqRing.get(JAVA_LONG, cqe);
            int res = cqRing.get(JAVA_INT, cqe + 8);
            int flags = cqRing.get(JAVA_INT, cqe + 12);
            cqHead++;
            // Release before the callback so a handler that resubmits cannot make the kernel overrun us.
            INT.setRelease(cqRing, cqHeadOff, cqHead);
            handler.onCqe(userData, res, flags);
            n++;
        }
        return n;
    }

    /** CQEs posted but not yet reaped. */
    public int cqReady() {
        return (int) INT.getAcquire(cqRing, cqTailOff) - cqHead;
    }

    /** Registers {@code fds} as fixed files; SQEs then name them by index with {@link #IOSQE_FIXED_FILE}. */
    public void registerFiles(int... fds) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment arr = arena.allocate(4L * fds.length, 4);
            for (int i = 0; i < fds.length; i++) {
                arr.setAtIndex(JAVA_INT, i, fds[i]);
            }
            long r = syscall(SYS_IO_URING_REGISTER, ringFd, IORING_REGISTER_FILES, arr.address(), fds.length, 0, 0);
            if (r < 0) {
                throw new NativeException("io_uring_register(FILES) fd=" + ringFd, (int) -r);
            }
        }
    }

    /**
     * Registers fixed buffers from a native {@code struct iovec} array (READ_FIXED/WRITE_FIXED name them by
     * index). Returns 0 or -errno: registration is an optimisation and may be refused (RLIMIT_MEMLOCK).
     */
    public int registerBuffers(long iovecs, int count) {
        long r = syscall(SYS_IO_URING_REGISTER, ringFd, IORING_REGISTER_BUFFERS, iovecs, count, 0, 0);
        return r < 0 ? (int) r : 0;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        unmap(sqes, sqesSize);
        if (!singleMmap) {
            unmap(cqRing, cqRingSize);
        }
        unmap(sqRing, sqRingSize);
        DirectFile.close(ringFd);
    }

    private MemorySegment map(long size, long offset) {
        try {
            long addr = (long) MMAP.invokeExact(Native.errnoState(), 0L, size, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_POPULATE, ringFd, offset);
            if (addr == -1L) {
                throw new NativeException("mmap io_uring ring fd=" + ringFd + " offset=0x" + Long.toHexString(offset),
                    Native.lastErrno());
            }
            // SAFETY: the kernel mapped exactly `size` bytes at addr; the segment lives until close() unmaps it.
            return MemorySegment.ofAddress(addr).reinterpret(size);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static void unmap(MemorySegment seg, long size) {
        try {
            int r = (int) MUNMAP.invokeExact(Native.errnoState(), seg.address(), size);
            Native.check(r, "munmap io_uring ring");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static long syscall(long nr, long a, long b, long c, long d, long e, long f) {
        try {
            long r = (long) SYSCALL.invokeExact(Native.errnoState(), nr, a, b, c, d, e, f);
            return r == -1 ? -Native.lastErrno() : r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
