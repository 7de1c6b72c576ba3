package io.phost.appliance.backup;

import io.phost.appliance.checkpoint.CheckpointException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.run.Component;
import io.phost.appliance.util.Query;
import io.phost.core.text.Json;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Incremental backups on the management API:
 * <pre>
 *   GET  /v1/backups?disk=D                      tracking (generation, next backup full or incremental and why), a running backup
 *   POST /v1/backups/start?disk=D                backup point taken; 200: the NBD URI and the qemu:dirty-bitmap context
 *   POST /v1/backups/finish?disk=D[&amp;abandon=true]  export closed, backup checkpoint merged away
 * </pre>
 * 404: no such disk of a partition, or no backup to finish; 409: not possible now (a backup runs, neither VHDX nor VHD, a merge runs).
 */
public final class BackupComponent implements Component {
    private final BackupService service;

    public BackupComponent(BackupService service) {
        this.service = service;
    }

    @Override
    public String name() {
        return "backups";
    }

    @Override
    public Object status() {
        return service.statusAll();
    }

    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        Map<String, Function<String, HttpResponse>> r = new LinkedHashMap<>();
        r.put("GET /v1/backups", q -> call(q, a -> service.status(a.get("disk"))));
        r.put("POST /v1/backups/start", q -> call(q, a -> service.start(a.get("disk"))));
        r.put("POST /v1/backups/finish", q -> call(q, a -> service.finish(a.get("disk"), "true".equals(a.get("abandon")))));
        return r;
    }

    @FunctionalInterface
    private interface Action {
        Map<String, Object> run(Map<String, String> args) throws Exception;
    }

    private static HttpResponse call(String query, Action action) {
        try {
            Map<String, Object> out = action.run(Query.parse(query));
            return new HttpResponse(200, "application/json", Json.pretty(out).getBytes(StandardCharsets.UTF_8));
        } catch (CheckpointException e) {
            return HttpResponse.text(e.status(), e.getMessage() + "\n");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return HttpResponse.text(500, "interrupted\n");
        } catch (Exception e) {
            return HttpResponse.text(500, e + "\n");
        }
    }

    @Override
    public void close() throws IOException {
        service.close();
    }
}
