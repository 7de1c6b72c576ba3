package io.phost.appliance.run;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementServer;
import io.phost.appliance.util.Json;
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
 * that reports on them. Closing stops the components in reverse order of start; a component that fails to
 * close is logged and the others are still closed.
 */
public final class Appliance implements AutoCloseable {
    private static final Logger LOG = System.getLogger("phost.run");

    private final String name;
    private final Instant started = Instant.now();
    private final List<Component> components = new CopyOnWriteArrayList<>();
    private volatile String state = "starting";
    private volatile ManagementServer server;

    public Appliance(String name) {
        this.name = name;
    }

    /** Adds a started component; it will be closed by {@link #close()}. */
    public <C extends Component> C add(C component) {
        components.add(component);
        if (server != null) {
            component.routes().forEach(this::install);
        }
        return component;
    }

    public List<Component> components() {
        return List.copyOf(components);
    }

    public void state(String newState) {
        state = newState;
    }

    public String state() {
        return state;
    }

    /** Installs /health, /status, /metrics and the components' own routes on {@code server}. */
    public void serve(ManagementServer server) {
        this.server = server;
        components.forEach(c -> c.routes().forEach(this::install));
        server.route("/health", q -> health());
        server.route("/status", q -> HttpResponse.json(Json.pretty(status())));
        server.route("/metrics", q -> HttpResponse.metrics(metrics()));
    }

    private void install(String key, java.util.function.Function<String, HttpResponse> handler) {
        if (key.startsWith("POST ")) {
            server.routePost(key.substring(5), handler);
        } else {
            server.route(key, handler);
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
        for (Component c : components) {
            try {
                s.put(c.name(), c.status());
            } catch (RuntimeException e) {
                s.put(c.name(), Map.of("error", e.toString()));
            }
        }
        return s;
    }

    public String metrics() {
        Metrics m = new Metrics();
        m.gauge("phost_up", "1 while the host is running", state.equals("running") ? 1 : 0, "host", name);
        m.gauge("phost_uptime_seconds", "Seconds since the host started", Duration.between(started, Instant.now()).toSeconds());
        Runtime rt = Runtime.getRuntime();
        m.gauge("phost_jvm_heap_used_bytes", "JVM heap in use", rt.totalMemory() - rt.freeMemory());
        for (Component c : components) {
            try {
                c.metrics(m);
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "metrics of " + c.name() + " failed: " + e);
            }
        }
        return m.toString();
    }

    @Override
    public void close() {
        state = "stopping";
        List<Component> reversed = new ArrayList<>(components);
        java.util.Collections.reverse(reversed);
        for (Component c : reversed) {
            long t0 = System.nanoTime();
            try {
                c.close();
                LOG.log(Level.INFO, "stopped component=" + c.name() + " ms=" + (System.nanoTime() - t0) / 1_000_000);
            } catch (Exception e) {
                LOG.log(Level.ERROR, "stop failed component=" + c.name() + " error=\"" + e + "\"");
            }
        }
        components.clear();
        state = "stopped";
    }
}
