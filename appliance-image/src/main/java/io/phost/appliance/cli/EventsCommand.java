package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

@Command(name = "events", description = {
    "Follow a running host's events: partition state changes, crashes, faults, restarts, heartbeat loss.",
    "Prints the host's backlog (its last 1024 events) first, then waits for new ones until interrupted.",
    "With --since SEQ it resumes after event SEQ (a gap the backlog no longer covers is reported)."})
public final class EventsCommand implements Callable<Integer> {
    /** How long one request waits for news (the API's limit is 30 s). */
    static final int WAIT_S = 25;

    @Mixin
    StatusCommand.EndpointOptions endpoint;

    @Option(names = "--json", description = "One JSON object per line, as GET /v1/events sends them.")
    boolean json;

    @Option(names = "--since", paramLabel = "SEQ", defaultValue = "0",
        description = "Print only events after number SEQ (default: the whole backlog).")
    long since;

    @Option(names = "--no-follow", description = "Print what the backlog holds and exit.")
    boolean noFollow;

    @Override
    public Integer call() throws IOException {
        if (since < 0) {
            throw new UserException("--since must be 0 or more, not " + since, 2);
        }
        long after = since;
        boolean first = true;
        while (first || !noFollow) {
            HttpResponse r = endpoint.get("/v1/events?since=" + after + "&wait_s=" + (noFollow ? 0 : WAIT_S));
            if (r.status() != 200) {
                throw new UserException("events: " + endpoint.describe() + " answered " + r.status() + ": " + r.bodyText().strip());
            }
            for (String line : r.bodyText().split("\n")) {
                if (line.isBlank()) {
                    continue;
                }
                Map<?, ?> e = (Map<?, ?>) Json.parse(line);
                if (e.get("seq") instanceof Number n && !"events_lost".equals(e.get("type"))) {
                    after = n.longValue();
                }
                System.out.println(json ? line : human(e));
            }
            System.out.flush();
            first = false;
        }
        return 0;
    }

    /** "2026-12-06T10:56:14Z  #12 crash        vm-life  QEMU exited with code 137". */
    static String human(Map<?, ?> e) {
        Object partition = e.get("partition");
        return String.format("%-24s #%-5s %-15s %-16s %s", e.get("time") == null ? "" : e.get("time"),
            e.get("seq") == null ? "?" : e.get("seq"), e.get("type"), partition == null ? "-" : partition, e.get("message"));
    }
}
