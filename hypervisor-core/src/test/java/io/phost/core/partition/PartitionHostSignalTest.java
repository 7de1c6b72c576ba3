package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.Native;
import io.phost.core.sys.UnixSocket;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A signal that interrupts the host's wait for a guest's INITIATE_CONTACT (async-profiler's wall clock mode
 * signals every thread) is not a bad first message: the host keeps the connection and waits out its 5 s.
 * Before, the host hung up at once and the guest's next send failed with {@code sendmsg: Broken pipe}.
 */
class PartitionHostSignalTest {
    /** int tgkill(pid_t tgid, pid_t tid, int sig) */
    private static final MethodHandle TGKILL = Native.downcall("tgkill",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    /** HotSpot handles (and ignores) SIGPIPE, so it interrupts a blocking poll with EINTR and does nothing else. */
    private static final int SIGPIPE = 13;

    @TempDir
    Path dir;

    @Test
    void shouldKeepAGuestConnectionWhenASignalInterruptsTheWaitForItsFirstMessage() throws Throwable {
        try (PartitionHost host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults());
             UnixSocket guest = UnixSocket.connect(host.socketPath());
             Arena a = Arena.ofConfined()) {
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (!attachWaiting() && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            if (!attachWaiting()) {
                throw new AssertionError("no partition-attach thread waiting in UnixSocket.receive after 20 s");
            }
            int pid = (int) ProcessHandle.current().pid();
            int signalled = 0;
            for (int round = 0; round < 5; round++) {
                try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
                    for (Path t : tasks) {
                        String comm;
                        try {
                            comm = Files.readString(t.resolve("comm")).trim();
                        } catch (IOException gone) {
                            continue;
                        }
                        if (comm.startsWith("partition-attac")) { // comm holds 15 characters of the name
                            int tid = Integer.parseInt(t.getFileName().toString());
                            if ((int) TGKILL.invokeExact(Native.errnoState(), pid, tid, SIGPIPE) == 0) {
                                signalled++;
                            }
                        }
                    }
                }
                Thread.sleep(40);
            }
            assertTrue(signalled > 0, "no partition-attach thread to signal");
            // The host must still be waiting: nothing to read yet (0), not end of stream (-1).
            long n = guest.receive(a.allocate(4096), new int[UnixSocket.MAX_FDS], 500);
            assertEquals(0, n, "the host hung up on a signal before the guest's first message");
        }
    }

    private static boolean attachWaiting() {
        for (var e : Thread.getAllStackTraces().entrySet()) {
            if (e.getKey().getName().equals("partition-attach")) {
                for (StackTraceElement f : e.getValue()) {
                    if (f.getClassName().equals(UnixSocket.class.getName()) && f.getMethodName().equals("receive")) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
}
