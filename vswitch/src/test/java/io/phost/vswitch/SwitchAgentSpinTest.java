package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.EventFd;
import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.SpinGovernor;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

/**
 * The switch agent's spin after work: it polls memory-fed sources every round but checks kernel-queue sources (TAP,
 * a read(2) per poll) with one zero-timeout poll(2) per round for all of them, and reads them only when one is
 * readable; a frame that reaches a kernel source during the spin is found in the next round; a frame published while the agent
 * arms for sleep wakes it (no lost wake-up); the spin's length follows {@code [host] polling}, and in
 * {@code adaptive} mode the {@link SpinGovernor} lengthens it only while replies arrive during it and the thread
 * gets its CPU. A fake clock makes the spin bounds exact.
 */
class SwitchAgentSpinTest {
    private static final long MICROS = 1_000L;
    private static final long SECOND = 1_000_000_000L;

    private long t = SECOND;
    private final VSwitch sw = new VSwitch("spin", SwitchType.PRIVATE);
    private final Counting toA = new Counting();
    private final Counting toB = new Counting();

    @Test
    void shouldCheckKernelSourcesWithOnePollPerRoundWhileSpinningAndStillFindTheirFrames() {
        try (KernelSource tap = new KernelSource(Frames.plain(B, A)); KernelSource tap2 = new KernelSource(Frames.plain(B, Frames.C))) {
            Memory guest = new Memory(Frames.plain(A, B));
            sw.addPort("tap", PortKind.VNIC, PortConfig.vnic(A), toA, tap);
            sw.addPort("guest", PortKind.VNIC, PortConfig.vnic(B), toB, guest);
            sw.addPort("tap2", PortKind.VNIC, PortConfig.vnic(Frames.C), new Counting(), tap2);
            SwitchAgent agent = new SwitchAgent(sw, () -> t); // latency mode: a fixed 200 us spin
            agent.submit(s -> { }).join(); // as the appliance adds ports: through the agent (the poll sets)
            IdleStrategy idle = agent.idleStrategy();
            tap.offer(1);
            idle.idle(agent.doWork());
            assertEquals(1, toB.frames);
            long tapPolls = tap.polls + tap2.polls;
            long guestPolls = guest.polls;
            int rounds = 0;
            long checks0 = agent.fdChecks();
            while (agent.sleeps() == 0 && rounds < 10_000) {
                t += MICROS;
                idle.idle(agent.doWork());
                rounds++;
            }
            long spinRounds = agent.spinNanos() / MICROS;
            assertTrue(rounds >= spinRounds - SwitchAgent.CLOCK_ROUNDS && rounds <= spinRounds + SwitchAgent.CLOCK_ROUNDS + 2,
                "spun " + rounds + " rounds of 1 us, the spin is " + spinRounds + " us");
            // the first empty round after work reads every source; then the TAP is left to the poll(2) checks
            long reads = tap.polls + tap2.polls - tapPolls;
            assertTrue(reads <= 4, "read(2)s of two empty TAPs while spinning " + reads + " in " + rounds + " rounds");
            assertTrue(guest.polls - guestPolls >= rounds, "the memory source is polled every round: " + (guest.polls - guestPolls)
                + " in " + rounds);
            long checks = agent.fdChecks() - checks0;
            assertTrue(checks >= rounds - 2 && checks <= rounds, "one poll(2) for both TAPs per spin round: " + checks
                + " in " + rounds + " rounds");

            // A frame reaches the TAP in the middle of the next spin: found in the round after the check that sees it.
            guest.offer = 1;
            idle.idle(agent.doWork());
            assertEquals(1, toA.frames);
            for (int i = 0; i < 50; i++) {
                t += MICROS;
                idle.idle(agent.doWork());
            }
            long sleeps = agent.sleeps();
            tap.offer(1);
            int waited = 0;
            while (toB.frames < 2) {
                t += MICROS;
                idle.idle(agent.doWork());
                waited++;
                assertTrue(waited < 1_000, "the TAP frame was never read");
            }
            assertEquals(sleeps, agent.sleeps(), "found while spinning, without a sleep");
            assertTrue(waited <= 2, "a TAP frame during the spin waited " + waited + " rounds");
        }
    }

