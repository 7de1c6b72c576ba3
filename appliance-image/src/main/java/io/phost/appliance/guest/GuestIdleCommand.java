package io.phost.appliance.guest;

import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code phost guest idle}: attach, serve the integration services, and wait for the parent's shutdown. */
@Command(name = "idle", description = "Attach to the parent and only serve the integration services until shut down.")
public final class GuestIdleCommand implements Callable<Integer> {
    @Override
    public Integer call() throws Exception {
        try (GuestSession s = GuestSession.attach()) {
            while (!s.awaitShutdown(1000)) {
                // heartbeats, time sync and KVP are answered on the integration thread
            }
            System.err.println("guest: shutdown requested by the host: " + s.shutdownReason());
        }
        return 0;
    }
}
