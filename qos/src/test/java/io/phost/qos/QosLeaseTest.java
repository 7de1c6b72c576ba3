package io.phost.qos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** A maximum-only flow far below its maximum spends limit leases instead of a CAS on the tag per I/O. */
class QosLeaseTest {

    @Test
    void shouldChargeTheLimitTagOncePerLeaseWhenFarBelowTheMaximum() {
        ManualNanoClock clock = new ManualNanoClock(1_000_000_000L);
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 64), clock);
        qos.updatePolicy(QosPolicy.dedicated("roomy", 0, 100_000_000));
        ManagedQosFlow flow = qos.createFlow("vm", "d", "roomy");
        PolicyBucket bucket = flow.binding.bucket();
        long now = 1_000_000_000L;
        assertEquals(0, flow.tryAdmit(4096, now));
        flow.completed(4096, 1_000, now);
        long tag = bucket.limitTat();
        int untouched = 0;
        for (int i = 0; i < 40; i++) {
            now += 1_000;
            assertEquals(0, flow.tryAdmit(4096, now));
            flow.completed(4096, 1_000, now);
            if (bucket.limitTat() == tag) {
                untouched++;
            }
            tag = bucket.limitTat();
        }
        assertTrue(untouched >= 35, "the tag moved on " + (40 - untouched) + " of 40 admissions");
        assertEquals(41, flow.totalAdmitted());
    }

    @Test
    void shouldStillHoldTheMaximumWhenItBindsAndLeasesComeAndGo() throws Exception {
        final int threads = 4;
        final int calls = 100_000;
        final long step = 200; // 5M attempts/s against a 1M IOPS maximum: binds most of the time
        final long maxIops = 1_000_000;
        AtomicLong time = new AtomicLong(0);
        QosService qos = new QosService(QosConfig.defaults().withDevice(100_000_000, 1024), new ManualNanoClock(0));
        qos.updatePolicy(QosPolicy.dedicated("max", 0, maxIops));
        ManagedQosFlow flow = qos.createFlow("vm", "d", "max");
        CyclicBarrier start = new CyclicBarrier(threads);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                try {
                    start.await();
                    for (int i = 0; i < calls; i++) {
                        long now = time.addAndGet(step);
                        if (flow.tryAdmit(4096, now) == 0) {
                            flow.completed(4096, 100, now);
                        }
                    }
                } catch (Throwable e) {
                    failure.set(e);
                }
            });
            th.start();
            ts.add(th);
        }
        for (Thread th : ts) {
            th.join();
        }
        assertNull(failure.get());
        long elapsed = time.get();
        PolicyBucket.Rates r = flow.binding.bucket().rates;
        long bound = elapsed / r.limitNanosPerUnit() + r.backlogSlackNanos() / r.limitNanosPerUnit() + 1;
        long admitted = flow.totalAdmitted();
        assertTrue(admitted <= bound, "admitted " + admitted + " > GCRA bound " + bound);
        long rate = elapsed / r.limitNanosPerUnit();
        assertTrue(admitted >= rate * 9 / 10, "admitted " + admitted + " far under the maximum's " + rate);
        assertEquals(admitted, flow.totalCompleted());
    }
}