    @Test
    void shouldWakeAtOnceForAFramePublishedWhileTheAgentArms() {
        FrameRing ring = new FrameRing(64 * 1024);
        WakeupSignal signal = new WakeupSignal();
        byte[] frame = Frames.plain(B, A);
        java.lang.foreign.MemorySegment src = java.lang.foreign.MemorySegment.ofArray(frame);
        // A guest source (as NetVsp's): a frame is published by "the producer" right after the agent's empty check,
        // before its poll(2): the window a lost wake-up would fall into.
        boolean[] raceNext = {false};
        FrameSource guest = new FrameSource() {
            @Override
            public int poll(FrameHandler handler, int limit) {
                return ring.poll(handler, limit);
            }

            @Override
            public int readinessFd() {
                return signal.fd();
            }

            @Override
            public boolean armWakeup() {
                boolean armed = signal.arm(ring::isEmpty);
                if (armed && raceNext[0]) {
                    raceNext[0] = false;
                    ring.tryWrite(src, 0, frame.length);
                    signal.signalIfArmed();
                }
                return armed;
            }

            @Override
            public void disarmWakeup() {
                signal.disarm();
            }
        };
        try (signal) {
            sw.addPort("guest", PortKind.VNIC, PortConfig.vnic(A), toA, guest);
            sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
            SwitchAgent agent = new SwitchAgent(sw, () -> t);
            agent.submit(s -> { }).join();
            IdleStrategy idle = agent.idleStrategy();
            for (int race = 0; race < 20; race++) {
                long delivered = toB.frames;
                raceNext[0] = true; // the frame comes when the agent next arms
                long sleeps = agent.sleeps();
                long ready = agent.readySleeps();
                for (int round = 0; agent.sleeps() == sleeps; round++) {
                    assertTrue(round < 1_000, "race " + race + ": the agent never slept");
                    t += 10 * MICROS; // through the spin: the round after it arms and sleeps
                    idle.idle(agent.doWork());
                }
                assertEquals(sleeps + 1, agent.sleeps(), "race " + race + ": the agent slept");
                assertEquals(ready + 1, agent.readySleeps(), "race " + race + ": the frame published while arming ended the"
                    + " sleep (a lost wake-up would have slept to the timeout)");
                idle.idle(agent.doWork());
                assertEquals(delivered + 1, toB.frames, "race " + race + ": the frame was forwarded after the wake-up");
            }
        }
    }

    @Test
    void shouldSpinAsThePollingModeSays() {
        assertEquals(SwitchAgent.EFFICIENCY_SPIN_NANOS, new SwitchAgent(sw, () -> t, PollingMode.EFFICIENCY, null).spinNanos());
        assertEquals(SwitchAgent.RESPONSE_SPIN_NANOS, new SwitchAgent(sw, () -> t, PollingMode.LATENCY, null).spinNanos());
        SwitchAgent adaptive = new SwitchAgent(sw, () -> t, PollingMode.ADAPTIVE, new SpinGovernor(() -> 0, () -> t));
        assertEquals(SwitchAgent.EFFICIENCY_SPIN_NANOS, adaptive.spinNanos(), "adaptive starts on the short spin");
        assertTrue(SwitchAgent.EFFICIENCY_SPIN_NANOS < SwitchAgent.RESPONSE_SPIN_NANOS);
    }

    @Test
    void shouldSpinLongerForRepliesWhileThatPaysAndStopWhenTheCpuIsContended() throws Exception {
        // A governor keeps its state per thread: a fresh thread gives this case a fresh one.
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread th = new Thread(() -> {
            try {
                requestResponse();
            } catch (Throwable e) {
                failure.set(e);
            }
        }, "switch-spin-governor-test");
        th.start();
        th.join();
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
    }

