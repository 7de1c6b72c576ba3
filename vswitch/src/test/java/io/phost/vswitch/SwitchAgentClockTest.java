package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.agrona.DirectBuffer;
import org.agrona.concurrent.IdleStrategy;
import org.agrona.concurrent.UnsafeBuffer;
import org.junit.jupiter.api.Test;

/**
 * The switch agent reads its clock every {@link SwitchAgent#CLOCK_ROUNDS} rounds or {@link SwitchAgent#CLOCK_FRAMES}
 * frames and after every sleep, not per round: the reads stay bounded, the switch's clock stays within that bound,
 * the time-based policies (storm limit, max-bandwidth shaping) hold their rates over time, and a sleep always ends
 * with a current clock. A fake clock makes every number exact.
 */
class SwitchAgentClockTest {
    private static final long MICROS = 1_000L;
    private static final long SECOND = 1_000_000_000L;

    private long t = SECOND;
    private final VSwitch sw = new VSwitch("clk", SwitchType.PRIVATE);
    private final SwitchAgent agent = new SwitchAgent(sw, () -> t);
    private final Counting toB = new Counting();

    @Test
    void shouldReadTheClockEveryClockRoundsWhenIdleAndEveryClockFramesWhenBusy() {
        Repeater a = new Repeater(Frames.plain(B, A));
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        for (int i = 0; i < 10 * SwitchAgent.CLOCK_ROUNDS; i++) {
            agent.doWork();
        }
        assertEquals(10, agent.clockReads(), "idle: one read per " + SwitchAgent.CLOCK_ROUNDS + " rounds");

        int perRound = SwitchAgent.CLOCK_FRAMES / 4;
        for (int i = 0; i < 64; i++) {
            a.offer = perRound;
            agent.doWork();
        }
        assertEquals(64L * perRound, toB.frames);
        long busyReads = agent.clockReads() - 10;
        assertTrue(busyReads >= 15 && busyReads <= 17, "busy, " + perRound + " frames a round: a read every 4 rounds, was "
            + busyReads + " in 64 rounds");
    }

    @Test
    void shouldKeepTheSwitchClockWithinTheBoundBusyOrIdle() {
        Repeater a = new Repeater(Frames.plain(B, A));
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        for (int i = 0; i < 1000; i++) {
            a.offer = i % 3 == 0 ? 0 : i % 7;
            agent.doWork();
            long lag = t - sw.now();
            assertTrue(lag >= 0 && lag < SwitchAgent.CLOCK_ROUNDS * MICROS, "round " + i + ": the switch's clock is " + lag + " ns behind");
            t += MICROS;
        }
    }

    @Test
    void shouldHoldTheStormLimitOverTime() {
        Repeater a = new Repeater(Frames.plain(EthernetDescriptor.BROADCAST, A));
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withLimits(1000, 0, 1, 16), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        // 2 s at one broadcast every 100 us (10,000 pps offered) against a limit of 1,000 pps, burst 100.
        for (int i = 0; i < 20_000; i++) {
            a.offer = 1;
            agent.doWork();
            t += 100 * MICROS;
        }
        assertTrue(toB.frames >= 2_097 && toB.frames <= 2_100, "1,000 pps for 2 s plus a burst of 100: " + toB.frames);
    }

    @Test
    void shouldShapeToMaxBandwidthOverTime() {
        byte[] frame = java.util.Arrays.copyOf(Frames.plain(B, A), 1000);
        Repeater a = new Repeater(frame);
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withLimits(0, 8_000_000, 1, 16), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        // 1,000,000 B/s; offered 4 frames of 1,000 B every 100 us (40 MB/s) for 2 s.
        for (int i = 0; i < 20_000; i++) {
            a.offer = 4;
            agent.doWork();
            t += 100 * MICROS;
        }
        long expected = 2_000_000 + 2 * 65_536; // the rate for 2 s plus the burst (two GSO super-frames)
        assertTrue(Math.abs(toB.bytes - expected) <= 2 * 1000 + SwitchAgent.CLOCK_ROUNDS * 100,
            "shaped to 1 MB/s for 2 s plus the burst (" + expected + " B), admitted " + toB.bytes);
    }

    @Test
    void shouldReadTheClockEveryRoundWhileAPortIsInBandwidthDebt() {
        byte[] frame = java.util.Arrays.copyOf(Frames.plain(B, A), 1000);
        Repeater a = new Repeater(frame);
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withLimits(0, 8_000_000, 1, 16), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        a.offer = 1_000; // far more than the 131,072-byte burst: the port goes into debt in the first round
        agent.doWork();
        agent.doWork(); // skipped for the debt: from the next round on the clock is read every round
        long before = agent.clockReads();
        for (int i = 0; i < 100; i++) {
            agent.doWork(); // skipped (in debt) every round: the clock does not advance
        }
        assertEquals(100, agent.clockReads() - before, "a shaped port waits on time: a read per round");
    }

    @Test
    void shouldSpinAboutSpinNanosAfterWorkAndReadTheClockAfterEverySleep() {
        Repeater a = new Repeater(Frames.plain(B, A));
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A), new Counting(), a);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B), toB, null);
        IdleStrategy idle = agent.idleStrategy();
        a.offer = 1;
        idle.idle(agent.doWork()); // work: the spin window starts
        int rounds = 0;
        while (true) {
            t += MICROS;
            long before = agent.clockReads();
            int work = agent.doWork();
            long afterWork = agent.clockReads();
            idle.idle(work);
            rounds++;
            if (agent.clockReads() > afterWork) {
                break; // slept (a park: the test's source has no fd) and read the clock on waking
            }
            assertTrue(rounds < 10_000, "never slept");
            assertTrue(agent.clockReads() - before <= 1);
        }
        long spinRounds = agent.spinNanos() / MICROS;
        assertTrue(rounds >= spinRounds - SwitchAgent.CLOCK_ROUNDS && rounds <= spinRounds + SwitchAgent.CLOCK_ROUNDS + 1,
            "spun " + rounds + " rounds of 1 us, the spin is " + spinRounds + " us");
        assertEquals(t, sw.now(), "a sleep ends with a current clock");
        for (int i = 0; i < 3; i++) {
            t += 5_000 * MICROS;
            idle.idle(0); // past the spin: sleeps at once
            assertEquals(t, sw.now(), "sleep " + i + " ends with a current clock");
        }
    }

    /** Offers {@link #offer} copies of one frame, then nothing until the test offers more. */
    private static final class Repeater implements FrameSource {
        private final UnsafeBuffer frame;
        int offer;

        Repeater(byte[] f) {
            frame = new UnsafeBuffer(f);
        }

        @Override
        public int poll(FrameHandler handler, int limit) {
            int n = Math.min(offer, limit);
            for (int i = 0; i < n; i++) {
                handler.onFrame(frame, 0, frame.capacity(), PacketMeta.NONE);
            }
            offer -= n;
            return n;
        }
    }

    private static final class Counting implements FrameSink {
        long frames;
        long bytes;

        @Override
        public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            frames++;
            bytes += length;
            return true;
        }
    }
}
