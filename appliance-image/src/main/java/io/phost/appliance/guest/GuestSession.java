package io.phost.appliance.guest;

import io.phost.core.ic.GuestIntegration;
import io.phost.core.vmbus.VmbusClient;
import java.lang.System.Logger.Level;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * What every built-in guest workload does first: attach to the parent over VMBus with the credential the
 * parent put in its environment, and serve the integration services (heartbeat, shutdown, time sync,
 * KVP) so the parent can watch it and stop it gracefully.
 */
public final class GuestSession implements AutoCloseable {
    private final VmbusClient bus;
    private final GuestIntegration integration;
    private final CountDownLatch shutdown = new CountDownLatch(1);
    private volatile String shutdownReason;

    private GuestSession() {
        bus = VmbusClient.attachFromEnvironment();
        integration = new GuestIntegration(bus, reason -> {
            shutdownReason = reason;
            shutdown.countDown();
        });
    }

    /** Attaches using PHOST_CONTROL_SOCKET / PHOST_PARTITION / PHOST_CREDENTIAL. */
    public static GuestSession attach() {
        return new GuestSession();
    }

    public VmbusClient bus() {
        return bus;
    }

    public GuestIntegration integration() {
        return integration;
    }

    /** True once the parent asked this guest to shut down. */
    public boolean shutdownRequested() {
        return shutdown.getCount() == 0;
    }

    /** Waits up to {@code millis} for a shutdown request; returns true if one came. */
    public boolean awaitShutdown(long millis) throws InterruptedException {
        return shutdown.await(millis, TimeUnit.MILLISECONDS);
    }

    public String shutdownReason() {
        return shutdownReason;
    }

    @Override
    public void close() {
        integration.close();
        bus.close();
        System.getLogger("phost.guest").log(Level.DEBUG, "guest session closed");
    }
}
