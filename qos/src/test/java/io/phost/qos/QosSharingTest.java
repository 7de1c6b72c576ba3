package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Reservations, weights, work conservation and starvation on a saturated simulated device. */
class QosSharingTest {
    private static final long S = Simulation.SECOND;

    private static QosService service(ManualNanoClock clock, long assumedCapacity, int depth) {
        return new QosService(QosConfig.defaults().withDevice(assumedCapacity, depth), clock);
    }

    @ParameterizedTest(name = "min {0} of 20000 IOPS, {1} unlimited neighbours, assumed capacity {2}")
    @CsvSource({"14000,1,20000", "8000,3,20000", "14000,1,100000", "8000,3,5000", "19000,2,20000"})
    void shouldGiveAFeasibleMinimumAtLeast98PercentAgainstSaturatingNeighbours(long min, int neighbours, long assumed) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, assumed, 16);
        qos.updatePolicy(QosPolicy.dedicated("gold", min, 0));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 4 * S);
        Simulation.Client gold = sim.client(qos.createFlow("vm-gold", "d0", "gold"), 32, 8192);
        Simulation.Client[] others = new Simulation.Client[neighbours];
        for (int i = 0; i < neighbours; i++) {
            others[i] = sim.client(qos.createFlow("vm-noisy" + i, "d" + (i + 1), null), 48, 8192);
        }
        sim.run();
        for (int s = 2; s < 4; s++) {
            assertTrue(gold.units(s) >= min * 0.98, "window " + s + ": gold got " + gold.units(s) + " of min " + min);
        }
        long total = gold.units(3);
        for (Simulation.Client o : others) {
            total += o.units(3);
            assertTrue(o.units(3) > 0, "a neighbour must not starve");
        }
        assertTrue(total >= 20_000 * 0.97, "device must stay saturated, total=" + total);
        assertTrue(qos.flows().stream().allMatch(f -> f.status() == QosFlowStatus.Ok), qos.flows().toString());
    }

    @ParameterizedTest(name = "weights {0}:{1}")
    @CsvSource({"100,300", "100,100", "50,450"})
    void shouldSplitSpareCapacityByWeight(int wa, int wb) {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, 20_000, 16);
        qos.updatePolicy(QosPolicy.dedicated("a", 0, 0).withWeight(wa));
        qos.updatePolicy(QosPolicy.dedicated("b", 0, 0).withWeight(wb));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 4 * S);
        Simulation.Client a = sim.client(qos.createFlow("vm-a", "d", "a"), 32, 8192);
        Simulation.Client b = sim.client(qos.createFlow("vm-b", "d", "b"), 32, 8192);
        sim.run();
        double ga = a.meanUnits(2, 4);
        double gb = b.meanUnits(2, 4);
        double want = (double) wa / (wa + wb);
        assertEquals(want, ga / (ga + gb), 0.03, "a=" + ga + " b=" + gb);
        assertTrue(ga + gb >= 20_000 * 0.97, "work-conserving: total " + (ga + gb));
    }

    @Test
    void shouldGiveAReservedFlowMaxOfMinimumAndWeightedShare() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, 20_000, 16);
        // a's min (4000) is below its equal share (10000): it gets its share, not min + share.
        qos.updatePolicy(QosPolicy.dedicated("a", 4000, 0));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 5 * S);
        Simulation.Client a = sim.client(qos.createFlow("vm-a", "d", "a"), 32, 8192);
        Simulation.Client b = sim.client(qos.createFlow("vm-b", "d", null), 32, 8192);
        sim.run();
        assertEquals(0.5, a.meanUnits(2, 5) / (a.meanUnits(2, 5) + b.meanUnits(2, 5)), 0.03);
    }

    @Test
    void shouldGiveLimitedFlowsSpareToOthersWhenWorkConserving() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, 20_000, 16);
        qos.updatePolicy(QosPolicy.dedicated("capped", 0, 3000));
        qos.updatePolicy(QosPolicy.dedicated("reserved-but-idle", 10_000, 0));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 5 * S);
        Simulation.Client capped = sim.client(qos.createFlow("vm-a", "d", "capped"), 32, 8192);
        qos.createFlow("vm-idle", "d", "reserved-but-idle"); // never issues I/O
        Simulation.Client free = sim.client(qos.createFlow("vm-b", "d", null), 32, 8192);
        sim.run();
        for (int s = 2; s < 5; s++) {
            assertTrue(Math.abs(capped.units(s) - 3000) <= 60, "capped got " + capped.units(s));
            assertTrue(free.units(s) >= (20_000 - 3000) * 0.97, "free got " + free.units(s));
        }
    }

    @Test
    void shouldNeverThrottleAnUnlimitedFlowOnAnIdleDevice() {
        ManualNanoClock clock = new ManualNanoClock(0);
        // The configured capacity is far too low: the scheduler must still let the device run at full speed.
        QosService qos = service(clock, 1000, 16);
        qos.updatePolicy(QosPolicy.dedicated("plain", 0, 0));
        Simulation sim = new Simulation(clock, new Simulation.Device(50_000, 16), 3 * S);
        Simulation.Client c = sim.client(qos.createFlow("vm", "d", "plain"), 64, 4096);
        sim.run();
        assertTrue(c.units(1) >= 50_000 * 0.98, "got " + c.units(1));
        assertTrue(c.units(2) >= 50_000 * 0.98, "got " + c.units(2));
    }

    @Test
    void shouldNotStarveALowWeightFlow() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, 20_000, 16);
        qos.updatePolicy(QosPolicy.dedicated("tiny", 0, 0).withWeight(1));
        qos.updatePolicy(QosPolicy.dedicated("huge", 0, 0).withWeight(10_000));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 4 * S);
        Simulation.Client tiny = sim.client(qos.createFlow("vm-t", "d", "tiny"), 1, 8192);
        Simulation.Client huge = sim.client(qos.createFlow("vm-h", "d", "huge"), 48, 8192);
        sim.run();
        for (int s = 1; s < 4; s++) {
            assertTrue(tiny.units(s) >= 1, "tiny starved in window " + s);
            assertTrue(huge.units(s) >= 19_000, "huge got " + huge.units(s));
        }
    }

    @Test
    void shouldReportInsufficientThroughputAndAlertWhenMinimumsExceedCapacity() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = service(clock, 20_000, 16);
        qos.updatePolicy(QosPolicy.dedicated("big", 15_000, 0));
        java.util.List<QosAlert> seen = new java.util.ArrayList<>();
        qos.onAlert(seen::add);
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 3 * S);
        sim.client(qos.createFlow("vm-a", "d0", "big"), 32, 8192);
        sim.client(qos.createFlow("vm-b", "d1", "big"), 32, 8192);
        sim.run();
        assertTrue(qos.flows().stream().allMatch(f -> f.status() == QosFlowStatus.InsufficientThroughput), qos.flows().toString());
        assertTrue(seen.stream().anyMatch(a -> a.status() == QosFlowStatus.InsufficientThroughput), seen.toString());
        assertEquals(seen.size(), qos.alerts().size());
        assertTrue(!qos.devices().getFirst().feasible());
    }
}
