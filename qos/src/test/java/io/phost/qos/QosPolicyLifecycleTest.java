package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Dedicated and aggregated policies, live changes, unknown policies, bursts, idle flows, many flows. */
class QosPolicyLifecycleTest {
    private static final long S = Simulation.SECOND;

    private static QosService bigDevice(ManualNanoClock clock) {
        return new QosService(QosConfig.defaults().withDevice(2_000_000, 8), clock);
    }

    private static Simulation sim(ManualNanoClock clock, long seconds) {
        return new Simulation(clock, new Simulation.Device(2_000_000, 8), seconds * S);
    }

    private static void assertWithin(long want, long got, double pct, String what) {
        assertTrue(Math.abs(got - want) <= want * pct, what + ": got " + got + " want " + want + " ±" + pct * 100 + "%");
    }

    @Test
    void shouldShareAnAggregatedLimitAcrossDisksAndGiveEachDedicatedDiskItsOwn() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.aggregated("shared", 0, 2000));
        qos.updatePolicy(QosPolicy.dedicated("own", 0, 2000));
        Simulation sim = sim(clock, 3);
        Simulation.Client a1 = sim.client(qos.createFlow("vm1", "a", "shared"), 8, 8192);
        Simulation.Client a2 = sim.client(qos.createFlow("vm2", "b", "shared"), 8, 8192);
        Simulation.Client d1 = sim.client(qos.createFlow("vm3", "c", "own"), 8, 8192);
        Simulation.Client d2 = sim.client(qos.createFlow("vm4", "d", "own"), 8, 8192);
        sim.run();
        for (int s = 1; s < 3; s++) {
            assertWithin(2000, a1.units(s) + a2.units(s), 0.02, "aggregated sum, window " + s);
            assertTrue(a1.units(s) > 800 && a2.units(s) > 800, "equal disks split an aggregated max fairly: " + a1.units(s) + "/" + a2.units(s));
            assertWithin(2000, d1.units(s), 0.02, "dedicated c");
            assertWithin(2000, d2.units(s), 0.02, "dedicated d");
        }
    }

    @Test
    void shouldMoveAFlowToAnotherPolicyLive() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("slow", 0, 500));
        qos.updatePolicy(QosPolicy.dedicated("fast", 0, 3000));
        Simulation sim = sim(clock, 4);
        Simulation.Client c = sim.client(qos.createFlow("vm1", "a", "slow"), 8, 8192);
        sim.at(2 * S, () -> assertEquals(1, qos.changeFlowPolicy("vm1", "a", "fast")));
        sim.run();
        assertWithin(500, c.units(1), 0.02, "under slow");
        assertWithin(3000, c.units(3), 0.02, "under fast, after the move");
        assertEquals("fast", qos.flows().getFirst().policy());
        assertEquals(1, qos.changeFlowPolicy("vm1", "a", "nope"));
        assertEquals(QosFlowStatus.UnknownPolicyId, qos.flows().getFirst().status());
        assertEquals(0, qos.changeFlowPolicy("vm2", "a", "fast"), "no such flow");
    }

    @Test
    void shouldMeetAnAggregatedMinimumForThePolicyAsAWhole() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(20_000, 16), clock);
        qos.updatePolicy(QosPolicy.aggregated("pool", 12_000, 0));
        Simulation sim = new Simulation(clock, new Simulation.Device(20_000, 16), 4 * S);
        Simulation.Client p1 = sim.client(qos.createFlow("vm1", "a", "pool"), 16, 8192);
        Simulation.Client p2 = sim.client(qos.createFlow("vm2", "b", "pool"), 16, 8192);
        Simulation.Client noisy = sim.client(qos.createFlow("vm3", "c", null), 48, 8192);
        sim.run();
        for (int s = 2; s < 4; s++) {
            assertTrue(p1.units(s) + p2.units(s) >= 12_000 * 0.98, "pool got " + (p1.units(s) + p2.units(s)));
            assertTrue(noisy.units(s) > 0);
        }
    }

    @Test
    void shouldApplyAPolicyChangeToLiveFlowsWithinOneSecond() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 1000));
        Simulation sim = sim(clock, 5);
        Simulation.Client c = sim.client(qos.createFlow("vm", "d", "p"), 16, 8192);
        sim.at(2 * S, () -> qos.updatePolicy(QosPolicy.dedicated("p", 0, 5000)));
        sim.at(4 * S, () -> qos.updatePolicy(QosPolicy.dedicated("p", 0, 300)));
        sim.run();
        assertWithin(1000, c.units(1), 0.02, "before");
        assertWithin(5000, c.units(2), 0.02, "first second after raising");
        assertWithin(5000, c.units(3), 0.02, "after raising");
        assertWithin(300, c.units(4), 0.02, "first second after lowering");
    }

    @Test
    void shouldAdmitUnlimitedAndReportUnknownPolicyIdUntilThePolicyExists() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(50_000, 8), clock);
        ManagedQosFlow f = qos.createFlow("vm", "d", "missing");
        assertEquals(QosFlowStatus.UnknownPolicyId, qos.flows().getFirst().status());
        assertEquals(QosFlowStatus.UnknownPolicyId, qos.alerts().getFirst().status());
        Simulation sim = new Simulation(clock, new Simulation.Device(50_000, 8), 4 * S);
        Simulation.Client c = sim.client(f, 16, 8192);
        sim.at(2 * S, () -> qos.updatePolicy(QosPolicy.dedicated("missing", 0, 700)));
        sim.run();
        assertTrue(c.units(1) >= 50_000 * 0.98, "unknown policy must be unlimited, got " + c.units(1));
        assertWithin(700, c.units(3), 0.02, "after the policy appears");
        assertEquals(QosFlowStatus.Ok, qos.flows().getFirst().status());
    }

    @Test
    void shouldFallBackToUnlimitedWhenAPolicyIsRemoved() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(50_000, 8), clock);
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 1000));
        Simulation sim = new Simulation(clock, new Simulation.Device(50_000, 8), 4 * S);
        Simulation.Client c = sim.client(qos.createFlow("vm", "d", "p"), 16, 8192);
        sim.at(2 * S, () -> assertTrue(qos.removePolicy("p")));
        sim.run();
        assertWithin(1000, c.units(1), 0.02, "with the policy");
        assertTrue(c.units(3) >= 50_000 * 0.98, "after removal, got " + c.units(3));
        assertEquals(QosFlowStatus.UnknownPolicyId, qos.flows().getFirst().status());
    }

    @Test
    void shouldBoundTheBurstOfAFlowThatWasIdle() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 10_000));
        Simulation sim = sim(clock, 5);
        // Idle for 2 s, then a burst of 64 outstanding I/Os.
        Simulation.Client c = sim.client(qos.createFlow("vm", "d", "p"), 64, 8192).activeBetween(2 * S, 5 * S);
        sim.run();
        assertEquals(0, c.units(1));
        // Bursts bank at most the limit slack (2 ms = 20 I/Os at 10k IOPS) plus one.
        assertTrue(c.units(2) <= 10_000 + 21, "burst window " + c.units(2));
        assertWithin(10_000, c.units(3), 0.02, "steady");
        assertWithin(10_000, c.units(4), 0.02, "steady");
    }

    @Test
    void shouldPaceAnOnAndOffFlowAndLeaveOthersAlone() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 2000));
        Simulation sim = sim(clock, 4);
        Simulation.Client on = sim.client(qos.createFlow("vm", "on", "p"), 4, 8192).activeBetween(0, S);
        Simulation.Client later = sim.client(qos.createFlow("vm", "later", "p"), 4, 8192).activeBetween(2 * S, 4 * S);
        sim.run();
        assertWithin(2000, on.units(0), 0.02, "first flow");
        assertEquals(0, on.units(2));
        assertWithin(2000, later.units(3), 0.02, "second flow after the first went idle");
    }

    @Test
    void shouldHoldLimitsForThousandsOfFlows() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(1_000_000, 64), clock);
        qos.updatePolicy(QosPolicy.dedicated("small", 0, 50));
        Simulation sim = new Simulation(clock, new Simulation.Device(1_000_000, 64), 3 * S);
        List<Simulation.Client> cs = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            cs.add(sim.client(qos.createFlow("vm" + i, "d", "small"), 1, 8192));
        }
        sim.run();
        long total = 0;
        for (Simulation.Client c : cs) {
            assertTrue(Math.abs(c.units(2) - 50) <= 1, "flow got " + c.units(2));
            total += c.units(2);
        }
        assertWithin(100_000, total, 0.01, "all flows");
        assertEquals(2000, qos.flows().size());
    }

    @Test
    void shouldApplyTheStoreNormalizationSizeToLiveFlows() {
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 1000));
        ManagedQosFlow f = qos.createFlow("vm", "d", "p");
        assertEquals(0, f.tryAdmit(65536, 0));
        f.completed(65536, 10, 0);
        assertEquals(8, f.totalCompletedUnits());
        qos.setNormalizationSize(65536);
        assertEquals(65536, qos.normalizationSize());
        assertTrue(f.tryAdmit(65536, 0) > 0, "the 8-unit charge must still be paid");
        assertEquals(0, f.tryAdmit(65536, 8 * 1_000_000L));
        f.completed(65536, 10, 8 * 1_000_000L);
        assertEquals(9, f.totalCompletedUnits());
    }

    @Test
    void shouldRejectBadPoliciesWithAReason() {
        assertEquals(QosPolicyException.Reason.MIN_ABOVE_MAX,
            assertThrows(QosPolicyException.class, () -> QosPolicy.dedicated("p", 10, 5)).reason());
        assertEquals(QosPolicyException.Reason.BLANK_NAME,
            assertThrows(QosPolicyException.class, () -> QosPolicy.dedicated(" ", 0, 5)).reason());
        assertEquals(QosPolicyException.Reason.NEGATIVE_VALUE,
            assertThrows(QosPolicyException.class, () -> QosPolicy.dedicated("p", -1, 5)).reason());
        assertEquals(QosPolicyException.Reason.BAD_WEIGHT,
            assertThrows(QosPolicyException.class, () -> QosPolicy.dedicated("p", 0, 5).withWeight(0)).reason());
        assertEquals(QosPolicyException.Reason.BAD_NORMALIZATION_SIZE,
            assertThrows(QosPolicyException.class, () -> QosPolicy.dedicated("p", 0, 5).withNormalizationSize(1000)).reason());
        assertEquals(QosPolicyException.Reason.BAD_NORMALIZATION_SIZE,
            assertThrows(QosPolicyException.class, () -> new QosService().setNormalizationSize(0)).reason());
    }

    @Test
    void shouldSnapshotEveryFlowWithItsPolicyLimitAndStatus() {
        // The CLI, /v1/status and /v1/metrics render these snapshots (appliance-image's QosComponent).
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = bigDevice(clock);
        qos.updatePolicy(QosPolicy.dedicated("gold", 100, 1000));
        Simulation sim = sim(clock, 2);
        sim.client(qos.createFlow("vm1", "/disks/a \"b\".vhdx", "gold"), 4, 8192);
        sim.client(qos.createFlow("vm2", "d2", null), 1, 4096);
        qos.createFlow("vm3", "d3", "nope");
        sim.run();
        java.util.Map<String, QosFlowSnapshot> flows = new java.util.HashMap<>();
        qos.flows().forEach(f -> flows.put(f.partition(), f));
        assertEquals(3, flows.size());
        assertEquals("gold", flows.get("vm1").policy());
        assertEquals(1000, flows.get("vm1").maximumIops());
        assertTrue(flows.get("vm1").completedIos() > 0 && flows.get("vm1").completedBytes() == flows.get("vm1").completedIos() * 8192,
            flows.get("vm1").toString());
        assertEquals(null, flows.get("vm2").policy());
        assertEquals(0, flows.get("vm2").maximumIops(), "unlimited");
        assertEquals(QosFlowStatus.UnknownPolicyId, flows.get("vm3").status());
        assertEquals(1, qos.alertCount());
    }
}
