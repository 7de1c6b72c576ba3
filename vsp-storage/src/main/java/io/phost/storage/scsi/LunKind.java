package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;

/**
 * What kind of logical unit a {@link ScsiLun} is: how it answers a CDB. The core dispatches every decoded
 * command through this interface, never on the disk's class; a LUN's kind is chosen once, from the disk's
 * capabilities, when the LUN is made.
 * <pre>
 *   EmulatedLun     SBC block commands ({@link SbcCommands}) and SPC pages ({@link SpcPages}) over a disk
 *   PassThroughLun  identity, mode and log pages from the device itself (SG_IO); data commands emulated
 * </pre>
 */
sealed interface LunKind permits EmulatedLun, PassThroughLun {
    /**
     * Decodes {@code r} (opcode {@code opcode}, CDB long enough for it). Returns {@link ScsiLun#DONE} when the
     * command completed here, {@link ScsiLun#IO} when {@code r} now describes an engine operation.
     */
    int prepare(ScsiRequest r, int opcode, MemorySegment scratch, ScsiTarget target);

    /** True when management commands go to a device through SG_IO (such a LUN's disk cannot be swapped). */
    boolean passesThrough();
}
