package io.phost.storage.engine;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.Native;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The io_uring hand-off at engine level: a read held in flight (on an empty pipe) and a doorbell share one
 * wait, which also submits the read; the doorbell wakes it at once, the completion later.
 */
@Timeout(30)
class IoUringDoorbellWaitTest {
    private static final long LONG_WAIT = 10_000_000_000L;
    private static final MethodHandle PIPE = Native.downcallNoErrno("pipe",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS));

    @Test
    void shouldSubmitWithTheWaitAndWakeOnTheDoorbellWhileAReadIsInFlight() throws Throwable {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable");
        try (Arena arena = Arena.ofConfined(); EventFd bell = EventFd.create()) {
            MemorySegment fds = arena.allocate(8, 4);
            assertEquals(0, (int) PIPE.invokeExact(fds));
            int readEnd = fds.get(ValueLayout.JAVA_INT, 0);
            int writeEnd = fds.get(ValueLayout.JAVA_INT, 4);
            List<Long> done = new ArrayList<>();
            try (IoUringEngine engine = new IoUringEngine(readEnd, 4, false)) { // the ring's wait, not the lone psync
                assertTrue(engine.wakesOnDoorbell());
                MemorySegment buf = arena.allocate(8, 8);
                assertTrue(engine.tryRead(0, IoVecs.of(buf), 5));
                assertTrue(engine.hasUnsubmitted());

                Thread guest = Thread.ofPlatform().start(() -> {
                    sleepMillis(100);
                    bell.view().signal();
                });
                long t0 = System.nanoTime();
                assertTrue(engine.awaitWithDoorbell(bell, LONG_WAIT));
                long waited = System.nanoTime() - t0;
                guest.join();
                assertTrue(waited < LONG_WAIT / 2, "the doorbell ended the wait: " + waited + " ns");
                assertFalse(engine.hasUnsubmitted(), "the wait submitted the read");
                assertEquals(1, engine.poll((u, r) -> done.add(u)), "the doorbell's CQE");
                assertEquals(List.of(), done, "the read is still in flight");
                assertEquals(1, engine.doorbellRings());
                assertEquals(1, engine.inFlight());

                MemorySegment eight = arena.allocate(8, 8);
                eight.set(ValueLayout.JAVA_LONG, 0, 42L);
                assertEquals(8, Fd.write(writeEnd, eight, 8));
                assertTrue(engine.awaitWithDoorbell(bell, LONG_WAIT));
                engine.poll((u, r) -> done.add(u * 100 + r));
                assertEquals(List.of(5L * 100 + 8), done, "the read completed with its 8 bytes");
                assertEquals(42L, buf.get(ValueLayout.JAVA_LONG, 0));
                assertEquals(0, engine.inFlight());
            } finally {
                Fd.close(readEnd);
                Fd.close(writeEnd);
            }
        }
    }

    private static void sleepMillis(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
