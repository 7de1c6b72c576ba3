package io.phost.appliance.run;

import java.util.concurrent.CountDownLatch;
import sun.misc.Signal;

/**
 * SIGTERM, SIGINT and SIGHUP as a latch, so {@code phost run} stops its components in order and exits 0. A JVM
 * shutdown hook would also run on SIGTERM, but the process would then exit 143; an appliance's service
 * manager should see a clean stop as a clean exit. A second signal while stopping exits at once (130).
 */
public final class Signals {
    private Signals() {}

    /**
     * Returns a latch released by the first SIGTERM/SIGINT/SIGHUP. SIGHUP (the terminal went away, or a
     * service manager's reload) stops as cleanly as SIGTERM: left to the JVM it would skip the stop and leak
     * the partitions' namespaces and the demo's temporary directory.
     */
    public static CountDownLatch stopOnTermination() {
        CountDownLatch stop = new CountDownLatch(1);
        for (String name : new String[] {"TERM", "INT", "HUP"}) {
            Signal.handle(new Signal(name), s -> {
                if (stop.getCount() == 0) {
                    io.phost.core.sys.ProcessExit.now(130);
                }
                System.getLogger("phost.run").log(System.Logger.Level.INFO, "signal=SIG" + s.getName() + " stopping");
                stop.countDown();
            });
        }
        return stop;
    }
}
