package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;

import static io.phost.storage.scsi.ScsiRequest.U32;

/**
 * A virtual SCSI target (one per controller/partition) holding up to {@link #MAX_LUNS} logical units.
 * LUNs can be added and removed while queues run: queues read the table on every command, and a removed
 * LUN rejects new commands at once while its in-flight ones finish ({@link #remove} then
 * {@link #awaitIdle}). Commands to an empty LUN get what SPC-4 prescribes: INQUIRY answers with
 * peripheral qualifier 011b, REPORT LUNS works, everything else is LOGICAL UNIT NOT SUPPORTED.
 *
 * <p>Task management ({@link #manage}) reaches every {@link ScsiQueue} of the target:
 * <pre>
 *   manage ── order = new TaskOrder ──▶ each queue, on its own thread (doWork):
 *               held / deferred, not yet dispatched  → completed at once with TASK ABORTED
 *               already in the kernel (preadv, io_uring ...)  → complete normally; counted in order.running
 *          ◀── every busy queue applied it, running == 0 ──  FUNCTION COMPLETE (a query: SUCCEEDED if found)
 * </pre>
 */
public final class ScsiTarget {
    public static final int MAX_LUNS = 64;

    private final AtomicReferenceArray<ScsiLun> luns = new AtomicReferenceArray<>(MAX_LUNS);
    /** Changes on every add/remove: the LUN inventory's version that {@link Initiator}s compare with. */
    private final AtomicLong generation = new AtomicLong();
    private final CopyOnWriteArrayList<ScsiQueue> queues = new CopyOnWriteArrayList<>();
    /** The latest task management function; queues apply each one once ({@link ScsiQueue#applyTaskOrder}). */
    private volatile TaskOrder taskOrder;
    private long taskSequence;

    /** Adds {@code unit} at {@code lun}; throws when the slot is taken. */
    public void add(int lun, ScsiLun unit) {
        checkLun(lun);
        if (!luns.compareAndSet(lun, null, unit)) {
            throw new IllegalStateException("LUN " + lun + " is in use");
        }
        generation.incrementAndGet();
    }

    /** Removes the unit at {@code lun} (new commands fail from now on) and returns it, or null. */
    public ScsiLun remove(int lun) {
        checkLun(lun);
        ScsiLun unit = luns.getAndSet(lun, null); // queues read the table per command: new ones fail from now on
        if (unit != null) {
            generation.incrementAndGet();
        }
        return unit;
    }

    /** Waits until {@code unit} has no command executing; true when idle within the timeout. */
    public static boolean awaitIdle(ScsiLun unit, long timeoutMillis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        while (unit.inFlight() > 0) {
            if (System.currentTimeMillis() > deadline) {
                return false;
            }
            Thread.sleep(1);
        }
        return true;
    }

    void register(ScsiQueue q) {
        queues.add(q);
    }

    void unregister(ScsiQueue q) {
        queues.remove(q);
    }

    TaskOrder taskOrder() {
        return taskOrder;
    }

    /**
     * Runs a task management function (any thread; one at a time per target). Commands in scope that no engine
     * has started yet (waiting for QoS, a full engine, or a paused LUN) complete with TASK ABORTED through their
     * queue's completion; commands already in the kernel cannot be recalled, so the function waits for them to
     * complete normally. Returns when that is done, or {@link TaskResponse#SERVICE_DELIVERY_FAILURE} when
     * commands still ran after {@code timeoutMillis}.
     */
    public TaskResponse manage(TaskFunction function, int lun, long tag, long timeoutMillis) {
        return manage(function, lun, tag, timeoutMillis, null);
    }

    /**
     * {@link #manage(TaskFunction, int, long, long)} from the thread that owns {@code own} (a transport whose
     * task management arrives on its I/O thread, like storvsc): that queue keeps working while the function waits.
     */
    public synchronized TaskResponse manage(TaskFunction function, int lun, long tag, long timeoutMillis, ScsiQueue own) {
        if (!function.wholeTarget() && lun(lun) == null) {
            return TaskResponse.INCORRECT_LUN;
        }
        TaskOrder order = new TaskOrder(++taskSequence, function, lun, tag);
        taskOrder = order;
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
        for (ScsiQueue q : queues) {
            // An idle queue holds nothing the order could cover: commands it takes from now on are newer.
            while (!q.applied(order) && !q.idle()) {
                if (!pause(deadline, own)) {
                    return TaskResponse.SERVICE_DELIVERY_FAILURE;
                }
            }
        }
        while (order.running.get() > 0) {
            if (!pause(deadline, own)) {
                return TaskResponse.SERVICE_DELIVERY_FAILURE;
            }
        }
        return function.aborts() || order.found.get() == 0 ? TaskResponse.FUNCTION_COMPLETE : TaskResponse.FUNCTION_SUCCEEDED;
    }

    private static boolean pause(long deadline, ScsiQueue own) {
        if (System.nanoTime() - deadline > 0) {
            return false;
        }
        if (own == null || own.awaitWork(100_000) == 0) {
            LockSupport.parkNanos(100_000);
        }
        return true;
    }

