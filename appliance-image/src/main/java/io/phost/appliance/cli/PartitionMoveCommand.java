package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.core.text.Json;
import java.io.IOException;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code phost partition move NAME --to PEER}: Quick Migration to a {@code [[peer]]} appliance (docs/cluster.md). */
@Command(mixinStandardHelpOptions = true, name = "move", description = "Quick Migration: stop the partition here, "
    + "release its RBD disks and start it on the peer appliance (a [[peer]] of this host's config); a peer without "
    + "the partition gets its [[partition]] and [[disk]] tables (applied live there, dropped here), and its NICs "
    + "announce themselves there (a RARP each). A VM is shut down here and boots there, or with --live migrates "
    + "running (QEMU's migration to an incoming QEMU on the peer). Refused when a disk is not on RBD, or when the "
    + "peer does not answer or cannot take the definition.")
final class PartitionMoveCommand implements Callable<Integer> {
    @Mixin
    StatusCommand.EndpointOptions endpoint;

    @Parameters(index = "0", paramLabel = "NAME", description = "The partition.")
    String name;

    @Option(names = "--to", required = true, paramLabel = "PEER", description = "The [[peer]] name to move it to.")
    String to;

    @Option(names = "--live", description = "Live migration of a running VM partition (the peer must not have "
        + "a partition of that name): the guest keeps running, paused only for QEMU's switch-over.")
    boolean live;

    @Option(names = "--json", description = "Print the raw JSON.")
    boolean json;

    @Override
    public Integer call() throws IOException {
        HttpResponse r = endpoint.post("/v1/partitions/move?" + Query.encode(live
            ? Map.of("name", name, "to", to, "live", "true") : Map.of("name", name, "to", to)));
        if (r.status() != 200) {
            throw new UserException(r.bodyText().strip(), r.status() == 404 || r.status() == 400 ? 2 : 1);
        }
        if (json) {
            System.out.print(r.bodyText());
            return 0;
        }
        Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
        if ("live".equals(m.get("mode"))) {
            System.out.println("migrated " + m.get("partition") + " live from " + m.get("from") + " to " + m.get("to")
                + " in " + m.get("total_ms") + " ms (downtime " + m.get("migration_downtime_ms") + " ms, "
                + m.get("migration_ram_bytes") + " bytes of RAM sent)");
            return 0;
        }
        System.out.println("moved " + m.get("partition") + " from " + m.get("from") + " to " + m.get("to") + " in "
            + m.get("total_ms") + " ms (stop " + m.get("stop_ms") + " ms, start " + m.get("start_ms") + " ms)"
            + (String.valueOf(m.get("definition")).startsWith("handed over") ? "; definition " + m.get("definition") : "")
            + (m.get("nics_announced") instanceof Number n && n.intValue() > 0 ? "; " + n + " NIC(s) announced" : ""));
        return 0;
    }
}
