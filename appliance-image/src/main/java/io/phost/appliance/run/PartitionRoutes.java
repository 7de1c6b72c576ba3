package io.phost.appliance.run;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;
import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.Partition;
import io.phost.core.vm.VmPartition;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * The partition lifecycle on the management API (as Start-VM/Stop-VM, {@code virsh} and the Firecracker
 * API), for process and VM partitions alike. Arguments are query parameters; {@code name=N} picks one
 * partition, {@code all=true} every one.
 * <pre>
 *   GET  /partitions                                   every partition's status (JSON array)
 *   POST /partitions/start|stop|restart|pause|resume|kill|freeze|thaw?name=N | all=true [&amp;timeout_s=S (stop, restart)]
 *        200: the affected partitions' status; 404: no such partition; 409: not possible in its state
 *   GET  /partitions/console?name=N[&amp;bytes=65536]     the tail of a VM's serial console log (text)
 *   GET  /partitions/logs?name=N[&amp;bytes=65536]        the tail of the partition's own log: a process's
 *                                                      stdout/stderr, QEMU's messages for a VM (text)
 *   GET  /partitions/measure?name=N                    resource metering since start or reset (Measure-VM)
 *   POST /partitions/measure/reset?name=N              starts a new metering period; 200: the zeroed report
 *   GET  /events[?since=SEQ][&amp;wait_s=S]                events after SEQ as NDJSON, waiting up to S s for news
 * </pre>
 */
final class PartitionRoutes {
    static final int DEFAULT_TAIL = 64 * 1024;
    static final int MAX_TAIL = 4 * 1024 * 1024;
    static final int MAX_EVENT_WAIT_S = 30;
    /**
     * Event readers that may wait at once: a waiting request holds one of the endpoint's 16 serving slots, so
     * followers beyond this many are answered at once (they simply ask again) and never starve other requests.
     */
    static final int MAX_EVENT_WAITERS = 4;

    private final java.util.concurrent.Semaphore eventWaiters = new java.util.concurrent.Semaphore(MAX_EVENT_WAITERS);

    private final PartitionsComponent partitions;

    PartitionRoutes(PartitionsComponent partitions) {
        this.partitions = partitions;
    }

    Map<String, Function<String, HttpResponse>> routes() {
        Map<String, Function<String, HttpResponse>> r = new LinkedHashMap<>();
        r.put("GET /v1/partitions", q -> HttpResponse.json(Json.pretty(partitions.status())));
        for (String verb : List.of("start", "stop", "restart", "pause", "resume", "kill", "freeze", "thaw")) {
            r.put("POST /v1/partitions/" + verb, q -> verb(verb, q));
        }
        r.put("GET /v1/partitions/console", q -> tail(q, true));
        r.put("GET /v1/partitions/logs", q -> tail(q, false));
        r.put("GET /v1/partitions/measure", q -> measure(q, false));
        r.put("POST /v1/partitions/measure/reset", q -> measure(q, true));
        r.put("GET /v1/events", this::events);
        return r;
    }

    private HttpResponse events(String query) {
        Map<String, String> q = Query.parse(query);
        long since;
        int wait;
        try {
            since = Long.parseLong(q.getOrDefault("since", "0"));
            wait = Integer.parseInt(q.getOrDefault("wait_s", "0"));
        } catch (NumberFormatException e) {
            return HttpResponse.text(400, "since and wait_s must be whole numbers\n");
        }
        if (since < 0 || wait < 0 || wait > MAX_EVENT_WAIT_S) {
            return HttpResponse.text(400, "since must be 0 or more and wait_s 0.." + MAX_EVENT_WAIT_S + "\n");
        }
        boolean mayWait = wait > 0 && eventWaiters.tryAcquire();
        EventJournal.Page page;
        try {
            page = partitions.events().since(since, Duration.ofSeconds(mayWait ? wait : 0), EventJournal.BACKLOG);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            page = new EventJournal.Page(List.of(), 0);
        } finally {
            if (mayWait) {
                eventWaiters.release();
            }
        }
        StringBuilder sb = new StringBuilder();
        for (Object line : page.json()) {
            sb.append(Json.write(line)).append('\n');
        }
        return new HttpResponse(200, "application/x-ndjson", sb.toString().getBytes(StandardCharsets.UTF_8));
    }

