package io.phost.qos;

import java.util.ArrayList;
import java.util.List;
import java.util.PriorityQueue;
import java.util.SplittableRandom;
import java.util.function.IntSupplier;

/**
 * A discrete-event simulation: a device with a fixed service rate and queue depth, and closed-loop
 * clients (one actor per outstanding I/O slot) that ask a {@link QosFlow} before each submit and retry
 * after the wait it returns. Time is a {@link ManualNanoClock}; runs are deterministic.
 */
final class Simulation {
    static final long SECOND = 1_000_000_000L;

    /** A device with {@code depth} parallel servers and a FIFO queue; one normalized unit takes depth/capacity s. */
    static final class Device {
        final long[] slotFree;
        final double nanosPerUnit;

        Device(double capacityUnitsPerSec, int depth) {
            this.slotFree = new long[depth];
            this.nanosPerUnit = depth * 1e9 / capacityUnitsPerSec;
        }

        long submit(long now, int units) {
            int best = 0;
            for (int i = 1; i < slotFree.length; i++) {
                if (slotFree[i] < slotFree[best]) {
                    best = i;
                }
            }
            long start = Math.max(now, slotFree[best]);
            long done = start + Math.max(1, Math.round(units * nanosPerUnit));
            slotFree[best] = done;
            return done;
        }
    }

    /** One workload: {@code depth} actors on one flow, issuing I/Os of the sizes {@code sizes} gives. */
    final class Client {
        final QosFlow flow;
        final int normalization;
        final IntSupplier sizes;
        final long[] unitsPerSecond;
        final long[] iosPerSecond;
        long startNanos;
        long stopNanos = Long.MAX_VALUE;
        long admitted;
        /** Extra delay added to every wait: a queue thread that oversleeps (timer slack, a busy CPU). */
        java.util.function.LongSupplier oversleep = () -> 0;

        Client(QosFlow flow, int depth, int normalization, IntSupplier sizes) {
            this.flow = flow;
            this.normalization = normalization;
            this.sizes = sizes;
            int seconds = (int) (horizon / SECOND) + 2;
            this.unitsPerSecond = new long[seconds];
            this.iosPerSecond = new long[seconds];
            for (int i = 0; i < depth; i++) {
                actors.add(new Actor(this, actors.size()));
            }
        }

        Client oversleeping(long maxNanos, long seed) {
            SplittableRandom r = new SplittableRandom(seed);
            this.oversleep = () -> r.nextLong(maxNanos + 1);
            return this;
        }

        Client activeBetween(long start, long stop) {
            this.startNanos = start;
            this.stopNanos = stop;
            return this;
        }

        /** Normalized units completed in whole second {@code s} (window [s, s+1)). */
        long units(int s) {
            return unitsPerSecond[s];
        }

        double meanUnits(int fromSecond, int toSecondExclusive) {
            long sum = 0;
            for (int s = fromSecond; s < toSecondExclusive; s++) {
                sum += unitsPerSecond[s];
            }
            return (double) sum / (toSecondExclusive - fromSecond);
        }
    }

    final class Actor implements Comparable<Actor> {
        final Client client;
        final int id;
        long when;
        boolean inFlight;
        int bytes;
        long submittedAt;

        Actor(Client client, int id) {
            this.client = client;
            this.id = id;
        }

        @Override
        public int compareTo(Actor o) {
            int c = Long.compare(when, o.when);
            return c != 0 ? c : Integer.compare(id, o.id);
        }

        void step(long now) {
            if (inFlight) {
                client.flow.completed(bytes, now - submittedAt, now);
                int s = (int) ((now - origin) / SECOND);
                if (s < client.unitsPerSecond.length) {
                    client.unitsPerSecond[s] += QosPolicy.normalizedCost(bytes, client.normalization);
                    client.iosPerSecond[s]++;
                }
                inFlight = false;
                bytes = 0;
            }
            if (now - origin >= client.stopNanos) {
                return; // done for good
            }
            if (now - origin < client.startNanos) {
                schedule(origin + client.startNanos);
                return;
            }
            if (bytes == 0) {
                bytes = client.sizes.getAsInt();
            }
            long wait = client.flow.tryAdmit(bytes, now);
            if (wait > 0) {
                waits++;
                schedule(now + wait + client.oversleep.getAsLong());
                return;
            }
            client.admitted++;
            inFlight = true;
            submittedAt = now;
            schedule(device.submit(now, QosPolicy.normalizedCost(bytes, client.normalization)));
        }

        private void schedule(long t) {
            when = t;
            queue.add(this);
        }
    }

    final ManualNanoClock clock;
    final long origin;
    final long horizon;
    final Device device;
    final List<Actor> actors = new ArrayList<>();
    final PriorityQueue<Actor> queue = new PriorityQueue<>();
    final List<Runnable> atTimes = new ArrayList<>();
    final List<Long> atTimesWhen = new ArrayList<>();
    long waits;

    Simulation(ManualNanoClock clock, Device device, long horizonNanos) {
        this.clock = clock;
        this.origin = clock.nanoTime();
        this.device = device;
        this.horizon = horizonNanos;
    }

    Client client(QosFlow flow, int depth, int bytes) {
        return new Client(flow, depth, QosConfig.DEFAULT_NORMALIZATION_SIZE, () -> bytes);
    }

    Client client(QosFlow flow, int depth, int normalization, IntSupplier sizes) {
        return new Client(flow, depth, normalization, sizes);
    }

    /** Runs {@code action} at simulated time {@code atNanos} after the origin. */
    void at(long atNanos, Runnable action) {
        atTimesWhen.add(atNanos);
        atTimes.add(action);
    }

    void run() {
        for (Actor a : actors) {
            a.when = origin + a.client.startNanos;
            queue.add(a);
        }
        long end = origin + horizon;
        int nextAction = 0;
        while (!queue.isEmpty()) {
            Actor a = queue.poll();
            long t = a.when;
            while (nextAction < atTimes.size() && origin + atTimesWhen.get(nextAction) <= t) {
                clock.set(Math.max(clock.nanoTime(), origin + atTimesWhen.get(nextAction)));
                atTimes.get(nextAction++).run();
            }
            if (t > end) {
                break;
            }
            clock.set(t);
            a.step(t);
        }
    }

    static IntSupplier mixedSizes(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] sizes = {512, 4096, 8192, 16384, 65536, 12288, 1 << 20};
        return () -> sizes[r.nextInt(sizes.length)];
    }
}
