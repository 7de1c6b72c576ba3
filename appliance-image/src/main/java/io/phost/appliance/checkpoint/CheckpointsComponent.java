package io.phost.appliance.checkpoint;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.run.Component;
import io.phost.appliance.run.Metrics;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Checkpoints on the management API (query arguments, like the partition verbs):
 * <pre>
 *   GET  /v1/partitions/checkpoints?name=P                       the tree, the leaves, a delete's progress
 *   POST /v1/partitions/checkpoints/create?name=P&amp;checkpoint=C[&amp;type=production]   200: the checkpoint and each disk's I/O pause
 *   POST /v1/partitions/checkpoints/apply?name=P&amp;checkpoint=C    stops P if needed, reverts, starts it again
 *   POST /v1/partitions/checkpoints/delete?name=P&amp;checkpoint=C[&amp;wait=true]   202: the online merge started
 *   POST /v1/partitions/checkpoints/export?name=P&amp;checkpoint=C&amp;path=ABS[&amp;disk=D]   a standalone VHDX
 * </pre>
 * 404: no such partition or checkpoint; 409: not possible now (a merge runs, a VM partition, a non-VHDX disk).
 */
public final class CheckpointsComponent implements Component {
    private final CheckpointService service;

    public CheckpointsComponent(CheckpointService service) {
        this.service = service;
    }

    public CheckpointService service() {
        return service;
    }

    @Override
    public String name() {
        return "checkpoints";
    }

    @Override
    public Object status() {
        return service.status();
    }

    @Override
    public void metrics(Metrics m) {
        PauseStats p = service.pauses();
        m.gauge("phost_checkpoint_pause_p99_seconds", "p99 of the I/O pauses checkpoint disk switches caused (last 1024)",
            io.prometheus.metrics.model.snapshots.Unit.SECONDS, p.percentileMicros(0.99) / 1e6);
        m.gauge("phost_checkpoint_switches", "Disk switches made by checkpoint create, apply and delete", p.count());
    }

    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        Map<String, Function<String, HttpResponse>> r = new LinkedHashMap<>();
        r.put("GET /v1/partitions/checkpoints", q -> call(q, false, a -> service.list(a.get("name"))));
        r.put("POST /v1/partitions/checkpoints/create", q -> call(q, true,
            a -> service.create(a.get("name"), a.get("checkpoint"), CheckpointService.isStandard(a.get("type")))));
        r.put("POST /v1/partitions/checkpoints/apply", q -> call(q, true, a -> service.apply(a.get("name"), a.get("checkpoint"))));
        r.put("POST /v1/partitions/checkpoints/delete", q -> call(q, true,
            a -> service.delete(a.get("name"), a.get("checkpoint"), "true".equals(a.get("wait")))));
        r.put("POST /v1/partitions/checkpoints/export", q -> call(q, true,
            a -> service.export(a.get("name"), a.get("checkpoint"), a.get("disk"), a.get("path") == null ? null : Path.of(a.get("path")))));
        return r;
    }

    @FunctionalInterface
    private interface Action {
        Map<String, Object> run(Map<String, String> args) throws Exception;
    }

    private static HttpResponse call(String query, boolean post, Action action) {
        Map<String, String> a = Query.parse(query);
        if (a.get("name") == null || a.get("name").isBlank()) {
            return HttpResponse.text(400, "name=PARTITION is required\n");
        }
        try {
            Map<String, Object> out = action.run(a);
            int status = out.containsKey("deleting") && !"done".equals(((Map<?, ?>) out.get("merge")).get("phase")) ? 202 : 200;
            return new HttpResponse(status, "application/json", Json.pretty(out).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        } catch (CheckpointException e) {
            return HttpResponse.text(e.status(), e.getMessage() + "\n");
        } catch (IOException | RuntimeException e) {
            return HttpResponse.text(500, e.toString() + "\n");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return HttpResponse.text(500, "interrupted\n");
        } catch (Exception e) {
            return HttpResponse.text(500, e.toString() + "\n");
        }
    }

    @Override
    public void close() {
    }
}