    public ScsiLun lun(int lun) {
        return lun >= 0 && lun < MAX_LUNS ? luns.get(lun) : null;
    }

    /** Changes on every add/remove (transports use it to tell the initiator to rescan). */
    public long generation() {
        return generation.get();
    }

    /**
     * One I_T nexus: the queues of one guest's controller (a storvsc channel and its sub-channels) share it. It
     * remembers the LUN inventory it was told about, so that after a hot-add or hot-remove exactly one of its
     * commands gets the REPORTED LUNS DATA HAS CHANGED unit attention (SPC-4 §5.14), and REPORT LUNS clears it.
     */
    public static final class Initiator {
        /** The inventory it knows; {@link #UNKNOWN} until its first command (a new nexus has nothing to learn). */
        private final AtomicLong seen = new AtomicLong(UNKNOWN);
        private static final long UNKNOWN = -1;

        private Initiator() {}
    }

    /** A new initiator (a guest connecting): the inventory at its first command is what it knows. */
    public Initiator newInitiator() {
        return new Initiator();
    }

    /**
     * The pending REPORTED LUNS DATA HAS CHANGED unit attention of {@code initiator}, on a command that may carry
     * it (not INQUIRY or REQUEST SENSE; REPORT LUNS clears it, SPC-4 §6.33): true when {@code r} was answered with
     * it. Queues of one initiator race for it with a CAS, so the initiator sees it once.
     */
    /** A command to an empty LUN carries no unit attention, but a first command or REPORT LUNS sets what it knows. */
    void noteInventory(Initiator initiator, ScsiRequest r) {
        long seen = initiator.seen.get();
        if (seen == Initiator.UNKNOWN || r.opcode() == Scsi.REPORT_LUNS) {
            initiator.seen.compareAndSet(seen, generation.get());
        }
    }

    boolean reportLunsChange(Initiator initiator, ScsiRequest r) {
        long now = generation.get();
        long seen = initiator.seen.get();
        if (seen == now) {
            return false;
        }
        if (seen == Initiator.UNKNOWN) {
            initiator.seen.compareAndSet(Initiator.UNKNOWN, now);
            return false;
        }
        int opcode = r.opcode();
        if (opcode == Scsi.INQUIRY || opcode == Scsi.REQUEST_SENSE) {
            return false;
        }
        if (!initiator.seen.compareAndSet(seen, now) || opcode == Scsi.REPORT_LUNS) {
            return false;
        }
        r.checkCondition(Scsi.KEY_UNIT_ATTENTION, Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED);
        return true;
    }

    public int count() {
        int n = 0;
        for (int i = 0; i < MAX_LUNS; i++) {
            if (luns.get(i) != null) {
                n++;
            }
        }
        return n;
    }

    private static void checkLun(int lun) {
        if (lun < 0 || lun >= MAX_LUNS) {
            throw new IllegalArgumentException("LUN " + lun + " outside 0.." + (MAX_LUNS - 1));
        }
    }

    /** REPORT LUNS (SPC-4 6.33): 8-byte header, then one 8-byte single-level LUN per unit. */
    int reportLuns(ScsiRequest r, MemorySegment scratch) {
        int select = r.u8(2);
        long alloc = r.u32(6);
        if (select > 2 || alloc < 16) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, select > 2 ? 2 : 6, 1);
            return ScsiLun.DONE;
        }
        int at = 8;
        scratch.asSlice(0, 8 + 8L * MAX_LUNS).fill((byte) 0);
        if (select != 1) { // 1 = well-known LUNs only: we have none
            for (int i = 0; i < MAX_LUNS; i++) {
                if (luns.get(i) != null) {
                    scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) i); // peripheral addressing, bus 0
                    at += 8;
                }
            }
        }
        scratch.set(U32, 0, at - 8);
        int n = (int) Math.min(Math.min(at, alloc), r.data().totalLength());
        r.data().scatterFrom(scratch, 0, n);
        r.good(n);
        return ScsiLun.DONE;
    }

    /** A command addressed to an empty LUN. */
    void noSuchLun(ScsiRequest r, MemorySegment scratch) {
        int opcode = r.opcode();
        if (opcode == Scsi.REPORT_LUNS && r.cdbLength() >= 12) {
            reportLuns(r, scratch);
        } else if (opcode == Scsi.INQUIRY && r.cdbLength() >= 6 && (r.u8(1) & 0x03) == 0 && r.u8(2) == 0) {
            int len = SpcPages.standardInquiry(scratch, 0x7F); // qualifier 011b, type 1Fh: no LU here
            int n = (int) Math.min(Math.min(len, r.u16(3)), r.data().totalLength());
            r.data().scatterFrom(scratch, 0, n);
            r.good(n);
        } else if (opcode == Scsi.REQUEST_SENSE && r.cdbLength() >= 6) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        } else {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        }
    }
}
