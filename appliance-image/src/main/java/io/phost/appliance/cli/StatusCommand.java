package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.run.RuntimeDir;
import io.phost.appliance.util.Human;
import io.phost.core.text.Json;
import io.phost.appliance.util.TextTable;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "status", description = {
    "Ask a running host for its status over the management endpoint.",
    "Without --host it asks the host started on this machine (its address is kept in /run/phost/endpoint).",
    "Exit code 3 when a partition is CRASHED or FAULTED."})
public final class StatusCommand implements Callable<Integer> {
    @Mixin
    EndpointOptions endpoint;

    @Option(names = "--json", description = "Print the JSON document (for programs; the table shows human units).")
    boolean json;

    @Override
    public Integer call() throws IOException {
        HttpResponse r = endpoint.get("/v1/status");
        if (r.status() != 200) {
            throw new UserException("status: " + endpoint.describe() + " answered " + r.status() + ": " + r.bodyText().strip());
        }
        Object doc = Json.parse(r.bodyText());
        if (json) {
            System.out.print(r.bodyText());
        } else {
            System.out.print(render(doc) + guests(doc));
        }
        List<String> down = troubled(doc);
        if (!down.isEmpty()) {
            System.err.println("phost: partitions crashed or faulted: " + String.join(", ", down));
            return EXIT_PARTITION_DOWN;
        }
        return 0;
    }

    /** Exit code when the host runs but a partition is CRASHED or FAULTED (monitoring can alert on it). */
    static final int EXIT_PARTITION_DOWN = 3;

    /** "name (STATE: reason)" of every CRASHED or FAULTED partition in a /status document. */
    static List<String> troubled(Object doc) {
        List<String> out = new java.util.ArrayList<>();
        if (doc instanceof Map<?, ?> m && m.get("partitions") instanceof List<?> parts) {
            for (Object o : parts) {
                if (o instanceof Map<?, ?> p && ("crashed".equalsIgnoreCase(String.valueOf(p.get("state"))) || "faulted".equalsIgnoreCase(String.valueOf(p.get("state"))))) {
                    out.add(p.get("name") + " (" + p.get("state") + ": " + p.get("reason") + ")");
                }
            }
        }
        return out;
    }

    /**
     * The VMs' integration services as a table (the details column of the partitions table is JSON): heartbeat,
     * and what the guest agent says about the guest. "" when no partition has a guest agent channel.
     */
    static String guests(Object doc) {
        List<Object> rows = new java.util.ArrayList<>();
        if (doc instanceof Map<?, ?> m && m.get("partitions") instanceof List<?> parts) {
            for (Object o : parts) {
                if (o instanceof Map<?, ?> p && p.get("details") instanceof Map<?, ?> d && d.get("heartbeat") != null) {
                    Map<String, Object> row = new java.util.LinkedHashMap<>();
                    row.put("partition", p.get("name"));
                    row.put("heartbeat", d.get("heartbeat"));
                    row.put("os", d.get("guest_os"));
                    row.put("hostname", d.get("guest_hostname"));
                    row.put("addresses", d.get("guest_addresses"));
                    rows.add(row);
                }
            }
        }
        return rows.isEmpty() ? "" : "\nguests (qemu-guest-agent):\n" + TextTable.of(rows).toString().indent(2);
    }

    /** Renders /status for people: scalars as "key: value", lists of objects as tables. */
    static String render(Object doc) {
        StringBuilder sb = new StringBuilder();
        if (!(doc instanceof Map<?, ?> m)) {
            return Json.pretty(doc);
        }
        for (Map.Entry<?, ?> e : m.entrySet()) {
            if (!(e.getValue() instanceof Map<?, ?>) && !(e.getValue() instanceof List<?>)) {
                sb.append(e.getKey()).append(": ").append(e.getValue()).append('\n');
            }
        }
        for (Map.Entry<?, ?> e : m.entrySet()) {
            Object v = e.getValue();
            if (v instanceof List<?> l && !l.isEmpty() && l.stream().noneMatch(x -> x instanceof Map<?, ?>)) {
                // a list of plain values (e.g. privileges.features_off): one per line
                sb.append('\n').append(e.getKey()).append(":\n");
                l.forEach(x -> sb.append("  - ").append(x).append('\n'));
            } else if (v instanceof List<?> l) {
                sb.append('\n').append(e.getKey()).append(":\n").append(l.isEmpty() ? "  (none)\n" : TextTable.of(Human.rows(l)).toString().indent(2));
            } else if (v instanceof Map<?, ?> sub) {
                sb.append('\n').append(e.getKey()).append(":\n").append(render(sub).indent(2));
            }
        }
        return sb.toString();
    }

    /** --host/--token-file shared by commands that talk to a running host. */
    public static final class EndpointOptions {
        @Option(names = "--host", paramLabel = "ADDRESS",
            description = "unix:/path/phost.sock or tcp://HOST:PORT (default: the host running on this machine).")
        String host;

        @Option(names = "--token-file", paramLabel = "FILE", description = "File holding the bearer token for a TCP endpoint.")
        Path tokenFile;

        public ManagementClient client() throws IOException {
            String address = host;
            Path token = tokenFile;
            if (address == null) {
                Path f = RuntimeDir.endpointFile();
                if (!Files.exists(f)) {
                    throw new UserException("no running phost found (" + f + " is missing); start one with `phost run` or pass --host");
                }
                List<String> lines = Files.readAllLines(f);
                address = lines.getFirst().strip();
                if (token == null && lines.size() > 1 && !lines.get(1).isBlank()) {
                    token = Path.of(lines.get(1).strip());
                }
            }
            ManagementAddress a;
            try {
                a = ManagementAddress.parse(address);
            } catch (IllegalArgumentException e) {
                throw new UserException(e.getMessage(), 2);
            }
            String t = token == null ? System.getenv("PHOST_TOKEN") : Files.readString(token).strip();
            if (!a.isUnix() && t == null) {
                throw new UserException("a TCP endpoint needs --token-file FILE (or PHOST_TOKEN)", 2);
            }
            return new ManagementClient(a, t);
        }

        /** GETs {@code target}, turning an unreachable host into a one-line user error. */
        public HttpResponse get(String target) throws IOException {
            return call(target, false);
        }

        public HttpResponse post(String target) throws IOException {
            return call(target, true);
        }

        /** POSTs {@code body} to {@code target}. */
        public HttpResponse post(String target, byte[] body) throws IOException {
            ManagementClient c = client();
            try {
                return c.post(target, body);
            } catch (IOException e) {
                throw new UserException("cannot reach phost at " + c.address() + ": " + e.getMessage());
            }
        }

        private HttpResponse call(String target, boolean post) throws IOException {
            ManagementClient c = client();
            try {
                return post ? c.post(target) : c.get(target);
            } catch (IOException e) {
                throw new UserException("cannot reach phost at " + c.address() + ": " + e.getMessage());
            }
        }

        public String describe() {
            return host == null ? "the local host" : host;
        }
    }
}
