package io.phost.perf.qos;

import io.phost.qos.ManualNanoClock;
import io.phost.qos.QosConfig;
import io.phost.qos.QosFlow;
import io.phost.qos.QosPolicy;
import io.phost.qos.QosService;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Locale;

/**
 * CPU nanoseconds of one scheduler decision ({@code tryAdmit} + {@code completed}) on one thread, by
 * thread CPU time (less sensitive to a loaded machine than wall-clock JMH): QoS disabled
 * ({@link QosFlow#UNLIMITED}), enabled with no policy, and enabled under a maximum far above the load.
 * Time is synthetic (1 µs per I/O), so the number is the scheduler alone. The three run interleaved, best
 * of 5 rounds each, each in its own loop method (one flow class per call site, compiled whole rather than
 * on-stack-replaced): the disabled row is then the harness alone (~0 ns: the no-op flow inlines away), so
 * the other rows are the scheduler's own cost with nothing to subtract.
 * <pre>
 *   java -cp &lt;perf classpath&gt; io.phost.perf.qos.QosCostProbe [runs]
 * </pre>
 */
public final class QosCostProbe {
    private static long sink;

    private QosCostProbe() {}

    /** {disabled, no policy, roomy maximum}: CPU ns per I/O. */
    static double[] measure(int ios) {
        QosService qos = new QosService(QosConfig.defaults().withDevice(10_000_000, 64), new ManualNanoClock(1_000_000_000L));
        qos.updatePolicy(QosPolicy.dedicated("roomy", 0, 100_000_000));
        QosFlow[] flows = {QosFlow.UNLIMITED, qos.createFlow("vm0", "d0", null), qos.createFlow("vm1", "d1", "roomy")};
        now = 1_000_000_000L; // the service's clock starts there
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        double[] best = {Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE};
        for (int round = 0; round < 5; round++) {
            for (int f = 0; f < flows.length; f++) {
                long t0 = mx.getCurrentThreadCpuTime();
                // one loop method per flow, called per chunk: each is compiled whole (no OSR of a shared
                // loop, whose placement moved the harness's own cost between 0.8 and 4.5 ns) and sees one
                // flow class, so the disabled row is the harness alone and the difference is the scheduler
                switch (f) {
                    case 0 -> runDisabled(flows[f], ios);
                    case 1 -> runNoPolicy(flows[f], ios);
                    default -> runRoomy(flows[f], ios);
                }
                best[f] = Math.min(best[f], (mx.getCurrentThreadCpuTime() - t0) / (double) ios);
            }
        }
        return best;
    }

    private static final int CHUNK = 10_000;
    private static long now = 1_000_000_000L;

    private static void runDisabled(QosFlow flow, int ios) {
        for (int done = 0; done < ios; done += CHUNK) {
            chunkDisabled(flow);
        }
    }

    private static void runNoPolicy(QosFlow flow, int ios) {
        for (int done = 0; done < ios; done += CHUNK) {
            chunkNoPolicy(flow);
        }
    }

    private static void runRoomy(QosFlow flow, int ios) {
        for (int done = 0; done < ios; done += CHUNK) {
            chunkRoomy(flow);
        }
    }

    // three identical bodies on purpose: one call-site profile each
    private static void chunkDisabled(QosFlow flow) {
        long t = now;
        long s = 0;
        for (int i = 0; i < CHUNK; i++) {
            t += 1_000;
            s += flow.tryAdmit(4096, t);
            flow.completed(4096, 1_000, t);
        }
        now = t;
        sink += s;
    }

    private static void chunkNoPolicy(QosFlow flow) {
        long t = now;
        long s = 0;
        for (int i = 0; i < CHUNK; i++) {
            t += 1_000;
            s += flow.tryAdmit(4096, t);
            flow.completed(4096, 1_000, t);
        }
        now = t;
        sink += s;
    }

    private static void chunkRoomy(QosFlow flow) {
        long t = now;
        long s = 0;
        for (int i = 0; i < CHUNK; i++) {
            t += 1_000;
            s += flow.tryAdmit(4096, t);
            flow.completed(4096, 1_000, t);
        }
        now = t;
        sink += s;
    }

    public static void main(String[] args) {
        int runs = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        for (int run = 0; run < runs; run++) {
            double[] c = measure(2_000_000);
            System.out.printf(Locale.ROOT, "run %d  disabled %6.1f ns  enabled-no-policy %6.1f ns  enabled-roomy-max %6.1f ns%n",
                run, c[0], c[1], c[2]);
        }
        System.out.println(sink == 42 ? "" : "");
    }
}
