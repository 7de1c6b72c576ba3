package io.phost.storage.rbd;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Librbd;
import io.phost.core.sys.Poll;
import io.phost.core.vmbus.SpinGovernor;
import io.phost.storage.engine.IoCompletionHandler;
import io.phost.storage.engine.IoEngine;
import io.phost.storage.engine.IoVecs;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@link IoEngine} over an {@link RbdDisk}: {@code rbd_aio_readv/writev} straight from the request's iovec
 * array (guest memory, zero copy), {@code rbd_aio_flush}, and {@code rbd_aio_write_zeroes} for both unmap
 * and write-zeroes (an RBD discard of part of an object need not read back as zeros).
 *
 * <p>Completions come back through the disk's eventfd (see {@link RbdDisk}) into this engine's ring, a
 * pair of preallocated {@code long[]} of {@code depth} entries: it never overflows, because at most
 * {@code depth} requests are in flight. Single-threaded like every engine: the owning queue agent calls
 * {@code try*}, {@link #poll} and {@link #await}; other engines' threads only append to the ring, under
 * the disk's lock, and ring {@link #wake}.
 *
 * <p>Queue workers sleep through this engine ({@link #awaitWithDoorbell}, the storage core's {@code DeviceWait}
 * hand-off): one {@code ppoll} on the disk's completion eventfd, this engine's wake fd and the worker's doorbell
 * (the VMBus ring's or the virtqueue's kick), so a completion or a guest request wakes the worker at once and
 * an I/O in flight costs no timed wake-ups (the VMBus agent's 50 µs looks were several per QD1 request).
 * {@code -Dphost.storage.rbdHandoff=false} turns it off (the timed looks of {@link #await}), for comparisons.
 *
 * <p>Per I/O: no Java allocation. librbd itself allocates its completion (a C++ object) per request.
 */
public final class RbdEngine implements IoEngine {
    /** Whether queue workers sleep through this engine with their doorbell; on unless set to false. */
    static final boolean HANDOFF = !"false".equalsIgnoreCase(System.getProperty("phost.storage.rbdHandoff"));
    /**
     * How long a hand-off wait with one request in flight polls librbd's completions ({@code rbd_poll_io_events},
     * no system call) before it sleeps in {@code ppoll}, while this engine's {@link SpinGovernor} allows it:
     * a completion caught spinning saves the eventfd wake-up of the agent (issue 20's QD1 hops). 0: never.
     */
    static final long SPIN_NANOS = Long.getLong("phost.storage.rbdSpinMicros", 0) * 1_000L;
    /**
     * Whether a VMBus agent with librbd requests in flight sleeps at once and leaves that wait out of its spin
     * governor's judgement ({@link #outlastsSpin}); on unless set to false (comparison runs).
     */
    static final boolean OUTLASTS_SPIN = !"false".equalsIgnoreCase(System.getProperty("phost.storage.rbdOutlastsSpin"));
    /** false: spin whatever the governor says (measurements only). */
    static final boolean SPIN_GOVERNED = !"false".equalsIgnoreCase(System.getProperty("phost.storage.rbdSpinGoverned"));
    private static final long COMPLETION_REVENTS = 6;
    private static final long WAKE_REVENTS = Poll.POLLFD_SIZE + 6;
    private static final long BELL_FD = 2 * Poll.POLLFD_SIZE;
    private static final long BELL_REVENTS = 2 * Poll.POLLFD_SIZE + 6;

    private final RbdDisk disk;
    private final long image;
    private final int id;
    private final int depth;
    private final long argBase;
    private final MemorySegment completionOut = Arena.global().allocate(ValueLayout.JAVA_LONG);
    /** completion eventfd, own wake fd, and (in {@link #awaitWithDoorbell}) the worker's doorbell. */
    private final MemorySegment pollFds = Arena.global().allocate(3 * Poll.POLLFD_SIZE, 8);
    private final MemorySegment timeout = Arena.global().allocate(Poll.TIMESPEC_SIZE, 8);
    private final EventFd wake = EventFd.create();
    /** Other threads signal through this handle, only under the disk's lock (it has one scratch buffer). */
    private final EventFd wakeSignal = wake.view();

    // request slots (owner thread only): the completion argument names a slot, not the caller's cookie
    private final long[] slotUserData;
    private final long[] slotBytes;
    private final int[] free;
    private int freeCount;
    // ring of finished slots; written under the disk's lock, read by the owner under it
    private final int[] doneSlot;
    private final long[] doneResult;
    private int doneHead;
    private int doneCount;
    // owner-thread copies handed to the handler outside the lock
    private final int[] deliverSlot;
    private final long[] deliverResult;

    private int inFlight;
    private int sinceSubmit;
    private long doorbellRings;
    /** Decides the completion spin from its hits and the agent thread's run-queue wait; null without a spin. */
    private SpinGovernor spinGovernor = SPIN_NANOS > 0 ? SpinGovernor.forHostThread() : null;
    private long spinNanos = SPIN_NANOS;
    private boolean spinGoverned = SPIN_GOVERNED;
    private long spinHits;
    private long spinMisses;

    RbdEngine(RbdDisk disk, int depth) {
        if (depth <= 0 || depth > 1 << 16) {
            throw new IllegalArgumentException("rbd engine depth " + depth);
        }
        this.disk = disk;
        this.image = disk.image();
        this.depth = depth;
        this.slotUserData = new long[depth];
        this.slotBytes = new long[depth];
        this.free = new int[depth];
        for (int i = 0; i < depth; i++) {
            free[i] = depth - 1 - i;
        }
        this.freeCount = depth;
        this.doneSlot = new int[depth];
        this.doneResult = new long[depth];
        this.deliverSlot = new int[depth];
        this.deliverResult = new long[depth];
        this.id = disk.register(this);
        this.argBase = (long) id << RbdDisk.SLOT_BITS;
        pollFds.set(ValueLayout.JAVA_INT, 0, disk.completionFd());
        pollFds.set(ValueLayout.JAVA_SHORT, 4, (short) Poll.POLLIN);
        pollFds.set(ValueLayout.JAVA_INT, Poll.POLLFD_SIZE, wake.fd());
        pollFds.set(ValueLayout.JAVA_SHORT, Poll.POLLFD_SIZE + 4, (short) Poll.POLLIN);
        pollFds.set(ValueLayout.JAVA_INT, BELL_FD, -1);
        pollFds.set(ValueLayout.JAVA_SHORT, BELL_FD + 4, (short) Poll.POLLIN);
    }

    enum Op { READ, WRITE, FLUSH, ZEROES }

    @Override
    public boolean tryRead(long offset, IoVecs vecs, long userData) {
        return start(Op.READ, offset, 0, vecs, userData);
    }

    @Override
    public boolean tryWrite(long offset, IoVecs vecs, long userData) {
        return start(Op.WRITE, offset, 0, vecs, userData);
    }

    @Override
    public boolean tryFlush(long userData) {
        return start(Op.FLUSH, 0, 0, null, userData);
    }

    @Override
    public boolean tryUnmap(long offset, long length, long userData) {
        return start(Op.ZEROES, offset, length, null, userData);
    }

    @Override
    public boolean tryWriteZeroes(long offset, long length, long userData) {
        return start(Op.ZEROES, offset, length, null, userData);
    }

    private boolean start(Op op, long offset, long length, IoVecs vecs, long userData) {
        if (freeCount == 0) {
            return false; // depth requests in flight
        }
        int slot = free[--freeCount];
        slotUserData[slot] = userData;
        slotBytes[slot] = op == Op.WRITE ? vecs.totalLength() : -1; // librbd completes a write with 0
        inFlight++;
        sinceSubmit++;
        int r = Librbd.aioCreateCompletion(argBase | slot, completionOut.address());
        if (r < 0) {
            fail(slot, r);
            return true;
        }
        long c = completionOut.get(ValueLayout.JAVA_LONG, 0);
        r = switch (op) {
            case READ -> Librbd.aioReadv(image, vecs.arrayAddress(), vecs.count(), offset, c);
            case WRITE -> Librbd.aioWritev(image, vecs.arrayAddress(), vecs.count(), offset, c);
            case FLUSH -> Librbd.aioFlush(image, c);
            case ZEROES -> Librbd.aioWriteZeroes(image, offset, length, c);
        };
        if (r < 0) {
            Librbd.aioRelease(c); // librbd did not take it: its completion will never fire
            fail(slot, r);
        }
        return true;
    }

    /** A request librbd refused at submission: completes with its -errno on the next poll. */
    private void fail(int slot, long result) {
        synchronized (disk) {
            completedLocked(slot, result, false);
        }
    }

    /** Appends a finished request; the caller holds the disk's lock. */
    void completedLocked(int slot, long result, boolean signal) {
        int at = (doneHead + doneCount) % depth;
        doneSlot[at] = slot;
        doneResult[at] = result;
        doneCount++;
        if (signal) {
            wakeSignal.signal(); // the owner may sleep in await on its wake fd: this completion is its own
        }
    }

    @Override
    public int submit() {
        int n = sinceSubmit; // rbd_aio_* hands each request to librbd's own queue as it is called
        sinceSubmit = 0;
        return n;
    }

    @Override
    public int poll(IoCompletionHandler handler) {
        if (inFlight == 0) {
            return 0;
        }
        int n;
        synchronized (disk) {
            disk.drainLocked(this);
            n = doneCount;
            for (int k = 0; k < n; k++) {
                int at = (doneHead + k) % depth;
                deliverSlot[k] = doneSlot[at];
                deliverResult[k] = doneResult[at];
            }
            doneHead = (doneHead + n) % depth;
            doneCount = 0;
        }
        for (int k = 0; k < n; k++) {
            int slot = deliverSlot[k];
            long result = deliverResult[k];
            if (result == 0 && slotBytes[slot] > 0) {
                result = slotBytes[slot];
            }
            long userData = slotUserData[slot];
            free[freeCount++] = slot;
            inFlight--;
            handler.onIoComplete(userData, result);
        }
        return n;
    }

    @Override
    public int await(IoCompletionHandler handler, long timeoutNanos) {
        if (inFlight == 0) {
            return 0;
        }
        int n = poll(handler);
        if (n > 0) {
            return n;
        }
        // Nanosecond timeout: callers wait 50-200 µs between looks at their ring or kick fd; poll(2)'s whole
        // milliseconds made each such wait 1 ms, so new requests sat in the ring until a completion came.
        // A completion fd still readable from completions poll() already popped returns at once: the rearm
        // below makes the next wait sleep. Each fd is read only when it polled readable (a read(2) that finds
        // nothing was a third of the syscalls per wait).
        Poll.ppoll(pollFds, 2, timeout, timeoutNanos);
        consumeReadable();
        return poll(handler);
    }

    /** Resets the completion and wake fds that the last ppoll found readable (read only those: no empty reads). */
    private void consumeReadable() {
        if ((pollFds.get(ValueLayout.JAVA_SHORT, COMPLETION_REVENTS) & Poll.POLLIN) != 0) {
            synchronized (disk) {
                disk.rearmLocked();
            }
        }
        if ((pollFds.get(ValueLayout.JAVA_SHORT, WAKE_REVENTS) & Poll.POLLIN) != 0) {
            wake.tryConsume();
        }
    }

    @Override
    public boolean wakesOnDoorbell() {
        return HANDOFF;
    }

    /**
     * A librbd request is a network round trip (~250 µs at QD1 on the test cluster, against the agent's ~5 µs
     * spin): no spin can catch it, so the agent sleeps through it and its governor judges only the wait for the
     * guest's next request. (On the 2-vCPU test machine the governor's stops were "contended", not misses, so
     * this changed no number there: issue 20, twelfth session.)
     */
    @Override
    public boolean outlastsSpin() {
        return OUTLASTS_SPIN;
    }

    @Override
    public boolean handsOffByDefault() {
        return true; // one ppoll, no ring to share: unlike io_uring's opt-in hand-off it measured no loss
    }

    /**
     * Sleeps until a completion of this engine is ready, {@code doorbell} is signalled or {@code timeoutNanos}
     * pass, in one {@code ppoll}; completions are left for {@link #poll}. Requests were handed to librbd as they
     * were queued, so there is nothing to submit. A signalled doorbell is drained here (as the io_uring
     * hand-off's poll does), else the worker's next wait would return at once.
     *
     * <p>Nothing is missed between the worker's last {@link #poll} and this call: librbd signals the completion
     * eventfd after it appends (reset only by {@link #consumeReadable}, before the {@code poll} that must follow),
     * another engine's drain that finds one of ours rings our wake fd, and a request librbd refused at
     * submission is already in the ring ({@code doneCount}, looked at first).
     */
    @Override
    public boolean awaitWithDoorbell(EventFd doorbell, long timeoutNanos) {
        synchronized (disk) {
            if (doneCount > 0) {
                return true;
            }
        }
        if (spinGovernor != null && inFlight == 1) {
            // One request in flight (QD1): its guest waits for it and sends nothing meanwhile, so the doorbell
            // need not be watched while the completion is polled for.
            boolean spin = !spinGoverned || spinGovernor.shouldSpin();
            if (spin && spinForCompletion()) {
                spinHits++;
                spinGovernor.episodeEnded(true);
                return true;
            }
            if (spin) {
                spinMisses++;
            }
            spinGovernor.episodeEnded(false); // judged after the sleep below: the spin did not find it
        }
        pollFds.set(ValueLayout.JAVA_INT, BELL_FD, doorbell.fd());
        Poll.ppoll(pollFds, 3, timeout, timeoutNanos);
        consumeReadable();
        if ((pollFds.get(ValueLayout.JAVA_SHORT, BELL_REVENTS) & Poll.POLLIN) != 0) {
            doorbellRings++;
            doorbell.tryConsume();
        }
        return true;
    }

    /**
     * Polls librbd's completion list for up to {@link #spinNanos}; true when one of this engine's requests
     * finished (left in the ring for the worker's {@link #poll}). The completion eventfd stays signalled, so
     * the next sleep's {@code ppoll} returns at once and resets it: one wasted look, no lost wake-up.
     */
    private boolean spinForCompletion() {
        long end = System.nanoTime() + spinNanos;
        do {
            synchronized (disk) {
                disk.drainLocked(this);
                if (doneCount > 0) {
                    return true;
                }
            }
            Thread.onSpinWait();
        } while (System.nanoTime() < end);
        return false;
    }

    /** Sets this engine's completion spin (tests): {@code nanos} 0 turns it off; {@code governed} false always spins. */
    void spinFor(long nanos, boolean governed) {
        spinNanos = nanos;
        spinGoverned = governed;
        spinGovernor = nanos > 0 ? SpinGovernor.forHostThread() : null;
    }

    /** Completion spins that found the request finished, and those that slept after all (status, bench). */
    long spinHits() {
        return spinHits;
    }

    long spinMisses() {
        return spinMisses;
    }

    /** How many times a doorbell ended this engine's wait (tests). */
    long doorbellRings() {
        return doorbellRings;
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
        return "librbd";
    }

    /** Waits for this engine's requests (librbd must not write into buffers freed after close). */
    @Override
    public void close() {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (inFlight > 0 && System.nanoTime() < deadline) {
            await((u, r) -> { }, 10_000_000L);
        }
        disk.unregister(id);
        wake.close();
    }
}
