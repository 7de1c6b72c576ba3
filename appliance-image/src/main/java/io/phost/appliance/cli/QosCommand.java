package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Human;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;
import io.phost.appliance.util.TextTable;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "qos", description = "Storage QoS on a running host: flows, policies, live policy changes.",
    subcommands = {QosCommand.Flows.class, QosCommand.Policies.class, QosCommand.SetPolicy.class})
public final class QosCommand {

    @Command(name = "flows", description = "Show the QoS flows (partition x disk), as Get-StorageQosFlow does.")
    static final class Flows implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        @Override
        public Integer call() throws IOException {
            HttpResponse r = ok(endpoint.get("/v1/qos/flows"));
            if (json) {
                System.out.print(r.bodyText());
                return 0;
            }
            List<Object> rows = new ArrayList<>();
            for (Object o : (List<?>) Json.parse(r.bodyText())) {
                Map<?, ?> f = (Map<?, ?>) o;
                Map<String, Object> row = new LinkedHashMap<>();
                // Get-StorageQosFlow's columns, in human units, within 120 columns
                row.put("Initiator", f.get("partition"));
                row.put("Disk", f.get("disk"));
                row.put("Policy", f.get("policy"));
                row.put("Status", f.get("status"));
                row.put("MinIOPS", Human.count(num(f.get("minimum_iops"))));
                row.put("MaxIOPS", num(f.get("maximum_iops")) == 0 ? "-" : Human.count(num(f.get("maximum_iops"))));
                row.put("IOPS", Human.count(num(f.get("initiator_iops"))));
                row.put("Latency", Human.micros(num(f.get("initiator_latency_micros"))));
                row.put("Bandwidth", Human.bytesPerSecond(num(f.get("initiator_bandwidth"))));
                rows.add(row);
            }
            System.out.print(rows.isEmpty() ? "no flows\n" : TextTable.of(rows).toString());
            return 0;
        }
    }

    @Command(name = "policies", description = "Show the QoS policies in force.")
    static final class Policies implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Option(names = "--json", description = "Print the JSON (for programs; the table shows human units).")
        boolean json;

        @Override
        public Integer call() throws IOException {
            List<?> l = (List<?>) Json.parse(ok(endpoint.get("/v1/qos/policies")).bodyText());
            if (json) {
                System.out.print(Json.pretty(l));
                return 0;
            }
            System.out.print(l.isEmpty() ? "no policies\n" : TextTable.of(Human.rows(l)).toString());
            return 0;
        }
    }

    @Command(name = "set-policy", description = {
        "Create or change a policy on the running host; live flows follow within a second.",
        "Unset options keep the policy's current values. The change is saved with the running config (DATA_DIR/applied.toml)."})
    static final class SetPolicy implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "NAME")
        String name;

        @Option(names = "--type", description = "dedicated or aggregated")
        String type;

        @Option(names = "--min-iops", paramLabel = "N", description = "Reservation in normalized IOPS.")
        String minIops;

        @Option(names = "--max-iops", paramLabel = "N", description = "Limit in normalized IOPS (0 = none).")
        String maxIops;

        @Option(names = "--max-bandwidth", paramLabel = "RATE",
            description = "Bandwidth limit as in appliance.toml: 100MB/s (bytes/s), 1Gbps (bits/s), or bytes/s (0 = none).")
        String maxBandwidth;

        @Option(names = "--normalization-size", paramLabel = "SIZE",
            description = "I/O size counted as one normalized I/O: a power of two, 512..1MiB (8KiB).")
        String normalizationSize;

        @Option(names = "--weight", paramLabel = "N", description = "Share of spare capacity (1..10000; default 100).")
        String weight;

        @Override
        public Integer call() throws IOException {
            // Values go to the host as typed: it checks them exactly as the config file's [[qos_policy]].
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("name", name);
            q.put("type", type);
            q.put("min_iops", minIops);
            q.put("max_iops", maxIops);
            q.put("max_bandwidth", maxBandwidth);
            q.put("normalization_size", normalizationSize);
            q.put("weight", weight);
            HttpResponse r = endpoint.post("/v1/qos/policies?" + Query.encode(q));
            if (r.status() == 400 || r.status() == 409) {
                Object err = r.contentType().startsWith("application/json")
                    ? ((Map<?, ?>) Json.parse(r.bodyText())).get("error") : r.bodyText().strip();
                throw new UserException("set-policy " + name + ": " + err, 2);
            }
            System.out.print(ok(r).bodyText());
            return 0;
        }
    }

    private static double num(Object o) {
        return o instanceof Number n ? n.doubleValue() : 0;
    }

    static HttpResponse ok(HttpResponse r) {
        if (r.status() != 200) {
            throw new UserException("host answered " + r.status() + ": " + r.bodyText().strip());
        }
        return r;
    }
}
