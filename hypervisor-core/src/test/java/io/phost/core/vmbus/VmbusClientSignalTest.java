package io.phost.core.vmbus;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.Native;
import io.phost.core.sys.UnixSocket;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * A signal that interrupts the guest's wait for the host's answer (a profiler's timer, a jcmd attach) is
 * not "the host did not answer": the handshake keeps waiting until its timeout.
 */
class VmbusClientSignalTest {
    /** int tgkill(pid_t tgid, pid_t tid, int sig) */
    private static final MethodHandle TGKILL = Native.downcall("tgkill",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    /** HotSpot handles (and ignores) SIGPIPE, so it interrupts a blocking poll with EINTR and does nothing else. */
    private static final int SIGPIPE = 13;

    @Test
    void shouldKeepWaitingForTheHostsAnswerWhenASignalInterruptsTheWait() throws Throwable {
        Path dir = Files.createTempDirectory("perf19-vmbus-signal");
        Path sock = dir.resolve("host.sock");
        try (UnixSocket server = UnixSocket.listen(sock, 1);
             GuestRam ram = GuestRam.create("perf19-signal", 1 << 20)) {
            AtomicLong tid = new AtomicLong();
            AtomicReference<Throwable> outcome = new AtomicReference<>();
            Thread guest = new Thread(() -> {
                try {
                    String self = Files.readSymbolicLink(Path.of("/proc/thread-self")).toString();
                    tid.set(Long.parseLong(self.substring(self.lastIndexOf('/') + 1)));
                    VmbusClient.attach(sock, "p", new byte[32], ram).close();
                } catch (Throwable e) {
                    outcome.set(e);
                }
            }, "perf19-guest");
            guest.start();
            try (UnixSocket host = server.accept(5_000)) { // the host accepts and stays silent
                long deadline = System.nanoTime() + 5_000_000_000L;
                while (tid.get() == 0 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                Thread.sleep(200); // the guest is waiting in poll for VERSION_RESPONSE
                int pid = (int) ProcessHandle.current().pid();
                for (int i = 0; i < 5; i++) {
                    int r = (int) TGKILL.invokeExact(Native.errnoState(), pid, (int) tid.get(), SIGPIPE);
                    if (r != 0) {
                        break; // ESRCH: the guest thread has already ended
                    }
                    Thread.sleep(40);
                }
                assertTrue(guest.isAlive(), "the handshake gave up on a signal: " + outcome.get());
            }
            guest.join(15_000); // the host hung up: now the handshake fails, as it should
            assertInstanceOf(VmbusProtocolException.class, outcome.get());
        } finally {
            Files.deleteIfExists(sock);
            Files.deleteIfExists(dir);
        }
    }
}
