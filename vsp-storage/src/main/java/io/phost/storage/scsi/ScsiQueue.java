package io.phost.storage.scsi;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import io.phost.storage.engine.IoCompletionHandler;
import io.phost.storage.engine.IoEngine;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.engine.IoVecs;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

/**
 * The storage core's request queue, one per transport queue (VMBus channel or sub-channel, virtqueue, NBD
 * connection) over a {@link ScsiTarget}: a fixed pool of {@link ScsiRequest} slots, one {@link IoEngine} per
 * LUN opened lazily, QoS admission and completion. Single-threaded: its owner (an Agent, or an NBD
 * connection's thread) calls {@link #submit} and {@link #doWork}; {@link Completion#onScsiComplete} runs on
 * that thread too. SCSI transports submit CDBs; block transports submit {@link ScsiRequest#block} requests.
 *
 * <pre>
 *   r = queue.tryAcquire();  r.reset(lun, cdb, ...)  or  r.block(lun, BlockOp.READ, offset, length, fua, tag);
 *   r.data().tryAdd(...);  queue.submit(r);
 *   ... queue.doWork() ...  -> completion.onScsiComplete(r)  -> transport replies -> queue.release(r)
 *
 *   submit: prepare (CDB) / prepareBlock --DONE--> complete
 *                                     --IO----> QoS admit --wait>0--> deferred (retried in doWork)
 *                                                         --0-------> engine.try* --full--> deferred
 * </pre>
 *
 * The queue never blocks: a QoS wait or a full engine parks the request on the deferred list.
 *
 * <p>WRITE SAME with a non-zero block uses the queue's one pattern buffer ({@value #PATTERN_CHUNK} bytes,
 * allocated at the first such command): its owner fills it with copies of the guest's block and writes the
 * range one chunk at a time; a second pattern command waits on the deferred list until the owner finishes.
 * <pre>
 *   pattern: | block | block | block | ... | block |     PATTERN_CHUNK bytes (a multiple of any block size)
 *   range:   [ chunk ][ chunk ][ chunk ]...[ tail ]     ioOffset advances by ioLength per completion
 * </pre>
 */
public final class ScsiQueue implements AutoCloseable, IoCompletionHandler {
    /** Receives finished commands on the queue's thread; must call {@link #release} when done with r. */
    @FunctionalInterface
    public interface Completion {
        void onScsiComplete(ScsiRequest r);
    }

    private final ScsiTarget target;
    /** The I_T nexus this queue's commands come from (shared by the queues of one guest controller). */
    private final ScsiTarget.Initiator initiator;
    private final Completion completion;
    private final ScsiRequest[] slots;
    private final ArrayDeque<ScsiRequest> free;
    private final ArrayDeque<ScsiRequest> deferred;
    private final IoEngine[] engines = new IoEngine[ScsiTarget.MAX_LUNS];
    private final ScsiLun[] engineOwners = new ScsiLun[ScsiTarget.MAX_LUNS];
    private final int[] engineGenerations = new int[ScsiTarget.MAX_LUNS];
    /**
     * Bit i set: {@code engines[i]} is open. The duty cycle polls only these (a scan of all 64 slots per
     * cycle was the largest Java cost of a spinning agent's empty cycle, issue 19); MAX_LUNS is 64, one long.
     */
    private long openEngines;
    /** Commands to a LUN whose I/O is paused ({@link ScsiLun#pauseIo}); resubmitted by doWork once resumed. */
    private final ArrayDeque<ScsiRequest> held;
    private final List<IoEngine> retiring = new ArrayList<>();
    private final MemorySegment scratch;
    /** Largest write a pattern WRITE SAME issues at once; a multiple of every supported block size (64 KiB max). */
    static final int PATTERN_CHUNK = 128 << 10;
    /** Longest sleep of {@link #awaitWork} when only QoS-deferred or held commands are outstanding. */
    private static final long DEFERRED_WAIT_NANOS = 50_000;
    private MemorySegment pattern;
    private final IoVecs patternVecs = new IoVecs(1);
    /** The request whose block the pattern buffer holds, or null when it is free. */
    private ScsiRequest patternOwner;
    private final int engineDepth;
    /** The engine kind this queue opens for every LUN, or null for each LUN's own ({@link ScsiLun#engineKind}). */
    private final IoEngines.Kind engineKind;
    private long dirty;
    /** Set by {@link #deviceWait}: doWork leaves io_uring batches for the worker's {@link #submit}/{@link #await}. */
    private boolean deferSubmit;
    private int outstanding;
    /** {@link #outstanding} as other threads may read it ({@link #idle}); written with release semantics. */
    @SuppressWarnings("unused")
    private int publishedOutstanding;
    /** Sequence of the last task management order this queue applied; read by the managing thread. */
    private volatile long appliedTaskOrder;
    private static final VarHandle PUBLISHED_OUTSTANDING;

