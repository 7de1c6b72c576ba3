package io.phost.core.sys;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Ends this process at once with {@code _exit(2)}, for a program that has already flushed and closed everything
 * that matters (phost's CLI after its command, a guest workload after the host's shutdown request).
 *
 * <p>Why not {@code System.exit} or {@code Runtime.halt}: at its final safepoint HotSpot waits for every thread
 * that is in native code (a poll(2), accept(2) or io_uring wait: any FFM downcall) to block, at least 300 ms
 * whenever one is and up to 10 s while a compiler thread is. phost always has such threads, so that wait was most
 * of the 0.5-0.8 s between the host's last stop step and its exit on a loaded machine, and 0.3-0.5 s of each
 * process partition's stop. What the JVM's exit would add: shutdown hooks (phost registers none) and unlinking
 * its {@code /tmp/hsperfdata_USER/PID} file (done here); memory, descriptors and file locks the kernel releases
 * as for any exit.
 */
public final class ProcessExit {
    /** void _exit(int status) */
    private static final MethodHandle EXIT = Native.downcallNoErrno("_exit",
        FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT));

    private ProcessExit() {}

    /** Links the downcall now (class initialisation), so the exit itself costs no linking on a busy machine. */
    public static void prepare() {
        // the static initialiser did the work
    }

    /** Flushes System.out and System.err, removes the JVM's performance-data file and exits with {@code status}. */
    public static void now(int status) {
        System.out.flush();
        System.err.flush();
        try {
            Files.deleteIfExists(Path.of("/tmp", "hsperfdata_" + System.getProperty("user.name"),
                Long.toString(ProcessHandle.current().pid())));
        } catch (Exception e) {
            // the JVM at its next start removes files of dead processes
        }
        try {
            EXIT.invokeExact(status);
        } catch (Throwable t) {
            Runtime.getRuntime().halt(status);
        }
        Runtime.getRuntime().halt(status); // not reached: _exit does not return
    }
}
