package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Limits hold within ±2% in every 1-second window after the first, at QD1 and QD32 (simulated device). */
class QosLimitAccuracyTest {

    @ParameterizedTest(name = "limit {0} IOPS at QD{1}")
    @CsvSource({"100,1", "100,32", "1000,1", "1000,32", "10000,1", "10000,32", "50000,1", "50000,32"})
    void shouldHoldLimitWithinTwoPercentInEveryWindowAfterTheFirst(long limit, int qd) {
        ManualNanoClock clock = new ManualNanoClock(1_000_000_000L);
        QosService qos = new QosService(QosConfig.defaults().withDevice(2_000_000, 4), clock);
        qos.updatePolicy(QosPolicy.dedicated("cap", 0, limit));
        QosFlow flow = qos.createFlow("vm1", "disk0", "cap");
        // 2 M normalized IOPS, 4 servers: 2 us per I/O, so QD1 can exceed 50 000 IOPS unthrottled.
        Simulation sim = new Simulation(clock, new Simulation.Device(2_000_000, 4), 4 * Simulation.SECOND);
        Simulation.Client c = sim.client(flow, qd, 4096);
        sim.run();
        for (int s = 1; s < 4; s++) {
            long got = c.units(s);
            assertTrue(Math.abs(got - limit) <= limit * 0.02,
                "window " + s + ": " + got + " IOPS vs limit " + limit);
        }
    }

    @ParameterizedTest(name = "limit {0} IOPS at QD{1}, waits oversleep up to {2} us")
    @CsvSource({"100,1,20000", "1000,1,5000", "10000,1,2000", "10000,4,5000", "50000,32,3000"})
    void shouldNotUndershootWhenQueueThreadsWakeLate(long limit, int qd, long oversleepMicros) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(2_000_000, 4), clock);
        qos.updatePolicy(QosPolicy.dedicated("cap", 0, limit));
        QosFlow flow = qos.createFlow("vm1", "disk0", "cap");
        Simulation sim = new Simulation(clock, new Simulation.Device(2_000_000, 4), 4 * Simulation.SECOND);
        Simulation.Client c = sim.client(flow, qd, 4096).oversleeping(oversleepMicros * 1000, limit);
        sim.run();
        for (int s = 1; s < 4; s++) {
            assertTrue(Math.abs(c.units(s) - limit) <= limit * 0.02, "window " + s + ": " + c.units(s) + " vs " + limit);
        }
    }

    @ParameterizedTest(name = "limit {0} IOPS with mixed sizes")
    @CsvSource({"1000", "20000"})
    void shouldCountMixedSizesInNormalizedUnits(long limit) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 8), clock);
        qos.updatePolicy(QosPolicy.dedicated("cap", 0, limit));
        QosFlow flow = qos.createFlow("vm1", "disk0", "cap");
        Simulation sim = new Simulation(clock, new Simulation.Device(10_000_000, 8), 4 * Simulation.SECOND);
        Simulation.Client c = sim.client(flow, 16, 8192, Simulation.mixedSizes(7));
        sim.run();
        for (int s = 1; s < 4; s++) {
            long got = c.units(s);
            // A 1 MiB I/O is 128 units: the limit tag may overshoot a window edge by one I/O.
            assertTrue(Math.abs(got - limit) <= limit * 0.02 + 128, "window " + s + ": " + got + " vs " + limit);
            assertTrue(c.iosPerSecond[s] < got, "large I/Os must cost more than one unit");
        }
    }

    @ParameterizedTest(name = "normalization {0} bytes")
    @CsvSource({"4096", "8192", "65536"})
    void shouldChargeCeilOfSizeOverNormalization(int norm) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withNormalizationSize(norm), clock);
        qos.updatePolicy(QosPolicy.dedicated("cap", 0, 1000));
        ManagedQosFlow f = qos.createFlow("vm", "d", "cap");
        assertEquals(0, f.tryAdmit(norm * 3 + 1, 0));
        f.completed(norm * 3 + 1, 1000, 0);
        assertEquals(4, f.totalCompletedUnits());
        assertEquals(1, QosPolicy.normalizedCost(0, norm));
        assertEquals(1, QosPolicy.normalizedCost(norm, norm));
        assertEquals(2, QosPolicy.normalizedCost(norm + 1, norm));
    }

    @ParameterizedTest(name = "bandwidth {0} MB/s")
    @CsvSource({"10", "200"})
    void shouldHoldBandwidthLimit(long mbPerSec) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 8), clock);
        long bw = mbPerSec * 1_000_000;
        qos.updatePolicy(QosPolicy.dedicated("bw", 0, 0).withMaxBandwidth(bw));
        QosFlow flow = qos.createFlow("vm1", "disk0", "bw");
        Simulation sim = new Simulation(clock, new Simulation.Device(10_000_000, 8), 4 * Simulation.SECOND);
        Simulation.Client c = sim.client(flow, 8, 65536);
        sim.run();
        for (int s = 1; s < 4; s++) {
            double bytes = c.iosPerSecond[s] * 65536.0;
            assertTrue(Math.abs(bytes - bw) <= bw * 0.02 + 65536, "window " + s + ": " + bytes + " B/s vs " + bw);
        }
    }
}
