package io.phost.storage.engine;

/** Receives engine completions on the polling thread. Must not allocate or block. */
@FunctionalInterface
public interface IoCompletionHandler {
    /**
     * @param userData the cookie given at submission
     * @param result   bytes transferred (reads/writes), 0 (flush/unmap/zeroes), or -errno
     */
    void onIoComplete(long userData, long result);
}
