package io.phost.core.sys;

/** A failed system call: names the operation (with its subject, e.g. a path or fd) and the errno. */
public final class NativeException extends RuntimeException {
    private final int errno;

    public NativeException(String operation, int errno) {
        super(operation + ": " + Native.strerror(errno) + " (errno " + errno + ")");
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }
}
