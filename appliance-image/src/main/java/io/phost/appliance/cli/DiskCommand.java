package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.appliance.vhd.Sizes;
import io.phost.core.text.Json;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code phost disk ...}: the configured disks of a running host. */
@Command(mixinStandardHelpOptions = true, name = "disk", description = "The disks of a running host.",
    subcommands = {DiskCommand.Resize.class})
public final class DiskCommand {

    @Command(mixinStandardHelpOptions = true, name = "resize",
        description = "Grow a disk while its partition runs (as Resize-VHD on an attached disk): the image grows and the guest "
            + "sees the new capacity (vhost-user-blk: a config change; SCSI: a unit attention). Grow only.")
    static final class Resize implements Callable<Integer> {
        @Mixin
        StatusCommand.EndpointOptions endpoint;

        @Parameters(index = "0", paramLabel = "DISK", description = "The [[disk]] name.")
        String disk;

        @Parameters(index = "1", paramLabel = "SIZE", description = "The new size (20GiB) or a growth (+1GiB).")
        String size;

        @Option(names = "--json", description = "Print the raw JSON.")
        boolean json;

        @Override
        public Integer call() throws IOException {
            Map<String, Object> q = new LinkedHashMap<>();
            q.put("name", disk);
            q.put("size", size);
            HttpResponse r = endpoint.post("/v1/disks/resize?" + Query.encode(q));
            if (r.status() >= 400 && r.status() < 500) {
                Object m = Json.parse(r.bodyText()) instanceof Map<?, ?> body ? body.get("error") : r.bodyText();
                throw new UserException("disk resize: " + String.valueOf(m).strip(), r.status() == 409 ? 1 : 2);
            }
            QosCommand.ok(r);
            if (json) {
                System.out.println(r.bodyText().strip());
                return 0;
            }
            Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
            long now = ((Number) m.get("size")).longValue();
            if (!Boolean.TRUE.equals(m.get("changed"))) {
                System.out.println("disk " + disk + " is already " + Sizes.human(now) + " (" + now + " bytes)");
                return 0;
            }
            System.out.println("resized disk " + disk + " to " + Sizes.human(now) + " (" + now + " bytes)"
                + ("".equals(m.get("partition")) ? "" : "; partition " + m.get("partition") + " (" + m.get("transport") + ") "
                + (Boolean.TRUE.equals(m.get("guest_notified")) ? "notified" : "sees it on its next command or config read")));
            return 0;
        }
    }
}
