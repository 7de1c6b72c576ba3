package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;
import io.phost.appliance.util.TextTable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code phost checkpoint ...}: production checkpoints of a running partition (as Checkpoint-VM and friends). */
@Command(mixinStandardHelpOptions = true, name = "checkpoint", description =
    "Checkpoints of a partition's disks on a running host (as Checkpoint-VM, Restore-VMSnapshot, Remove-VMSnapshot, Export-VMSnapshot).",
    subcommands = {CheckpointCommand.ListCheckpoints.class, CheckpointCommand.Create.class, CheckpointCommand.Apply.class,
        CheckpointCommand.Delete.class, CheckpointCommand.Export.class})
public final class CheckpointCommand {

    abstract static class Base implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "PARTITION", description = "The partition.")
        String partition;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        HttpResponse post(String verb, Map<String, Object> query) throws IOException {
            return HostAnswer.require(endpoint.post("/v1/partitions/checkpoints/" + verb + "?" + Query.encode(query)),
                "checkpoint " + verb, true);
        }

        Map<String, Object> query(String checkpoint) {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("name", partition);
            q.put("checkpoint", checkpoint);
            return q;
        }

        int print(HttpResponse r, String line) {
            System.out.println(json ? r.bodyText().strip() : line);
            return 0;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "list", description = "Show the checkpoint tree, each disk's current image and a running delete.")
    static final class ListCheckpoints extends Base {
        @Override
        public Integer call() throws IOException {
            HttpResponse r = endpoint.get("/v1/partitions/checkpoints?" + Query.encode(Map.of("name", partition)));
            if (r.status() == 404) {
                throw new UserException(r.bodyText().strip(), 2);
            }
            QosCommand.ok(r);
            if (json) {
                System.out.print(r.bodyText());
                return 0;
            }
            Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
            TextTable t = new TextTable(List.of("NAME", "PARENT", "CREATED", "CONSISTENCY", "CURRENT"));
            for (Object o : (List<?>) m.get("checkpoints")) {
                Map<?, ?> c = (Map<?, ?>) o;
                t.row(List.of(String.valueOf(c.get("name")), c.get("parent") == null ? "-" : String.valueOf(c.get("parent")),
                    String.valueOf(c.get("created")), String.valueOf(c.get("consistency")),
                    Boolean.TRUE.equals(c.get("current")) ? "*" : ""));
            }
            System.out.print(t);
            if (m.get("merge") instanceof Map<?, ?> g) {
                System.out.println("deleting " + g.get("checkpoint") + ": " + g.get("phase") + " " + g.get("percent") + "%"
                    + (g.get("error") != null ? " error: " + g.get("error") : ""));
            }
            return 0;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "create", description = "Take a production checkpoint; the partition keeps running (its disk I/O pauses briefly).")
    static final class Create extends Base {
        @Parameters(index = "1", paramLabel = "CHECKPOINT", description = "A new name: letters, digits, . _ -")
        String checkpoint;

        @Option(names = "--type", paramLabel = "TYPE", defaultValue = "production", description =
            "production (default: the disks, with the guest's writes frozen when it can) or standard (a running VM's "
                + "memory and device state too: the VM stops while they are saved; apply resumes it from that moment).")
        String type;

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = query(checkpoint);
            if (!type.equals("production")) {
                q.put("type", type);
            }
            HttpResponse r = post("create", q);
            Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
            return print(r, "created checkpoint " + checkpoint + " of " + partition + " (" + m.get("consistency")
                + (m.get("consistency_reason") != null ? ": " + m.get("consistency_reason") : "")
                + (m.get("vm_state_bytes") != null ? ", VM stopped " + m.get("vm_stopped_ms") + " ms, state "
                    + m.get("vm_state_bytes") + " bytes" : "")
                + ", I/O pause per disk us=" + m.get("pause_us") + ")");
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "apply", description = "Revert to a checkpoint (a running partition is stopped, reverted and started again). Changes since the last checkpoint are discarded.")
    static final class Apply extends Base {
        @Parameters(index = "1", paramLabel = "CHECKPOINT")
        String checkpoint;

        @Override
        public Integer call() throws IOException {
            return print(post("apply", query(checkpoint)), "applied checkpoint " + checkpoint + " to " + partition);
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "delete", description = "Delete a checkpoint: its data merges into its parent while the partition runs.")
    static final class Delete extends Base {
        @Parameters(index = "1", paramLabel = "CHECKPOINT")
        String checkpoint;

        @Option(names = "--wait", description = "Return when the merge is done (else it runs on; see checkpoint list).")
        boolean await;

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = query(checkpoint);
            if (await) {
                q.put("wait", "true");
            }
            HttpResponse r = post("delete", q);
            return print(r, (r.status() == 200 ? "deleted checkpoint " : "deleting checkpoint ") + checkpoint + " of " + partition
                + (r.status() == 200 ? "" : " (merging in the background; phost checkpoint list " + partition + " shows progress)"));
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "export", description = "Write a checkpoint's view of a disk as a new standalone dynamic VHDX.")
    static final class Export extends Base {
        @Parameters(index = "1", paramLabel = "CHECKPOINT")
        String checkpoint;

        @Parameters(index = "2", paramLabel = "FILE", description = "The new image (must not exist).")
        Path file;

        @Option(names = "--disk", paramLabel = "DISK", description = "Which disk (required when the partition has several).")
        String disk;

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = query(checkpoint);
            q.put("path", file.toAbsolutePath().toString());
            if (disk != null) {
                q.put("disk", disk);
            }
            return print(post("export", q), "exported checkpoint " + checkpoint + " of " + partition + " to " + file.toAbsolutePath());
        }
    }
}
