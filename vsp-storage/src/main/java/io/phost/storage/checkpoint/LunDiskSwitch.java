package io.phost.storage.checkpoint;

import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;

/**
 * Switches the disk behind a running LUN under one short I/O pause: what a production checkpoint does to
 * each disk (the new disk is a differencing child of the old one), and what an online merge does at its
 * end (the same leaf, re-linked to a new parent). The guest sees its commands wait, never fail.
 * <pre>
 *   pauseIo (new commands held, wait for in-flight = 0)
 *     → flush old
 *     → next = step.openNextOn(old)      (a child opened on the open old disk, which becomes its parent;
 *                                         failure: old is closed, step.reopenPrevious(), the LUN goes on with it)
 *     → or, when that answers null:
 *       close old                        (an open image holds a flock its child's open would conflict with)
 *       → next = step.openNext()         (failure: step.reopenPrevious(), the LUN goes on with it)
 *     → lun.swapDisk(next) → resumeIo    (held commands start on next)
 * </pre>
 */
public final class LunDiskSwitch {
    /** What to open once the old disk is flushed and closed. */
    public interface Step {
        /** Creates/opens the disk the LUN continues on (same size and sector sizes). */
        VirtualDisk openNext() throws IOException;

        /**
         * Opens the next disk on the flushed, still open {@code old} disk, which it takes over (as the next
         * disk's parent; it closes with it). Null, with {@code old} untouched, when this step needs {@code old}
         * closed first ({@link #openNext}, the default). Throwing, it must have closed {@code old}.
         */
        default VirtualDisk openNextOn(VirtualDisk old) throws IOException {
            return null;
        }

        /** {@link #openNext} failed: reopen the old disk so the LUN continues unchanged. */
        VirtualDisk reopenPrevious() throws IOException;

        /** Puts {@code next} behind the LUN (a live grow swaps a larger disk: {@link ScsiLun#swapGrownDisk}). */
        default void swapInto(ScsiLun lun, VirtualDisk next) {
            lun.swapDisk(next);
        }
    }

    /**
     * How long the LUN's I/O was held (drain + close + open), its parts, and the disk it runs on now.
     * @param drainNanos waiting for in-flight commands
     * @param closeNanos flushing (and, unless the next disk opened on it, closing) the old disk
     */
    public record Result(long pauseNanos, long drainNanos, long closeNanos, VirtualDisk disk) {
        /** Creating/opening the next disk (the step's own work). */
        public long openNanos() {
            return pauseNanos - drainNanos - closeNanos;
        }
    }

    private LunDiskSwitch() {
    }

    /**
     * Runs the switch. Throws (with the LUN resumed on its previous disk) when in-flight commands did not
     * drain within {@code drainTimeoutMillis} or when {@code step.openNext} failed.
     */
    public static Result switchDisk(ScsiLun lun, Step step, long drainTimeoutMillis) throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        if (!lun.pauseIo(drainTimeoutMillis)) {
            lun.resumeIo(); // the old disk is untouched: let the guest go on
            throw new IOException("LUN " + lun.name() + ": " + lun.inFlight() + " commands still executing after "
                + drainTimeoutMillis + " ms; disk not switched");
        }
        long drained = System.nanoTime();
        VirtualDisk old = lun.disk();
        try {
            if (!old.readOnly()) {
                old.flush();
            }
        } catch (IOException | RuntimeException e) {
            lun.resumeIo(); // nothing changed yet: the guest goes on with the old disk (its next flush fails too)
            throw e;
        }
        long closed = System.nanoTime();
        VirtualDisk next;
        try {
            next = step.openNextOn(old);
            if (next == null) {
                old.close();
                closed = System.nanoTime();
                next = step.openNext();
            }
        } catch (IOException | RuntimeException e) {
            VirtualDisk back;
            try {
                back = step.reopenPrevious();
            } catch (IOException | RuntimeException again) {
                e.addSuppressed(again);
                throw new IOException("LUN " + lun.name() + ": switching its disk failed and its previous disk "
                    + "did not reopen; the LUN's I/O stays paused", e);
            }
            lun.swapDisk(back);
            lun.resumeIo();
            throw e;
        }
        step.swapInto(lun, next);
        lun.resumeIo();
        return new Result(System.nanoTime() - t0, drained - t0, closed - drained, next);
    }
}
