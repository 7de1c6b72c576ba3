package io.phost.core.sys;

/**
 * A failed system call, the one failure type of the native layer: names the operation (with its subject,
 * e.g. a path or fd), the errno and, for positional I/O, the file offset ({@link #NO_OFFSET} otherwise).
 */
public final class NativeException extends RuntimeException {
    /** {@link #offset()} of a call that has no file position (open, close, ioctl). */
    public static final long NO_OFFSET = -1;

    private final String operation;
    private final int errno;
    private final long offset;

    public NativeException(String operation, int errno) {
        this(operation, errno, NO_OFFSET);
    }

    public NativeException(String operation, int errno, long offset) {
        super(operation + (offset == NO_OFFSET ? "" : " at offset " + offset) + ": " + Native.strerror(errno)
            + " (errno " + errno + ")");
        this.operation = operation;
        this.errno = errno;
        this.offset = offset;
    }

    public String operation() {
        return operation;
    }

    public int errno() {
        return errno;
    }

    /** The file offset the call failed at, or {@link #NO_OFFSET}. */
    public long offset() {
        return offset;
    }

    /** True for the errnos that mean "no space": ENOSPC, and EDQUOT (the owner's quota is used up). */
    public boolean noSpace() {
        return errno == Errno.ENOSPC || errno == Errno.EDQUOT;
    }
}
