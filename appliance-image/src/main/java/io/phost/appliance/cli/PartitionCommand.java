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
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

@Command(mixinStandardHelpOptions = true, name = "partition", description =
    "Partition lifecycle on a running host, for process and VM partitions alike "
    + "(as Start-VM/Stop-VM, virsh start/shutdown/destroy/suspend/resume).",
    subcommands = {PartitionCommand.ListPartitions.class, PartitionCommand.Start.class, PartitionCommand.Stop.class,
        PartitionCommand.Restart.class, PartitionCommand.Pause.class, PartitionCommand.Resume.class,
        PartitionCommand.Kill.class, PartitionCommand.Freeze.class, PartitionCommand.Thaw.class, PartitionCommand.Console.class,
        PartitionCommand.Logs.class, PartitionCommand.Measure.class, PartitionMoveCommand.class})
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

        @Spec
        CommandSpec spec;

        /** The verb is the subcommand's name, as the API path has it. */
        String verb() {
            return spec.name();
        }

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
    }

    @Command(mixinStandardHelpOptions = true, name = "stop", description = "Shut down gracefully: a VM gets guest-shutdown "
        + "through its guest agent when it answers, else an ACPI power-button press; a process partition the shutdown integration service; killed when still running after the timeout.")
    static final class Stop extends TimedVerb {
    }

    @Command(mixinStandardHelpOptions = true, name = "freeze", description = "Freeze a VM's guest file systems through "
        + "qemu-guest-agent (guest-fsfreeze-freeze), e.g. around a checkpoint; status details.fsfreeze says how many.")
    static final class Freeze extends Verb {
    }

    @Command(mixinStandardHelpOptions = true, name = "thaw", description = "Thaw a VM's guest file systems (guest-fsfreeze-thaw).")
    static final class Thaw extends Verb {
    }

    @Command(mixinStandardHelpOptions = true, name = "restart", description = "Stop (gracefully, as stop) and start again.")
    static final class Restart extends TimedVerb {
    }

    @Command(mixinStandardHelpOptions = true, name = "pause", description = "Freeze the partition (a VM's vCPUs stop; a process gets SIGSTOP).")
    static final class Pause extends Verb {
    }

    @Command(mixinStandardHelpOptions = true, name = "resume", description = "Continue a paused partition.")
    static final class Resume extends Verb {
    }

    @Command(mixinStandardHelpOptions = true, name = "kill", description = "End the partition at once (SIGKILL; as Stop-VM -TurnOff). No restart policy applies.")
    static final class Kill extends Verb {
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

    @Command(mixinStandardHelpOptions = true, name = "measure", description = "Resource metering since the partition "
        + "started or since the last reset (as Measure-VM): average and peak CPU, memory, disk bytes and normalized "
        + "IOPS per disk, network bytes per NIC.")
    static final class Measure implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "NAME", description = "The partition.")
        String name;

        @Option(names = "--reset", description = "Start a new metering period (the meters go to zero) and show it.")
        boolean reset;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        @Override
        public Integer call() throws IOException {
            String q = Query.encode(Map.of("name", name));
            HttpResponse r = reset ? endpoint.post("/v1/partitions/measure/reset?" + q) : endpoint.get("/v1/partitions/measure?" + q);
            if (r.status() == 404 || r.status() == 400) {
                throw new UserException("measure: " + r.bodyText().strip(), 2);
            }
            String body = QosCommand.ok(r).bodyText();
            System.out.print(json ? body : measureText((Map<?, ?>) Json.parse(body)));
            return 0;
        }
    }

    /** The report of {@code measure} in human units: a summary, then a table per disk and per NIC. */
    static String measureText(Map<?, ?> m) {
        StringBuilder sb = new StringBuilder();
        TextTable t = new TextTable(List.of("PARTITION", "SINCE", "DURATION", "AVG CPU", "PEAK CPU", "AVG MEM", "PEAK MEM", "MIN MEM"));
        t.row(List.of(m.get("partition"), m.get("since"), num(m, "duration_seconds") + "s",
            String.format(java.util.Locale.ROOT, "%.1f%%", num(m, "average_cpu_percent")),
            String.format(java.util.Locale.ROOT, "%.1f%%", num(m, "peak_cpu_percent")),
            bytes(num(m, "average_memory_bytes")), bytes(num(m, "peak_memory_bytes")), bytes(num(m, "minimum_memory_bytes"))));
        sb.append(t);
        List<?> disks = (List<?>) m.get("disks");
        if (disks != null && !disks.isEmpty()) {
            TextTable d = new TextTable(List.of("DISK", "READ", "WRITTEN", "READS", "WRITES", "NORMALIZED IOS", "AVG IOPS"));
            for (Object o : disks) {
                Map<?, ?> x = (Map<?, ?>) o;
                d.row(List.of(x.get("disk"), bytes(num(x, "read_bytes")), bytes(num(x, "write_bytes")), x.get("reads"),
                    x.get("writes"), x.get("normalized_ios"), x.get("average_normalized_iops")));
            }
            sb.append('\n').append(d);
        }
        List<?> nics = (List<?>) m.get("nics");
        if (nics != null && !nics.isEmpty()) {
            TextTable n = new TextTable(List.of("SWITCH", "NIC", "IN", "OUT"));
            for (Object o : nics) {
                Map<?, ?> x = (Map<?, ?>) o;
                n.row(List.of(x.get("switch"), x.get("nic"), bytes(num(x, "bytes_in")), bytes(num(x, "bytes_out"))));
            }
            sb.append('\n').append(n);
        }
        return sb.toString();
    }

    private static double num(Map<?, ?> m, String k) {
        return m.get(k) instanceof Number n ? n.doubleValue() : 0;
    }

    /** 1536 -> "1.5 KiB". */
    static String bytes(double b) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        int i = 0;
        while (b >= 1024 && i < units.length - 1) {
            b /= 1024;
            i++;
        }
        return i == 0 ? String.format(java.util.Locale.ROOT, "%.0f B", b) : String.format(java.util.Locale.ROOT, "%.1f %s", b, units[i]);
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
