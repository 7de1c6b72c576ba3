package io.phost.core.ic;

import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import java.util.concurrent.CountDownLatch;

/**
 * What a built-in workload ({@code phost guest <workload>}) starts with: attach as the partition named in
 * the environment, serve the integration services, and exit cleanly when the host asks for shutdown.
 * <pre>
 *   try (GuestSession s = GuestSession.fromEnvironment()) {
 *       ... open device channels with s.bus() ...
 *       s.awaitShutdown();
 *   }
 * </pre>
 */
public final class GuestSession implements AutoCloseable {
    private final VmbusClient bus;
    private final GuestIntegration integration;
    private final CountDownLatch shutdown = new CountDownLatch(1);
    private volatile String shutdownReason;

    private GuestSession(VmbusClient bus) {
        this.bus = bus;
        this.integration = new GuestIntegration(bus, reason -> {
            shutdownReason = reason;
            shutdown.countDown();
        });
        bus.disconnected().thenRun(shutdown::countDown);
    }

    /** Attaches with PHOST_CONTROL_SOCKET, PHOST_PARTITION, PHOST_CREDENTIAL and PHOST_MEMORY. */
    public static GuestSession fromEnvironment() {
        VmbusClient bus = VmbusClient.attachFromEnvironment();
        GuestSession s = new GuestSession(bus);
        String host = System.getenv().getOrDefault("HOSTNAME", System.getenv("PHOST_PARTITION"));
        try {
            s.integration.publish("FullyQualifiedDomainName", host);
            s.integration.publish("OSName", System.getProperty("os.name") + " " + System.getProperty("os.version"));
        } catch (RuntimeException e) {
            // the host offers no KVP service: nothing to publish
        }
        return s;
    }

    public VmbusClient bus() {
        return bus;
    }

    public GuestRam ram() {
        return bus.ram();
    }

    public GuestIntegration integration() {
        return integration;
    }

    /** Waits up to {@code timeout} for a shutdown request or disconnect; true when one came. */
    public boolean awaitShutdown(java.time.Duration timeout) throws InterruptedException {
        return shutdown.await(timeout.toNanos(), java.util.concurrent.TimeUnit.NANOSECONDS);
    }

    /** Why the session ended: the host's shutdown reason, or "host disconnected". */
    public String shutdownReason() {
        return shutdownReason == null ? "host disconnected" : shutdownReason;
    }

    /** Blocks until the host requests shutdown or disconnects; returns the reason. */
    public String awaitShutdown() throws InterruptedException {
        shutdown.await();
        return shutdownReason == null ? "host disconnected" : shutdownReason;
    }

    /** Stops the integration services, closes channels and the connection, and releases guest memory. */
    @Override
    public void close() {
        integration.close();
        bus.close();
        bus.ram().close();
    }
}
