package io.phost.appliance.guest;

import io.phost.core.ic.GuestSession;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code phost guest idle}: attach, serve the integration services, and wait for the parent's shutdown. */
@Command(name = "idle", description = "Attach to the parent and only serve the integration services until shut down.")
public final class GuestIdleCommand implements Callable<Integer> {
    @Override
    public Integer call() throws Exception {
        try (GuestSession s = GuestSession.fromEnvironment()) {
            // heartbeats, time sync and KVP are answered on the integration thread meanwhile
            System.err.println("guest idle: stopping: " + s.awaitShutdown());
        }
        return 0;
    }
}
