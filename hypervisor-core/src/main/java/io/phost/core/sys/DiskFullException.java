package io.phost.core.sys;

import java.io.IOException;

/**
 * The file system holding an image has no space (ENOSPC) or the owner's quota is used up (EDQUOT). Kept
 * apart from other I/O failures so transports can say "no space" (NBD ENOSPC, SCSI SPACE ALLOCATION
 * FAILED) and the guest sees a full disk, not a broken one.
 */
public final class DiskFullException extends IOException {
    public static final int ENOSPC = Errno.ENOSPC;
    public static final int EDQUOT = Errno.EDQUOT;

    public DiskFullException(String message) {
        super(message);
    }

    public DiskFullException(String message, Throwable cause) {
        super(message, cause);
    }

    /** True for the errnos that mean "no space". */
    public static boolean isNoSpaceErrno(int errno) {
        return errno == ENOSPC || errno == EDQUOT;
    }

    /** True when {@code t} or a cause is a {@link DiskFullException}. */
    public static boolean isDiskFull(Throwable t) {
        for (int depth = 0; t != null && depth < 8; depth++, t = t.getCause()) {
            if (t instanceof DiskFullException) {
                return true;
            }
        }
        return false;
    }
}
