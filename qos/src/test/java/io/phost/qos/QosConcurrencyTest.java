package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * Several threads hammer tryAdmit/completed on shared flows. Time is a shared counter each call advances,
 * so the limit bound is exact and independent of how the threads are scheduled.
 */
class QosConcurrencyTest {

    @Test
    void shouldLoseNoAccountingAndNeverExceedTheLimitUnderContention() throws Exception {
        final int threads = 6;
        final int callsPerThread = 200_000;
        final long step = 1_000; // each call moves time by 1 us
        AtomicLong time = new AtomicLong(0);
        ManualNanoClock clock = new ManualNanoClock(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 4), clock);
        qos.updatePolicy(QosPolicy.dedicated("capped", 0, 100_000).withMaxBandwidth(2_000_000_000L));
        qos.updatePolicy(QosPolicy.aggregated("pool", 50_000, 0));
        ManagedQosFlow capped = qos.createFlow("vm1", "a", "capped");
        ManagedQosFlow free = qos.createFlow("vm2", "b", null);
        ManagedQosFlow pool1 = qos.createFlow("vm3", "c", "pool");
        ManagedQosFlow pool2 = qos.createFlow("vm4", "d", "pool");
        ManagedQosFlow[] flows = {capped, free, pool1, pool2};
        long[][] admittedBy = new long[threads][flows.length];
        long[][] unitsBy = new long[threads][flows.length];
        CyclicBarrier start = new CyclicBarrier(threads);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int me = t;
            Thread th = new Thread(() -> {
                try {
                    start.await();
                    int[] sizes = {4096, 8192, 16384, 65536};
                    for (int i = 0; i < callsPerThread; i++) {
                        int fi = (i + me) % flows.length;
                        int bytes = sizes[(i * 7 + me) & 3];
                        long now = time.addAndGet(step);
                        if (flows[fi].tryAdmit(bytes, now) == 0) {
                            admittedBy[me][fi]++;
                            unitsBy[me][fi] += QosPolicy.normalizedCost(bytes, 8192);
                            flows[fi].completed(bytes, 1000, time.get());
                        }
                    }
                } catch (Throwable e) {
                    failure.set(e);
                }
            }, "qos-hammer-" + t);
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) {
            th.join();
        }
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        long end = time.get();
        for (int fi = 0; fi < flows.length; fi++) {
            long admitted = 0;
            long units = 0;
            for (int t = 0; t < threads; t++) {
                admitted += admittedBy[t][fi];
                units += unitsBy[t][fi];
            }
            assertEquals(admitted, flows[fi].totalAdmitted(), "admissions counted for flow " + fi);
            assertEquals(admitted, flows[fi].totalCompleted(), "completions counted for flow " + fi);
            assertEquals(units, flows[fi].totalCompletedUnits(), "units counted for flow " + fi);
        }
        // The limit tag is charged by CAS: total units never exceed elapsed time at the limit plus one
        // burst of slack (2 ms) and one I/O (8 units) per racing thread.
        long cappedUnits = capped.totalCompletedUnits();
        long bound = (end / 10_000) + 200 + 8L * threads;
        assertTrue(cappedUnits <= bound, "capped flow admitted " + cappedUnits + " units, bound " + bound);
        assertTrue(cappedUnits >= (end / 10_000) * 0.9, "capped flow starved: " + cappedUnits + " of " + end / 10_000);
        assertEquals(0, qos.devices().getFirst().outstanding(), "device outstanding must return to 0");
        clock.set(end);
        qos.tick();
        for (QosFlowSnapshot s : qos.flows()) {
            assertEquals(0, s.outstanding(), s.toString());
        }
    }

    @Test
    void shouldLetManagementCallsRunWhileQueuesHammer() throws Exception {
        QosService qos = new QosService();
        qos.updatePolicy(QosPolicy.dedicated("p", 0, 1_000_000));
        ManagedQosFlow f = qos.createFlow("vm", "d", "p");
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread io = new Thread(() -> {
            try {
                for (int i = 0; i < 300_000; i++) {
                    long now = System.nanoTime();
                    if (f.tryAdmit(4096, now) == 0) {
                        f.completed(4096, 500, now);
                    }
                }
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        io.start();
        for (int i = 0; i < 200 && io.isAlive(); i++) {
            qos.updatePolicy(QosPolicy.dedicated("p", 0, 1_000_000 - i));
            assertEquals(1, qos.flows().size());
            qos.devices(); // snapshots taken while I/O and policy changes run
        }
        io.join();
        if (failure.get() != null) {
            throw new AssertionError(failure.get());
        }
        assertEquals(f.totalAdmitted(), f.totalCompleted());
    }
}