    private HttpResponse verb(String verb, String query) {
        Map<String, String> q = Query.parse(query);
        List<ChildPartition> targets;
        try {
            targets = targets(q);
        } catch (IllegalArgumentException e) {
            return HttpResponse.text(e.getMessage().startsWith("no partition") ? 404 : 400, e.getMessage() + "\n");
        }
        Duration timeout = null;
        if (q.containsKey("timeout_s")) {
            try {
                long s = Long.parseLong(q.get("timeout_s"));
                if (s < 0 || s > 3600) {
                    throw new NumberFormatException();
                }
                timeout = Duration.ofSeconds(s);
            } catch (NumberFormatException e) {
                return HttpResponse.text(400, "timeout_s must be 0..3600 seconds, not '" + q.get("timeout_s") + "'\n");
            }
        }
        List<String> failures = new ArrayList<>();
        List<Object> done = new ArrayList<>();
        for (ChildPartition p : targets) {
            Duration grace = timeout != null ? timeout : partitions.stopTimeout(p);
            try {
                switch (verb) {
                    case "start" -> partitions.start(p, false);
                    case "stop" -> partitions.stop(p, grace);
                    case "restart" -> p.restart(grace);
                    case "pause" -> p.pause();
                    case "resume" -> p.resume();
                    case "kill" -> partitions.turnOff(p, "killed by request");
                    case "freeze" -> vm(p, verb).freezeFileSystems();
                    case "thaw" -> vm(p, verb).thawFileSystems();
                    default -> throw new IllegalArgumentException(verb);
                }
            } catch (IOException | RuntimeException e) {
                failures.add(p.name() + ": " + e.getMessage());
            }
            done.add(PartitionsComponent.json(p.status()));
        }
        if (!failures.isEmpty() && (targets.size() == 1 || !q.containsKey("all"))) {
            return HttpResponse.text(409, verb + " " + String.join("; ", failures) + "\n");
        }
        return HttpResponse.json(Json.pretty(done));
    }

    /** fsfreeze needs a VM's guest agent: a process partition is refused by name (409). */
    private static VmPartition vm(ChildPartition p, String verb) {
        if (p instanceof VmPartition vm) {
            return vm;
        }
        throw new IllegalStateException("cannot " + verb + " file systems of a process partition: that needs a VM's guest agent");
    }

    private List<ChildPartition> targets(Map<String, String> q) {
        if ("true".equals(q.get("all"))) {
            return partitions.partitions();
        }
        String name = q.get("name");
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException("name=NAME or all=true is required");
        }
        ChildPartition p = partitions.partition(name);
        if (p == null) {
            throw new IllegalArgumentException("no partition named '" + name + "'");
        }
        return List.of(p);
    }

    private HttpResponse measure(String query, boolean reset) {
        ChildPartition p;
        try {
            p = targets(Map.of("name", Query.parse(query).getOrDefault("name", ""))).getFirst();
        } catch (IllegalArgumentException e) {
            return HttpResponse.text(e.getMessage().startsWith("no partition") ? 404 : 400, e.getMessage() + "\n");
        }
        Metering m = partitions.metering();
        if (m == null) {
            return HttpResponse.text(503, "metering is not running yet\n");
        }
        if (reset) {
            m.reset(p.name());
        }
        return HttpResponse.json(Json.pretty(m.report(p.name())));
    }

    private HttpResponse tail(String query, boolean console) {
        Map<String, String> q = Query.parse(query);
        ChildPartition p;
        try {
            p = targets(Map.of("name", q.getOrDefault("name", ""))).getFirst();
        } catch (IllegalArgumentException e) {
            return HttpResponse.text(e.getMessage().startsWith("no partition") ? 404 : 400, e.getMessage() + "\n");
        }
        int bytes;
        try {
            bytes = Integer.parseInt(q.getOrDefault("bytes", Integer.toString(DEFAULT_TAIL)));
            if (bytes < 1 || bytes > MAX_TAIL) {
                throw new NumberFormatException();
            }
        } catch (NumberFormatException e) {
            return HttpResponse.text(400, "bytes must be 1.." + MAX_TAIL + "\n");
        }
        try {
            String text;
            if (p instanceof VmPartition vm) {
                text = console ? vm.console().tail(bytes) : new String(io.phost.core.vm.ConsoleLog.last(vm.qemuLog(), bytes),
                    StandardCharsets.UTF_8);
            } else if (console) {
                return HttpResponse.text(404, "partition '" + p.name() + "' is a process partition: it has no serial "
                    + "console; its output is at /partitions/logs?name=" + p.name() + "\n");
            } else {
                Path log = ((Partition) p).logFile();
                text = new String(io.phost.core.vm.ConsoleLog.last(log, bytes), StandardCharsets.UTF_8);
            }
            return HttpResponse.text(200, text);
        } catch (IOException e) {
            return HttpResponse.text(500, "cannot read the log of '" + p.name() + "': " + e.getMessage() + "\n");
        }
    }
}
