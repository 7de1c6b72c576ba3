package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.NetSyscalls;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

/**
 * The sleep/wake hand-off between a switch agent and a producer writing into a {@link FrameRing}: the consumer
 * arms, re-checks and sleeps in poll(2); the producer signals only while armed. A lost wake-up shows up as a
 * poll that times out while a frame is waiting.
 */
class WakeupSignalTest {
    @Test
    void shouldNotSignalWhenTheConsumerIsNotArmedAndRefuseToArmOverAWaitingFrame() {
        try (WakeupSignal s = new WakeupSignal()) {
            FrameRing ring = new FrameRing(1 << 16).onWrite(s::signalIfArmed);
            UnsafeBuffer f = new UnsafeBuffer(new byte[60]);
            ring.tryTransmit(f, 0, 60, PacketMeta.NONE);
            assertFalse(s.arm(ring::isEmpty), "a frame is already waiting: do not sleep");
            ring.poll((b, o, l, m) -> { }, 10);
            assertTrue(s.arm(ring::isEmpty));
            ring.tryTransmit(f, 0, 60, PacketMeta.NONE); // armed: this one signals
            assertEquals(1, pollOnce(s.fd(), 0));
            s.disarm();
            assertEquals(0, pollOnce(s.fd(), 0), "disarm drained the eventfd");
        }
    }

    @Test
    void shouldNeverLoseAWakeupUnderAConcurrentProducer() throws Exception {
        try (WakeupSignal s = new WakeupSignal()) {
            FrameRing ring = new FrameRing(1 << 20).onWrite(s::signalIfArmed);
            int frames = 20_000;
            AtomicLong received = new AtomicLong();
            Thread producer = Thread.ofPlatform().start(() -> {
                UnsafeBuffer f = new UnsafeBuffer(new byte[64]);
                for (int i = 0; i < frames; i++) {
                    while (!ring.tryTransmit(f, 0, 64, PacketMeta.NONE)) {
                        Thread.onSpinWait();
                    }
                    if (ThreadLocalRandom.current().nextInt(64) == 0) {
                        java.util.concurrent.locks.LockSupport.parkNanos(20_000); // let the consumer fall asleep
                    }
                }
            });
            int lost = 0;
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (received.get() < frames && System.nanoTime() < deadline) {
                int n = ring.poll((b, o, l, m) -> received.incrementAndGet(), 256);
                if (n > 0) {
                    continue;
                }
                if (s.arm(ring::isEmpty)) {
                    int ready = pollOnce(s.fd(), 200);
                    s.disarm();
                    if (ready == 0 && !ring.isEmpty()) {
                        lost++; // slept through a frame that was published while we were armed
                    }
                }
            }
            producer.join();
            assertEquals(frames, received.get());
            assertEquals(0, lost, "wake-ups lost");
        }
    }

    private static int pollOnce(int fd, int timeoutMillis) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment pfd = a.allocate(8, 8);
            pfd.set(ValueLayout.JAVA_INT, 0, fd);
            pfd.set(ValueLayout.JAVA_SHORT, 4, NetSyscalls.POLLIN);
            return NetSyscalls.poll(pfd.address(), 1, timeoutMillis);
        }
    }
}
