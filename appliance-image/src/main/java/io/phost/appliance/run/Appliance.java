package io.phost.appliance.run;

import io.phost.appliance.cli.VersionCommand;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementServer;
import io.phost.appliance.mgmt.OpenApi;
import io.phost.core.text.Json;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The running parent partition host: an ordered list of {@link Component}s plus the management endpoint
 * that reports on them. Closing stops each component once every component that uses it has stopped, and
 * components that do not depend on each other stop in parallel (the partitions first, then the switches beside
 * the disk exports, the disks last); a component added without its dependencies named uses every earlier one.
 * A component that fails to close is logged and the others are still closed.
 */
public final class Appliance implements AutoCloseable {
    private static final Logger LOG = System.getLogger("phost.run");

    private final String name;
    private final Instant started = Instant.now();
    private final List<Component> components = new CopyOnWriteArrayList<>();
    /** The components each component uses (by identity): a component is closed after all of its users. */
    private final Map<Component, List<Component>> uses = java.util.Collections.synchronizedMap(new java.util.IdentityHashMap<>());
    private volatile String state = "starting";
    private volatile ManagementServer server;
    private volatile Privileges privileges;
    /** JVM and process metrics (jvm_*, process_*) of the Prometheus client, scraped with ours. */
    private final PrometheusRegistry jvm = new PrometheusRegistry();

    public Appliance(String name) {
        this.name = name;
        JvmMetrics.builder().register(jvm);
    }

    /**
     * Adds a started component that uses every component added before it; it will be closed by
     * {@link #close()} before any of them.
     */
    public <C extends Component> C add(C component) {
        return add(component, components.toArray(Component[]::new));
    }

    /**
     * Adds a started component that uses (only) {@code uses} (nulls ignored); {@link #close()} closes it before
     * them and in parallel with components it neither uses nor is used by.
     */
    public <C extends Component> C add(C component, Component... uses) {
        this.uses.put(component, java.util.Arrays.stream(uses).filter(java.util.Objects::nonNull).toList());
        components.add(component);
        if (server != null) {
            installAll(component);
        }
        return component;
    }

    public List<Component> components() {
        return List.copyOf(components);
    }

    /** The user's privileges, shown in /v1/status as {@code privileges} (root, and the features that are off). */
    public void privileges(Privileges p) {
        privileges = p;
    }

    public void state(String newState) {
        state = newState;
    }

    public String state() {
        return state;
    }

    /**
     * Installs the API: the host's own routes below, then each component's ({@link Component#routes()}).
     * Every route must be described in docs/openapi.yaml ({@link OpenApi#requireDocumented}).
     */
    public void serve(ManagementServer server) {
        this.server = server;
        install("GET " + ManagementServer.HEALTH, q -> health());
        install("GET /v1/status", q -> HttpResponse.json(Json.pretty(status())));
        install("GET /v1/metrics", q -> HttpResponse.metrics(metrics().text()));
        install("GET /openapi.json", q -> HttpResponse.json(OpenApi.json()));
        components.forEach(this::installAll);
    }

    private void installAll(Component c) {
        c.routes().forEach(this::install);
        c.bodyRoutes().forEach((key, handler) -> {
            OpenApi.requireDocumented(key);
            server.routePostBody(key.substring(key.indexOf(' ') + 1), handler);
        });
    }

    /** {@code key} is "METHOD /path" (a bare "/path" is a GET). */
    private void install(String key, java.util.function.Function<String, HttpResponse> handler) {
        String operation = key.startsWith("/") ? "GET " + key : key;
        OpenApi.requireDocumented(operation);
        String path = operation.substring(operation.indexOf(' ') + 1);
        if (operation.startsWith("POST ")) {
            server.routePost(path, handler);
        } else {
            server.route(path, handler);
        }
    }

    /** {"status":"ok"} while running and every component is well; else 503 "degraded" with each problem. */
    HttpResponse health() {
        Map<String, Object> problems = new LinkedHashMap<>();
        for (Component c : components) {
            String p = c.problem();
            if (p != null) {
                problems.put(c.name(), p);
            }
        }
        if (problems.isEmpty() || !state.equals("running")) {
            return HttpResponse.json(Json.write(Map.of("status", state.equals("running") ? "ok" : state)));
        }
        byte[] body = Json.write(Map.of("status", "degraded", "problems", problems)).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        return new HttpResponse(503, "application/json", body);
    }

    public Map<String, Object> status() {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("name", name);
        s.put("state", state);
        s.put("started", started.toString());
        s.put("uptime_seconds", Duration.between(started, Instant.now()).toSeconds());
        s.put("pid", ProcessHandle.current().pid());
        Privileges p = privileges;
        if (p != null) {
            Map<String, Object> priv = new LinkedHashMap<>();
            priv.put("root", p.root());
            priv.put("uid", p.uid() < 0 ? null : p.uid());
            priv.put("features_off", p.featuresOff());
            s.put("privileges", priv);
        }
        for (Component c : components) {
            try {
                s.put(c.name(), c.status());
            } catch (RuntimeException e) {
                s.put(c.name(), Map.of("error", e.toString()));
            }
        }
        return s;
    }

    /** One scrape: the host's own families, every component's, then the JVM's and the process's. */
    public Metrics metrics() {
        Metrics m = new Metrics();
        m.info("phost_build", "Versions of phost and of the Java runtime it runs on",
            "version", VersionCommand.phostVersion(), "java", Runtime.version().toString());
        m.info("phost_host", "The host's name from [host] name", "name", name);
        m.gauge("phost_up", "1 while the host is running; 0 while it starts or stops", state.equals("running") ? 1 : 0);
        for (Component c : components) {
            try {
                c.metrics(m);
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "metrics of " + c.name() + " failed: " + e);
            }
        }
        m.add(jvm.scrape());
        return m;
    }

    @Override
    public void close() {
        state = "stopping";
        List<Component> reversed = new ArrayList<>(components);
        java.util.Collections.reverse(reversed);
        // Reverse order of start: every user of a component was added after it, so its future exists already.
        Map<Component, java.util.concurrent.CompletableFuture<Void>> closed = new java.util.IdentityHashMap<>();
        java.util.concurrent.Executor threads = r -> Thread.ofVirtual().name("stop-").start(r);
        for (Component c : reversed) {
            List<java.util.concurrent.CompletableFuture<Void>> users = new ArrayList<>();
            for (Component u : reversed) {
                if (closed.containsKey(u) && uses.getOrDefault(u, List.of()).contains(c)) {
                    users.add(closed.get(u));
                }
            }
            closed.put(c, java.util.concurrent.CompletableFuture.allOf(users.toArray(java.util.concurrent.CompletableFuture[]::new))
                .handle((ok, e) -> null)
                .thenRunAsync(() -> closeOne(c), threads));
        }
        java.util.concurrent.CompletableFuture.allOf(closed.values().toArray(java.util.concurrent.CompletableFuture[]::new)).join();
        components.clear();
        uses.clear();
        state = "stopped";
    }

    private static void closeOne(Component c) {
        long t0 = System.nanoTime();
        try {
            c.close();
            LOG.log(Level.INFO, "stopped component=" + c.name() + " ms=" + (System.nanoTime() - t0) / 1_000_000);
        } catch (Exception e) {
            LOG.log(Level.ERROR, "stop failed component=" + c.name() + " error=\"" + e + "\"");
        }
    }
}
