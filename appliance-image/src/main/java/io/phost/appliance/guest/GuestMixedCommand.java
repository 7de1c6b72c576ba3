package io.phost.appliance.guest;

import io.phost.core.ic.GuestSession;
import io.phost.core.sys.ProcessExit;
import io.phost.network.GuestNet;
import io.phost.network.TapBridge;
import io.phost.storage.vmbus.GuestIo;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code phost guest mixed}: storage I/O on the partition's disk and a bridged synthetic NIC at once, on one
 * VMBus attach, until the host stops the partition. The embedded demo runs it in both partitions so they do
 * real disk I/O and exchange real traffic through the switch.
 */
@Command(name = "mixed", mixinStandardHelpOptions = true,
    description = "Storage I/O (as `guest io`) and a bridged NIC (as `guest net`) together until shut down.")
public final class GuestMixedCommand implements java.util.concurrent.Callable<Integer> {
    @Option(names = "--io", paramLabel = "OPTIONS", description = "`guest io` options in one string; omit for no I/O.")
    String io;

    @Option(names = "--netns", description = "Network namespace for the TAP (created if missing, removed on exit).")
    String netns;

    @Option(names = "--tap", description = "TAP device name (default: pt-PARTITION, unique per partition on the host).")
    String tap;

    @Option(names = "--address", description = "Address/prefix for the TAP, e.g. 10.0.0.2/24.")
    String address;

    @Option(names = "--ping", paramLabel = "ADDRESS", description = "Ping this peer from inside the namespace.")
    String ping;

    private volatile boolean stopping;

    /** Checks the --io string as {@code guest io} would; throws IllegalArgumentException naming the problem. */
    public void validate() {
        if (io != null) {
            GuestIoCommand parsed = new GuestIoCommand();
            try {
                new CommandLine(parsed).parseArgs(io.trim().split("\\s+"));
            } catch (CommandLine.ParameterException e) {
                throw new IllegalArgumentException("--io: " + e.getMessage());
            }
            parsed.validate();
        }
    }

    @Override
    public Integer call() throws Exception {
        GuestIo.Options ioOptions = null;
        if (io != null) {
            GuestIoCommand parsed = new GuestIoCommand();
            new CommandLine(parsed).parseArgs(io.trim().split("\\s+"));
            ioOptions = parsed.options();
        }
        // The TAP is created in the host's namespace before it moves, so its name must be unique there.
        String tapName = tap != null ? tap : ("pt-" + System.getenv().getOrDefault("PHOST_PARTITION", "guest"));
        String tapDev = tapName.length() > 15 ? tapName.substring(0, 15) : tapName;
        ProcessExit.prepare(); // linked now, not during the stop
        try (GuestSession s = GuestSession.fromEnvironment()) {
            if (ioOptions != null) {
                GuestIo.Options o = ioOptions;
                Thread.ofPlatform().daemon().name("guest-io").start(() -> {
                    try {
                        System.err.println("guest mixed: io done: " + GuestIo.run(s.bus(), o).text());
                    } catch (Exception e) {
                        if (!stopping) { // a channel closed by the host's stop is not a failure
                            System.err.println("guest mixed: io failed: " + e);
                        }
                    }
                });
            }
            TapBridge[] bridge = new TapBridge[1];
            Thread net = Thread.ofPlatform().name("guest-net").start(() -> {
                try {
                    GuestNet.run(s.bus(), s.integration(), new GuestNet.Options(netns, tapDev, address, 0, ping), bridge);
                } catch (Exception e) {
                    System.err.println("guest mixed: net failed: " + e);
                }
            });
            boolean announced = false;
            while (!s.awaitShutdown(java.time.Duration.ofMillis(100))) {
                if (!announced && bridge[0] != null) {
                    System.err.println("guest mixed: network up"); // the TAP is configured and bridged
                    announced = true;
                }
            }
            String reason = s.shutdownReason();
            long t0 = System.nanoTime();
            System.err.println("guest mixed: stopping at=" + java.time.Instant.now() + ": " + reason);
            stopping = true;
            if (bridge[0] != null) {
                bridge[0].close();
            }
            net.join(NET_CLEANUP_MILLIS); // let the bridge remove its TAP and namespace
            System.err.println("guest mixed: stopped at=" + java.time.Instant.now() + " ms=" + (System.nanoTime() - t0) / 1_000_000
                + (net.isAlive() ? " (network cleanup still running)" : ""));
            System.err.flush();
            // The host asked for the stop and owns the disks: it closes the channels and flushes. What is left here
            // (channels, GPADLs, the guest memory, the control socket) the kernel frees at exit, so exit now
            // rather than spend the host's stop grace on an orderly goodbye (joins of up to 0.5-2 s per thread,
            // and the JVM's own exit waits 0.3 s or more for our threads in poll(2): see ProcessExit).
            ProcessExit.now(0);
        }
        return 0;
    }

    /** How long the stop waits for the TAP and namespace removal: within the host's 2.5 s grace. */
    static final long NET_CLEANUP_MILLIS = 1500;

}
