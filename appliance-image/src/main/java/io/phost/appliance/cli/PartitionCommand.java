package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;
import io.phost.appliance.util.TextTable;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(mixinStandardHelpOptions = true, name = "partition", description =
    "Partition lifecycle on a running host, for process and VM partitions alike "
    + "(as Start-VM/Stop-VM, virsh start/shutdown/destroy/suspend/resume).",
    subcommands = {PartitionCommand.ListPartitions.class, PartitionCommand.Start.class, PartitionCommand.Stop.class,
        PartitionCommand.Restart.class, PartitionCommand.Pause.class, PartitionCommand.Resume.class,
        PartitionCommand.Kill.class, PartitionCommand.Console.class, PartitionCommand.Logs.class})
public final class PartitionCommand {

    @Command(mixinStandardHelpOptions = true, name = "list", description = "Show every partition: kind, state, pid, faults and why it is in its state.")
    static final class ListPartitions implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        @Override
        public Integer call() throws IOException {
            HttpResponse r = QosCommand.ok(endpoint.get("/v1/partitions"));
            if (json) {
                System.out.print(r.bodyText());
                return 0;
            }
            System.out.print(table((List<?>) Json.parse(r.bodyText())));
            return 0;
        }
    }

    /** NAME, or --all. */
    static final class Target {
        @Parameters(index = "0", paramLabel = "NAME", description = "The partition.")
        String name;

        @Option(names = "--all", required = true, description = "Every partition.")
        boolean all;

        String query() {
            return all ? "all=true" : Query.encode(Map.of("name", name));
        }
    }

    abstract static class Verb implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @ArgGroup(exclusive = true, multiplicity = "1")
        Target target;

        abstract String verb();

        String extraQuery() {
            return "";
        }

        @Override
        public Integer call() throws IOException {
            HttpResponse r = endpoint.post("/v1/partitions/" + verb() + "?" + target.query() + extraQuery());
            if (r.status() == 404 || r.status() == 409 || r.status() == 400) {
                throw new UserException(verb() + ": " + r.bodyText().strip(), r.status() == 409 ? 1 : 2);
            }
            System.out.print(table((List<?>) Json.parse(QosCommand.ok(r).bodyText())));
            return 0;
        }
    }

    abstract static class TimedVerb extends Verb {
        @Option(names = "--timeout", paramLabel = "SECONDS",
            description = "How long the guest has to shut down before it is killed (default: a VM's stop_timeout, 2.5 s for a process).")
        Long timeout;

        @Override
        String extraQuery() {
            return timeout == null ? "" : "&timeout_s=" + timeout;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "start", description = "Start a stopped, crashed or autostart = false partition.")
    static final class Start extends Verb {
        @Override
        String verb() {
            return "start";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "stop", description = "Shut down gracefully: a VM gets an ACPI "
        + "power-button press, a process partition the shutdown integration service; killed when still running after the timeout.")
    static final class Stop extends TimedVerb {
        @Override
        String verb() {
            return "stop";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "restart", description = "Stop (gracefully, as stop) and start again.")
    static final class Restart extends TimedVerb {
        @Override
        String verb() {
            return "restart";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "pause", description = "Freeze the partition (a VM's vCPUs stop; a process gets SIGSTOP).")
    static final class Pause extends Verb {
        @Override
        String verb() {
            return "pause";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "resume", description = "Continue a paused partition.")
    static final class Resume extends Verb {
        @Override
        String verb() {
            return "resume";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "kill", description = "End the partition at once (SIGKILL; as Stop-VM -TurnOff). No restart policy applies.")
    static final class Kill extends Verb {
        @Override
        String verb() {
            return "kill";
        }
    }

    abstract static class Tail implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "NAME")
        String name;

        @Option(names = "--bytes", paramLabel = "N", defaultValue = "65536", description = "How much of the end to show (default 64 KiB).")
        int bytes;

        abstract String resource();

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("name", name);
            q.put("bytes", bytes);
            HttpResponse r = endpoint.get("/v1/partitions/" + resource() + "?" + Query.encode(q));
            if (r.status() == 404 || r.status() == 400) {
                throw new UserException(resource() + ": " + r.bodyText().strip(), 2);
            }
            System.out.print(QosCommand.ok(r).bodyText());
            return 0;
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "console", description = "Show the end of a VM's serial console log.")
    static final class Console extends Tail {
        @Override
        String resource() {
            return "console";
        }
    }

    @Command(mixinStandardHelpOptions = true, name = "logs", description = "Show the end of a partition's own log: a process's output, or QEMU's messages for a VM.")
    static final class Logs extends Tail {
        @Override
        String resource() {
            return "logs";
        }
    }

    /** NAME KIND STATE PID VCPUS MEMORY FAULTS REASON, one row per partition. */
    static String table(List<?> partitions) {
        if (partitions.isEmpty()) {
            return "no partitions\n";
        }
        TextTable t = new TextTable(List.of("NAME", "KIND", "STATE", "PID", "VCPUS", "MEMORY", "FAULTS", "REASON"));
        for (Object o : partitions) {
            Map<?, ?> p = (Map<?, ?>) o;
            List<Object> row = new ArrayList<>();
            row.add(p.get("name"));
            row.add(String.valueOf(p.get("kind")).toLowerCase(java.util.Locale.ROOT));
            row.add(p.get("state"));
            row.add(p.get("pid") == null ? "-" : p.get("pid"));
            row.add(p.get("vcpus"));
            row.add(p.get("memory_bytes") instanceof Number n ? (n.longValue() >> 20) + "MiB" : p.get("memory_bytes"));
            row.add(p.get("fault_count"));
            row.add(p.get("reason") == null ? "-" : p.get("reason"));
            t.row(row);
        }
        return t.toString();
    }
}
