package io.phost.appliance.run;

import io.phost.appliance.mgmt.HttpResponse;
import java.util.Map;
import java.util.function.Function;

/**
 * A running part of the appliance (disks, QoS, a switch, the partitions). The {@link Appliance} starts
 * components in the order they are added and closes them in reverse, so a disk outlives the partitions
 * that use it.
 */
public interface Component extends AutoCloseable {
    /** Short name used as the key in /status and the {@code component=} field of log lines. */
    String name();

    /** This component's part of GET /status: JSON-able maps, lists, strings and numbers. */
    Object status();

    /**
     * Null while this component does its job, else one line saying what is wrong (e.g. the NBD export stopped
     * accepting clients); any problem turns GET /health into 503 {@code "degraded"} naming the component.
     */
    default String problem() {
        return null;
    }

    /** Appends this component's Prometheus samples. */
    default void metrics(Metrics metrics) {
    }

    /**
     * Resources this component serves on the management endpoint: {@code "GET /v1/..."} or {@code "POST /v1/..."}
     * to the handler of the query string. Each must be described in docs/openapi.yaml.
     */
    default Map<String, Function<String, HttpResponse>> routes() {
        return Map.of();
    }

    /** POST resources that read a request body: {@code "POST /v1/..."} to the handler of (query string, body). */
    default Map<String, java.util.function.BiFunction<String, byte[], HttpResponse>> bodyRoutes() {
        return Map.of();
    }

    /** Stops the component and releases what it holds (flushes disks). Must not throw for a clean stop. */
    @Override
    void close() throws Exception;
}
