package io.phost.appliance.run;

import io.phost.appliance.util.Human;
import io.phost.appliance.util.TextTable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The live view's text: the few columns a person watches (partition state, IOPS, packets) rather than the
 * whole /status document, which {@code phost status --json} still gives. Numbers are in human units, and
 * both latencies are shown the same way: the storage p99 (since start, per disk) and the QoS flow's mean over
 * the last second (queueing in QoS included), so they can be read side by side. The NBD URIs stay on screen.
 */
public final class Dashboard {
    private Dashboard() {}

    public static String render(Map<String, Object> status) {
        StringBuilder sb = new StringBuilder();
        sb.append(status.get("name")).append("  state=").append(status.get("state"))
            .append("  uptime=").append(status.get("uptime_seconds")).append("s\n");
        section(sb, "partitions", status.get("partitions"), "name", "kind", "state", "pid", "channels", "fault_count", "reason");
        section(sb, "storage", status.get("storage"), "partition", "disk", "lun", "read_iops", "write_iops",
            "read_mib_s", "write_mib_s", "p99_us", "errors");
        // p99_us is since start; the qos section's latency is the last second's mean
        section(sb, "vm disks (vhost-user-blk)", status.get("vm_disks"), "partition", "disk", "connected", "queues", "reads",
            "writes", "errors");
        section(sb, "switch ports", status.get("switches"), "switch", "port", "rx_packets", "tx_packets", "rx_pps", "tx_pps", "drops");
        Object qos = status.get("qos");
        if (qos instanceof Map<?, ?> q) {
            section(sb, "qos flows (latency: mean over the last second)", q.get("flows"), "partition", "disk", "policy",
                "status", "initiator_iops", "initiator_latency_micros", "maximum_iops");
        }
        section(sb, "nbd exports", status.get("nbd") instanceof Map<?, ?> nbd ? nbd.get("exports") : null, "export", "uri", "read_only", "reads", "writes", "errors");
        return sb.toString();
    }

    private static void section(StringBuilder sb, String title, Object rows, String... columns) {
        if (!(rows instanceof List<?> list) || list.isEmpty()) {
            return;
        }
        List<Object> picked = new ArrayList<>();
        for (Object o : list) {
            if (o instanceof Map<?, ?> m) {
                Map<String, Object> r = new LinkedHashMap<>();
                for (String c : columns) {
                    if (m.containsKey(c)) {
                        r.put(c, m.get(c));
                    }
                }
                picked.add(r);
            }
        }
        sb.append('\n').append(title).append(":\n").append(TextTable.of(Human.rows(picked)).toString().indent(2));
    }
}