    static {
        try {
            PUBLISHED_OUTSTANDING = MethodHandles.lookup().findVarHandle(ScsiQueue.class, "publishedOutstanding", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * @param depth       command slots (queue depth)
     * @param maxSegments scatter/gather entries per command (e.g. pages of the largest transfer + 1)
     */
    public ScsiQueue(ScsiTarget target, int depth, int maxSegments, Completion completion) {
        this(target, depth, maxSegments, completion, null);
    }

    /**
     * A queue that runs its LUNs' I/O on {@code engineKind} rather than on each LUN's own kind: a transport
     * whose clients want another path to the same LUN (NBD reads through the page cache, guests O_DIRECT).
     */
    public ScsiQueue(ScsiTarget target, int depth, int maxSegments, Completion completion, IoEngines.Kind engineKind) {
        this(target, depth, maxSegments, completion, engineKind, target.newInitiator());
    }

    /** A queue of {@code initiator}, whose other queues share its unit attentions (a storvsc sub-channel). */
    public ScsiQueue(ScsiTarget target, int depth, int maxSegments, Completion completion, IoEngines.Kind engineKind,
                     ScsiTarget.Initiator initiator) {
        this.initiator = initiator;
        this.engineKind = engineKind;
        this.target = target;
        this.completion = completion;
        this.slots = new ScsiRequest[depth];
        this.free = new ArrayDeque<>(depth);
        this.deferred = new ArrayDeque<>(depth);
        this.held = new ArrayDeque<>(depth);
        for (int i = 0; i < depth; i++) {
            slots[i] = new ScsiRequest(i, maxSegments, ScsiLun.MAX_UNMAP_DESCRIPTORS);
            free.add(slots[i]);
        }
        this.scratch = Arena.ofAuto().allocate(2048, 8);
        this.engineDepth = Integer.highestOneBit(Math.max(2, depth - 1) * 2);
        target.register(this);
    }

    public ScsiTarget target() {
        return target;
    }

    /** A free slot, or null when all {@code depth} are in use. */
    public ScsiRequest tryAcquire() {
        return free.poll();
    }

    public void release(ScsiRequest r) {
        r.target = null;
        free.push(r);
    }

    public ScsiRequest slot(int i) {
        return slots[i];
    }

    public int depth() {
        return slots.length;
    }

    /** Commands submitted and not yet completed. */
    public int outstanding() {
        return outstanding;
    }

    /** Starts {@code r}; completes it at once (through the callback) when no I/O is needed. */
    public void submit(ScsiRequest r) {
        PUBLISHED_OUTSTANDING.setRelease(this, ++outstanding);
        r.started = false;
        ScsiLun lun = target.lun(r.lun());
        if (lun == null) {
            if (!r.block) {
                target.noteInventory(initiator, r); // a first command or REPORT LUNS: what it knows now
            }
            target.noSuchLun(r, scratch);
            finish(r);
            return;
        }
        if (!r.block && target.reportLunsChange(initiator, r)) {
            finish(r);
            return;
        }
        if (lun.ioPaused()) {
            hold(r);
            return;
        }
        int prepared = r.block ? lun.prepareBlock(r) : lun.prepare(r, scratch, target);
        if (prepared == ScsiLun.DONE) {
            finish(r);
            return;
        }
        lun.inFlight.incrementAndGet();
        if (lun.ioPaused()) { // re-check after the increment: pauseIo sets the flag, then waits for zero
            lun.inFlight.decrementAndGet();
            hold(r);
            return;
        }
        lun.markChanged(r); // counted in flight first: a backup point's pause cannot split it
        r.admitted = false;
        r.startNanos = System.nanoTime();
        r.notBefore = 0;
        dispatch(r, r.startNanos);
    }

    private void hold(ScsiRequest r) {
        held.add(r); // still outstanding: close() waits for it like any other command
    }

    private int resubmitHeld() {
        int n = held.size();
        for (int i = 0; i < n; i++) {
            ScsiRequest r = held.poll();
            ScsiLun lun = target.lun(r.lun());
            if (lun != null && lun.ioPaused()) {
                held.add(r);
            } else {
                outstanding--; // submit counts it again
                submit(r);
            }
        }
        return held.isEmpty() ? n : n + 1; // still held: report work so the owner keeps polling, not sleeping
    }

    private void dispatch(ScsiRequest r, long now) {
        ScsiLun lun = r.target;
        if (!r.admitted) {
            int bytes = r.op == BlockOp.READ || r.op == BlockOp.WRITE ? (int) r.ioLength : 0;
            long wait = lun.qos().tryAdmit(bytes, now);
            if (wait > 0) {
                r.notBefore = now + wait;
                deferred.add(r);
                return;
            }
            r.admitted = true;
        }
        IoEngine engine;
        try {
            engine = engineFor(r.lun(), lun);
        } catch (RuntimeException e) {
            // The backend cannot take I/O (e.g. its fd was closed by a hot-remove): fail this command only.
            onIo(r, -5);
            return;
        } catch (Error e) {
            // No engine (e.g. its class failed to initialise): the command is failed, so no request is left
            // outstanding with nothing to complete it, and the Error goes on to end the caller's loop.
            onIo(r, -5);
            throw e;
        }
        if (r.op == BlockOp.WRITE_PATTERN && !preparePatternChunk(r, lun)) {
            r.notBefore = 0;
            deferred.add(r); // another pattern command holds the buffer
            return;
        }
        boolean ok = switch (r.op) {
            case BlockOp.READ -> engine.tryRead(r.ioOffset, r.data(), r.slot);
            case BlockOp.WRITE -> engine.tryWrite(r.ioOffset, r.data(), r.slot);
            case BlockOp.WRITE_PATTERN -> engine.tryWrite(r.ioOffset, patternVecs, r.slot);
            case BlockOp.FLUSH -> engine.tryFlush(r.slot);
            case BlockOp.UNMAP -> engine.tryUnmap(r.ioOffset, r.ioLength, r.slot);
            default -> engine.tryWriteZeroes(r.ioOffset, r.ioLength, r.slot);
        };
        if (ok) {
            r.started = true;
            dirty |= 1L << r.lun();
        } else {
            r.notBefore = 0;
            deferred.add(r);
        }
    }

    /**
     * Points {@link #patternVecs} at the next chunk of {@code r}'s range (ioOffset..), taking the pattern
     * buffer and replicating the guest's block into it first if {@code r} does not hold it yet. False when
     * another request holds it. Idempotent for one ioOffset (a full engine retries it).
     */
    private boolean preparePatternChunk(ScsiRequest r, ScsiLun lun) {
        if (patternOwner != r) {
            if (patternOwner != null) {
                return false;
            }
            if (pattern == null) {
                pattern = Arena.ofAuto().allocate(PATTERN_CHUNK, 4096); // once per queue; aligned for O_DIRECT
            }
            patternOwner = r;
            int block = lun.blockSize();
            r.data().gatherTo(pattern, 0, block);
            for (long filled = block; filled < PATTERN_CHUNK; filled *= 2) {
                MemorySegment.copy(pattern, 0, pattern, filled, Math.min(filled, PATTERN_CHUNK - filled));
            }
        }
        long end = r.unmapOffset[0] + r.unmapLength[0];
        r.ioLength = Math.min(PATTERN_CHUNK, end - r.ioOffset);
        patternVecs.clear();
        patternVecs.tryAdd(pattern.address(), r.ioLength);
        return true;
    }

    private IoEngine engineFor(int index, ScsiLun lun) {
        IoEngine e = engines[index];
        int generation = lun.diskGeneration;
        if (e != null && engineOwners[index] == lun && engineGenerations[index] == generation) {
            return e;
        }
        if (e != null) {
            retiring.add(e); // the LUN or its disk was replaced: let the old engine drain
        }
        e = IoEngines.open(lun.disk(), engineKind != null ? engineKind : lun.engineKind(), engineDepth);
        engines[index] = e;
        engineOwners[index] = lun;
        engineGenerations[index] = generation;
        openEngines |= 1L << index;
        return e;
    }

    /** Name of the engine this queue uses for {@code lun}, or null before its first I/O. */
    public String engineName(int lun) {
        IoEngine e = engines[lun];
        return e == null ? null : e.name();
    }

    /** One duty cycle: retries deferred commands, submits batches, reaps completions. */
    public int doWork() {
        TaskOrder order = target.taskOrder();
        if (order != null && order.sequence != appliedTaskOrder) {
            applyTaskOrder(order);
        }
        int work = held.isEmpty() ? 0 : resubmitHeld();
        int n = deferred.size();
        if (n > 0) {
            long now = System.nanoTime();
            for (int i = 0; i < n; i++) {
                ScsiRequest r = deferred.poll();
                if (r.notBefore - now > 0) {
                    deferred.add(r);
                } else {
                    dispatch(r, now);
                    work++;
                }
            }
        }
        long d = dirty;
        dirty = 0;
        while (d != 0) {
            int i = Long.numberOfTrailingZeros(d);
            d &= d - 1;
            if (deferSubmit && handsOff(engines[i])) {
                dirty |= 1L << i; // the worker's next wait submits it in the same io_uring_enter (DeviceWait)
            } else {
                engines[i].submit();
            }
        }
        for (long open = openEngines; open != 0; open &= open - 1) {
            IoEngine e = engines[Long.numberOfTrailingZeros(open)];
            if (e.inFlight() > 0) {
                work += e.poll(this);
            }
        }
        if (!retiring.isEmpty()) {
            work += drainRetiring();
        }
        return work;
    }

    private int drainRetiring() {
        int work = 0;
        for (int i = retiring.size() - 1; i >= 0; i--) {
            IoEngine e = retiring.get(i);
            e.submit();
            work += e.poll(this);
            if (e.inFlight() == 0) {
                e.close();
                retiring.remove(i);
            }
        }
        return work;
    }

    /** Blocks (for thread-per-queue callers and tests) until some completion arrives or the timeout passes. */
    public int awaitWork(long timeoutNanos) {
        int work = doWork();
        if (work > 0) {
            return work;
        }
        for (int i = 0; i < ScsiTarget.MAX_LUNS; i++) {
            IoEngine e = engines[i];
            if (e != null && e.inFlight() > 0) {
                return e.await(this, timeoutNanos);
            }
        }
        if (!deferred.isEmpty() || !held.isEmpty()) {
            // Waiting for QoS admission or a paused LUN: nothing to block on, so sleep a little instead of spinning.
            LockSupport.parkNanos(Math.min(timeoutNanos, DEFERRED_WAIT_NANOS));
        }
        return 0;
    }

    /**
     * Whether queue workers sleep on io_uring completions and their doorbell together ({@link #deviceWait}, the
     * issue-19 hand-off). Off by default: at load 18-38 on the 2-vCPU test VM it lost to the earlier wait on
     * IOPS and on agent CPU per I/O (docs/benchmarks.md, issue 19 sections 12-13); {@code
     * -Dphost.storage.uringHandoff=true} turns it on.
     */
    public static final boolean URING_HANDOFF = Boolean.getBoolean("phost.storage.uringHandoff");

    /**
     * Whether this queue's worker sleeps through {@code e} with its doorbell ({@link #deviceWait}): engines that
     * hand off by default (librbd, issue 20) always, io_uring only with {@link #URING_HANDOFF}.
     */
    private static boolean handsOff(IoEngine e) {
        return e.wakesOnDoorbell() && (URING_HANDOFF || e.handsOffByDefault());
    }

    /**
     * This queue as the {@link DeviceWait} of a worker that sleeps on its completions and its doorbell together.
     * From now on {@link #doWork} does not submit io_uring batches itself: the worker submits them before it
     * spins, or with its wait (one io_uring_enter at QD1). Other engines still submit in doWork.
     */
    public DeviceWait deviceWait() {
        deferSubmit = true;
        return waiter;
    }

    /** A {@link DeviceWait} over this queue without deferred submission (vhost-user workers). */
    public DeviceWait waiter() {
        return waiter;
    }

    private final DeviceWait waiter = new DeviceWait() {
        @Override
        public boolean busy() {
            if (outstanding == 0 || !deferred.isEmpty() || !held.isEmpty() || !retiring.isEmpty()) {
                return false; // QoS waits, paused LUNs and retiring engines have no fd to sleep on
            }
            int busyEngines = 0;
            boolean byDefault = false;
            for (IoEngine e : engines) {
                if (e != null && (e.inFlight() > 0)) {
                    if (!handsOff(e)) {
                        return false;
                    }
                    busyEngines++;
                    byDefault |= e.handsOffByDefault();
                }
            }
            // One wait carries one engine's completions: with librbd I/O in flight on two LUNs the worker keeps
            // its timed looks (a completion of the second would wait for the doorbell). io_uring's opt-in
            // hand-off keeps its earlier rule (docs/storage.md).
            return busyEngines == 1 || (busyEngines > 1 && !byDefault);
        }

        /**
         * One request in flight, on an engine whose requests outlast a spin (librbd): QD1, where the agent's spin
         * could only miss. With more in flight one of them may complete during a spin, so the agent keeps its rule.
         */
        @Override
        public boolean outlastsSpin() {
            int inFlight = 0;
            boolean slow = true;
            for (IoEngine e : engines) {
                if (e != null && e.inFlight() > 0) {
                    inFlight += e.inFlight();
                    slow &= e.outlastsSpin();
                }
            }
            return inFlight == 1 && slow;
        }

        @Override
        public boolean unsubmitted() {
            return dirty != 0;
        }

        @Override
        public void submit() {
            long d = dirty;
            dirty = 0;
            while (d != 0) {
                int i = Long.numberOfTrailingZeros(d);
                d &= d - 1;
                engines[i].submit();
            }
        }

        @Override
        public void await(EventFd doorbell, long timeoutNanos) {
            IoEngine sleepOn = null;
            for (int i = 0; i < engines.length; i++) {
                IoEngine e = engines[i];
                if (e == null || e.inFlight() == 0) {
                    continue;
                }
                if (sleepOn == null && handsOff(e)) {
                    sleepOn = e;
                    dirty &= ~(1L << i);
                } else if ((dirty & (1L << i)) != 0) {
                    dirty &= ~(1L << i);
                    e.submit(); // only one ring can carry the wait: the others submit on their own
                }
            }
            if (sleepOn == null || !sleepOn.awaitWithDoorbell(doorbell, timeoutNanos)) {
                if (sleepOn != null) {
                    sleepOn.submit();
                }
                submit();
                LockSupport.parkNanos(Math.min(timeoutNanos, DEFERRED_WAIT_NANOS));
            }
        }
    };

    @Override
    public void onIoComplete(long userData, long result) {
        onIo(slots[(int) userData], result);
    }

    private void onIo(ScsiRequest r, long result) {
        ScsiLun lun = r.target;
        if (r.op == BlockOp.FLUSH && result == 0) {
            result = lun.persistChanges(); // the change bits are durable before the flush (or FUA write) completes
        }
        if (r.fuaFlush) {
            // The flush a FUA request chained is done: complete the request as its own operation ended.
            r.fuaFlush = false;
            r.op = r.fuaOp;
            result = result == 0 ? r.fuaResult : result;
        } else {
            if (r.op == BlockOp.WRITE_PATTERN) {
                if (result == r.ioLength && r.ioOffset + r.ioLength < r.unmapOffset[0] + r.unmapLength[0]) {
                    r.ioOffset += r.ioLength;
                    dispatch(r, System.nanoTime());
                    return;
                }
                if (patternOwner == r) {
                    patternOwner = null; // done or failed: a deferred pattern command may take the buffer
                }
            }
            boolean ranged = r.op == BlockOp.UNMAP || r.op == BlockOp.WRITE_ZEROES;
            if (result == 0 && ranged && r.unmapNext < r.unmapCount) {
                int i = r.unmapNext++;
                r.ioOffset = r.unmapOffset[i];
                r.ioLength = r.unmapLength[i];
                dispatch(r, System.nanoTime());
                return;
            }
            if (r.fua && (ranged ? result == 0 : result == r.ioLength)) {
                // FUA: the change is durable only after a flush; chain one before completing.
                r.fua = false;
                r.fuaFlush = true;
                r.fuaOp = r.op;
                r.fuaResult = result;
                r.op = BlockOp.FLUSH;
                dispatch(r, System.nanoTime());
                return;
            }
        }
        r.started = false;
        long now = System.nanoTime();
        lun.completeIo(r, result, now);
        lun.qos().completed(r.read || r.op == BlockOp.WRITE ? (int) r.ioLength : 0, now - r.startNanos, now);
        lun.inFlight.decrementAndGet();
        finish(r);
    }

    private void finish(ScsiRequest r) {
        PUBLISHED_OUTSTANDING.setRelease(this, --outstanding);
        TaskOrder order = r.taskOrder;
        r.taskOrder = null;
        completion.onScsiComplete(r);
        if (order != null) {
            order.running.decrementAndGet(); // after the reply: a TMF answer never overtakes the command's
        }
    }

    /**
     * Applies a task management order (on this queue's thread): commands in its scope that no engine has
     * started are completed with TASK ABORTED; started ones are counted in {@code order.running} and complete
     * normally. A query only counts.
     */
    private void applyTaskOrder(TaskOrder order) {
        boolean abort = order.function.aborts();
        for (ScsiRequest r : slots) {
            if (r.started && order.covers(r)) {
                if (r.taskOrder != null) {
                    r.taskOrder.running.decrementAndGet(); // an earlier order that timed out: the new one waits now
                }
                order.found.incrementAndGet();
                order.running.incrementAndGet();
                r.taskOrder = order;
            }
        }
        for (int i = held.size(); i > 0; i--) {
            ScsiRequest r = held.poll();
            if (order.covers(r)) {
                order.found.incrementAndGet();
                if (abort) {
                    abortTask(r, false);
                    continue;
                }
            }
            held.add(r);
        }
        for (int i = deferred.size(); i > 0; i--) {
            ScsiRequest r = deferred.poll();
            if (!r.started && order.covers(r)) {
                order.found.incrementAndGet();
                if (abort) {
                    abortTask(r, true);
                    continue;
                }
            }
            deferred.add(r);
        }
        appliedTaskOrder = order.sequence;
    }

    /** Completes a command no engine started with TASK ABORTED; {@code counted}: it was counted in flight. */
    private void abortTask(ScsiRequest r, boolean counted) {
        if (counted) {
            ScsiLun lun = r.target;
            if (patternOwner == r) {
                patternOwner = null;
            }
            if (r.admitted) {
                lun.qos().completed(r.op == BlockOp.READ || r.op == BlockOp.WRITE ? (int) r.ioLength : 0, 0, System.nanoTime());
            }
            lun.inFlight.decrementAndGet();
        }
        r.taskAborted();
        finish(r);
    }

    /** True once this queue applied {@code order}. */
    boolean applied(TaskOrder order) {
        return appliedTaskOrder >= order.sequence;
    }

    /** True when the queue holds no submitted command (read from any thread). */
    boolean idle() {
        return (int) PUBLISHED_OUTSTANDING.getAcquire(this) == 0;
    }

    @Override
    public void close() {
        target.unregister(this);
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (outstanding > 0 && System.nanoTime() < deadline) {
            awaitWork(1_000_000L);
        }
        for (int i = 0; i < engines.length; i++) {
            if (engines[i] != null) {
                engines[i].close();
                engines[i] = null;
                engineOwners[i] = null;
                openEngines &= ~(1L << i);
            }
        }
        for (IoEngine e : retiring) {
            e.close();
        }
        retiring.clear();
    }
}