    private void requestResponse() {
        Memory a = new Memory(Frames.plain(B, A));
        Memory b = new Memory(Frames.plain(A, B));
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A), toA, a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, b);
        AtomicLong runQueueWait = new AtomicLong();
        SwitchAgent agent = new SwitchAgent(sw, () -> t, PollingMode.ADAPTIVE, new SpinGovernor(runQueueWait::get, () -> t));
        IdleStrategy idle = agent.idleStrategy();
        // Requests from a, each answered by b 105 us later: beyond the short spin, within the long one.
        long replyAfter = (SwitchAgent.EFFICIENCY_SPIN_NANOS + SwitchAgent.RESPONSE_SPIN_NANOS) / 2 / MICROS;
        int episodes = 0;
        while (agent.spinNanos() != SwitchAgent.RESPONSE_SPIN_NANOS) {
            exchange(agent, idle, a, b, replyAfter);
            assertTrue(++episodes < 1_000, "replies 105 us after each request never made the adaptive spin longer");
        }
        long spinning = toB.frames;
        for (int i = 0; i < 200; i++) {
            exchange(agent, idle, a, b, replyAfter);
        }
        assertEquals(SwitchAgent.RESPONSE_SPIN_NANOS, agent.spinNanos(), "spinning pays while every reply is caught");
        assertTrue(toA.frames >= 200 && toB.frames - spinning == 200);
        // Now the thread waits for a CPU half the time: the governor stops the long spin at its next decision.
        int more = 0;
        while (agent.spinNanos() != SwitchAgent.EFFICIENCY_SPIN_NANOS) {
            runQueueWait.addAndGet(replyAfter * MICROS);
            exchange(agent, idle, a, b, replyAfter);
            assertTrue(++more < 500, "a contended CPU never stopped the long spin");
        }
    }

    /** A request from a, then idle rounds of 1 us, then b's reply after {@code replyAfter} us, then a's next request. */
    private void exchange(SwitchAgent agent, IdleStrategy idle, Memory a, Memory b, long replyAfter) {
        a.offer = 1;
        idle.idle(agent.doWork());
        for (long us = 0; us < replyAfter; us++) {
            t += MICROS;
            idle.idle(agent.doWork());
        }
        b.offer = 1;
        idle.idle(agent.doWork());
        for (int us = 0; us < 3; us++) {
            t += MICROS;
            idle.idle(agent.doWork());
        }
    }

    /** A source fed from memory (as a guest ring): polled every round, counts its polls. */
    private static final class Memory implements FrameSource {
        private final UnsafeBuffer frame;
        int offer;
        long polls;

        Memory(byte[] f) {
            frame = new UnsafeBuffer(f);
        }

        @Override
        public int poll(FrameHandler handler, int limit) {
            polls++;
            int n = Math.min(offer, limit);
            for (int i = 0; i < n; i++) {
                handler.onFrame(frame, 0, frame.capacity(), PacketMeta.NONE);
            }
            offer -= n;
            return n;
        }
    }

    /** A kernel-queue source (as a TAP): its eventfd is readable while frames wait; counts its polls ("read(2)s"). */
    private static final class KernelSource implements FrameSource {
        private final UnsafeBuffer frame;
        private final EventFd fd = EventFd.create();
        int offer;
        long polls;

        KernelSource(byte[] f) {
            frame = new UnsafeBuffer(f);
        }

        void offer(int n) {
            offer += n;
            fd.signal();
        }

        @Override
        public int poll(FrameHandler handler, int limit) {
            polls++;
            int n = Math.min(offer, limit);
            for (int i = 0; i < n; i++) {
                handler.onFrame(frame, 0, frame.capacity(), PacketMeta.NONE);
            }
            offer -= n;
            if (offer == 0) {
                fd.tryConsume();
            }
            return n;
        }

        @Override
        public boolean kernelQueue() {
            return true;
        }

        @Override
        public int readinessFd() {
            return fd.fd();
        }

        @Override
        public void close() {
            fd.close();
        }
    }

    private static final class Counting implements FrameSink {
        long frames;

        @Override
        public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            frames++;
            return true;
        }
    }
}
