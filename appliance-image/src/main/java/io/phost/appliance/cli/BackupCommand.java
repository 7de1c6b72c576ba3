package io.phost.appliance.cli;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.core.text.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code phost backup start|status|finish DISK}: incremental backups with change tracking (Hyper-V's RCT). */
@Command(mixinStandardHelpOptions = true, name = "backup", description =
    "Incremental backups of a running partition's disk: a backup point exported read-only over NBD with the "
        + "qemu:dirty-bitmap:backup context of the blocks changed since the previous one.",
    subcommands = {BackupCommand.Start.class, BackupCommand.Status.class, BackupCommand.Finish.class})
public final class BackupCommand {

    abstract static class Base implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "DISK", description = "A disk of a partition (its config name).")
        String disk;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        Map<?, ?> call(String method, String path, Map<String, Object> query) throws IOException {
            String target = path + "?" + Query.encode(query);
            HttpResponse r = HostAnswer.require(method.equals("GET") ? endpoint.get(target) : endpoint.post(target),
                "backup", false);
            if (json) {
                System.out.print(r.bodyText());
            }
            return (Map<?, ?>) Json.parse(r.bodyText());
        }

        Map<String, Object> query() {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("disk", disk);
            return q;
        }

        static String describe(Map<?, ?> m) {
            StringBuilder b = new StringBuilder();
            Map<?, ?> t = (Map<?, ?>) m.get("tracking");
            b.append("disk ").append(m.get("disk")).append(" of partition ").append(m.get("partition")).append('\n');
            b.append("  next backup: ").append(t.get("next_backup")).append(" (").append(t.get("reason")).append(")\n");
            if (t.get("changed_bytes") != null) {
                b.append("  changed since the last backup point: ").append(t.get("changed_bytes")).append(" bytes (generation ")
                    .append(t.get("generation")).append(")\n");
            }
            if (m.get("backup") instanceof Map<?, ?> k) {
                b.append("  backup in progress: ").append(k.get("kind")).append(" (").append(k.get("reason")).append(")\n");
                b.append("    export: ").append(k.get("uri")).append('\n');
                b.append("    context: ").append(k.get("bitmap")).append(", ").append(k.get("changed_bytes")).append(" bytes to copy\n");
                b.append("    checkpoint: ").append(k.get("checkpoint")).append('\n');
            }
            return b.toString();
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "start", description = "Take a backup point (a checkpoint; the partition keeps running) and export it read-only over NBD.")
    static final class Start extends Base {
        @Override
        public Integer call() throws IOException {
            Map<?, ?> m = call("POST", "/v1/backups/start", query());
            if (!json) {
                System.out.print(describe(m));
            }
            return 0;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "status", description = "Show the disk's change tracking (whether the next backup is full, and why) and its running backup.")
    static final class Status extends Base {
        @Override
        public Integer call() throws IOException {
            Map<?, ?> m = call("GET", "/v1/backups", query());
            if (!json) {
                System.out.print(describe(m));
            }
            return 0;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "finish", description = "End the backup: the export closes and the backup point's checkpoint merges away online.")
    static final class Finish extends Base {
        @Option(names = "--abandon", description = "The copy failed: the changes it should have copied stay pending for the next backup.")
        boolean abandon;

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = query();
            if (abandon) {
                q.put("abandon", "true");
            }
            Map<?, ?> m = call("POST", "/v1/backups/finish", q);
            if (!json) {
                System.out.println("finished backup " + m.get("finished") + (abandon ? " (abandoned: its changes stay pending)" : ""));
            }
            return 0;
        }
    }
}
