package io.phost.storage.scsi;

import io.phost.storage.backend.SgIo;

import java.lang.foreign.MemorySegment;

/**
 * A pass-through LUN over a device that speaks SG_IO: the device answers its own identity, mode and log
 * pages; everything else (data commands above all, which the engines run) is emulated as for any disk.
 * Not passed through is what must describe this VSP rather than the device: the block limits page (VPD B0:
 * our transfer and UNMAP limits, which the guest sizes its commands by) and, on a LUN configured read-only
 * over a writable device, MODE SENSE (its WP bit must say read-only).
 */
final class PassThroughLun implements LunKind {
    /** executeSgIo: the ioctl failed, translate the command instead. */
    private static final int SG_FAILED = -1;
    private static final int SG_TIMEOUT_MILLIS = 10_000;
    /** driver_status low bits (DRIVER_ERROR, DRIVER_TIMEOUT ...); 0x08 (DRIVER_SENSE) only says sense is valid. */
    private static final int SG_DRIVER_MASK = 0x07;

    private final ScsiLun lun;
    private final EmulatedLun emulated;
    private final int fd;
    /** Header, CDB and sense buffers; shared by every queue of the target, hence the lock in executeSgIo. */
    private final SgIo sg = new SgIo();

    PassThroughLun(ScsiLun lun, EmulatedLun emulated, int fd) {
        this.lun = lun;
        this.emulated = emulated;
        this.fd = fd;
    }

    @Override
    public int prepare(ScsiRequest r, int opcode, MemorySegment scratch, ScsiTarget target) {
        if (toDevice(r, opcode) && executeSgIo(r) == ScsiLun.DONE) {
            lun.stats().recordOther();
            return ScsiLun.DONE;
        }
        // Emulated, or the ioctl itself failed (e.g. the kernel could not map this iovec list): translate.
        return emulated.prepare(r, opcode, scratch, target);
    }

    @Override
    public boolean passesThrough() {
        return true;
    }

    private boolean toDevice(ScsiRequest r, int opcode) {
        return switch (opcode) {
            case Scsi.INQUIRY -> (r.u8(1) & 0x01) == 0 || r.u8(2) != 0xB0;
            case Scsi.MODE_SENSE_6, Scsi.MODE_SENSE_10 -> !lun.readOnly();
            case Scsi.LOG_SENSE -> true;
            default -> false;
        };
    }

    /**
     * Runs a data-in management command on the device through SG_IO, straight into the request's iovecs
     * (an sg_iovec array has the iovec layout). Synchronous: these are rare, small commands.
     *
     * <pre>
     *   ioctl failed (-errno)                      -> SG_FAILED: the caller translates the command
     *   host_status != 0 (DID_*) or driver error   -> CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE
     *   status GOOD                                -> GOOD, transferred = dxfer_len - resid (clamped)
     *   status CHECK CONDITION with sense          -> CHECK CONDITION, the device's sense (first 18 bytes)
     *   status CHECK CONDITION without sense       -> CHECK CONDITION, ABORTED COMMAND (the guest retries)
     *   any other status (BUSY, TASK SET FULL, RESERVATION CONFLICT ...) -> that status, no data
     * </pre>
     */
    private int executeSgIo(ScsiRequest r) {
        synchronized (sg) {
            int status = sg.execute(fd, r.cdb(), 0, r.cdbLength(), SgIo.DXFER_FROM_DEV, r.data().arrayAddress(),
                r.data().totalLength(), r.data().count(), SG_TIMEOUT_MILLIS);
            if (status < 0) {
                return SG_FAILED;
            }
            if (sg.hostStatus() != 0 || (sg.driverStatus() & SG_DRIVER_MASK) != 0) {
                r.checkCondition(Scsi.KEY_HARDWARE_ERROR, Scsi.ASC_INTERNAL_TARGET_FAILURE);
                return ScsiLun.DONE;
            }
            long total = r.data().totalLength();
            if (status == Scsi.STATUS_GOOD) {
                r.good(Math.clamp(total - sg.resid(), 0, total));
            } else if (status == Scsi.STATUS_CHECK_CONDITION) {
                int n = Math.min(sg.senseLength(), Scsi.FIXED_SENSE_LENGTH);
                if (n >= 8) {
                    r.deviceCheckCondition(sg.sense(), n);
                } else {
                    r.checkCondition(Scsi.KEY_ABORTED_COMMAND, Scsi.ASC_NONE);
                }
            } else {
                r.deviceStatus((byte) status);
            }
            return ScsiLun.DONE;
        }
    }
}
