package io.phost.perf.vmbus;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import io.phost.core.vmbus.Doorbell;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.RingMapping;
import io.phost.core.vmbus.VmbusRing;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.agrona.concurrent.Agent;
import org.agrona.concurrent.AgentRunner;
import org.agrona.concurrent.IdleStrategy;

/**
 * CPU cost of idle channels under each {@link PollingMode}: {@code n} agents, each reading its own empty
 * VMBus ring and idling with the mode's strategy (exactly what a VSP channel agent does between packets),
 * measured as the agents' thread CPU time over a window, in % of one core. A second phase sends one
 * packet per channel every {@code trickleMillis} (a lightly used device: heartbeats, a shell) so the
 * spin-after-each-packet cost shows.
 * <pre>
 *   java -cp &lt;perf classpath&gt; io.phost.perf.vmbus.IdleChannelsProbe [channels] [seconds] [trickleMillis]
 * </pre>
 */
public final class IdleChannelsProbe {
    private IdleChannelsProbe() {}

    /** {idle % of a core, trickle % of a core} for {@code channels} agents in {@code mode}. */
    static double[] measure(PollingMode mode, int channels, double seconds, int trickleMillis) throws Exception {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        List<AgentRunner> runners = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        List<VmbusRing> writers = new ArrayList<>();
        List<RingMapping> maps = new ArrayList<>();
        List<EventFd> bells = new ArrayList<>();
        List<Integer> fds = new ArrayList<>();
        long[] pfns = new long[5];
        for (int i = 0; i < pfns.length; i++) {
            pfns[i] = i;
        }
        java.lang.foreign.MemorySegment payload = java.lang.foreign.Arena.ofAuto().allocate(64, 8);
        try {
            for (int c = 0; c < channels; c++) {
                int fd = SharedMemory.createSealed("idle-ring", pfns.length * 4096L);
                fds.add(fd);
                RingMapping m = RingMapping.map(fd, pfns, 0, pfns.length, true);
                maps.add(m);
                VmbusRing.initialise(m.control());
                EventFd bell = EventFd.create();
                bells.add(bell);
                VmbusRing rx = m.ring(Doorbell.NONE);
                EventFd view = bell.view();
                writers.add(m.ring(view::signal));
                PacketHandler h = (b, o, l, t, f, id) -> true;
                IdleStrategy idle = mode.idleStrategy(rx, bell.view());
                Agent agent = new Agent() {
                    public int doWork() {
                        return rx.tryRead(h, 64);
                    }

                    public String roleName() {
                        return "idle-probe";
                    }
                };
                AgentRunner r = new AgentRunner(idle, t -> { }, null, agent);
                runners.add(r);
                threads.add(AgentRunner.startOnThread(r));
            }
            Thread.sleep(300); // every agent has spun down and sleeps
            long idleCpu = cpu(mx, threads);
            long t0 = System.nanoTime();
            Thread.sleep((long) (seconds * 1000));
            double idlePct = 100.0 * (cpu(mx, threads) - idleCpu) / (System.nanoTime() - t0);
            long trickleCpu = cpu(mx, threads);
            long t1 = System.nanoTime();
            long end = t1 + (long) (seconds * 1e9);
            while (System.nanoTime() < end) {
                for (VmbusRing w : writers) {
                    w.tryWrite(6, 0, 0, payload, 0, 64);
                }
                Thread.sleep(trickleMillis);
            }
            double tricklePct = 100.0 * (cpu(mx, threads) - trickleCpu) / (System.nanoTime() - t1);
            return new double[] {idlePct, tricklePct};
        } finally {
            for (EventFd b : bells) {
                b.signal(); // wake sleeping agents so they see the close at once
            }
            for (AgentRunner r : runners) {
                r.close();
            }
            for (RingMapping m : maps) {
                m.close();
            }
            for (EventFd b : bells) {
                b.close();
            }
            for (int fd : fds) {
                Fd.close(fd);
            }
        }
    }

    private static long cpu(ThreadMXBean mx, List<Thread> threads) {
        long sum = 0;
        for (Thread t : threads) {
            sum += Math.max(0, mx.getThreadCpuTime(t.threadId()));
        }
        return sum;
    }

    public static void main(String[] args) throws Exception {
        int channels = args.length > 0 ? Integer.parseInt(args[0]) : 12;
        double seconds = args.length > 1 ? Double.parseDouble(args[1]) : 5;
        int trickle = args.length > 2 ? Integer.parseInt(args[2]) : 10;
        for (int run = 0; run < 3; run++) {
            // every mode once per run, the order reversed every other run (A B C, C B A, ...)
            PollingMode[] modes = {PollingMode.LATENCY, PollingMode.ADAPTIVE, PollingMode.EFFICIENCY};
            if (run % 2 == 1) {
                java.util.Collections.reverse(java.util.Arrays.asList(modes));
            }
            for (PollingMode mode : modes) {
                double[] r = measure(mode, channels, seconds, trickle);
                System.out.printf(Locale.ROOT, "run %d %-10s %d channels: idle %.3f%% of a core, one packet per channel every %d ms %.3f%%%n",
                    run, mode.name().toLowerCase(Locale.ROOT), channels, r[0], trickle, r[1]);
            }
        }
    }
}
