package io.phost.qos;

import java.util.List;
import java.util.Locale;

/**
 * Renders flow snapshots for the three places operators look: {@code phost qos flows} (a table shaped like
 * {@code Get-StorageQosFlow}), {@code /metrics} (Prometheus text format 0.0.4) and {@code GET /qos/flows} (JSON).
 */
public final class QosReports {
    private QosReports() {
    }

    /**
     * A fixed-width table:
     * <pre>
     * Partition  Disk            Policy   Status                 InitiatorIOPS  Latency(ms)  Bandwidth(MB/s)  MinimumIops  MaximumIops
     * vm1        /data/d0.vhdx   gold     Ok                              1200        0.310             9.83          500         2000
     * </pre>
     */
    public static String table(List<QosFlowSnapshot> flows) {
        String[] head = {"Partition", "Disk", "Policy", "Status", "InitiatorIOPS", "Latency(ms)", "Bandwidth(MB/s)",
            "MinimumIops", "MaximumIops"};
        String[][] rows = new String[flows.size()][];
        for (int i = 0; i < rows.length; i++) {
            QosFlowSnapshot f = flows.get(i);
            rows[i] = new String[] {f.partition(), f.disk(), f.policy() == null ? "-" : f.policy(), f.status().name(),
                String.format(Locale.ROOT, "%.0f", f.initiatorIops()),
                String.format(Locale.ROOT, "%.3f", f.initiatorLatencyMicros() / 1000.0),
                String.format(Locale.ROOT, "%.2f", f.initiatorBandwidth() / 1e6),
                Long.toString(f.minimumIops()), f.maximumIops() == 0 ? "unlimited" : Long.toString(f.maximumIops())};
        }
        int[] width = new int[head.length];
        for (int c = 0; c < head.length; c++) {
            width[c] = head[c].length();
            for (String[] r : rows) {
                width[c] = Math.max(width[c], r[c].length());
            }
        }
        StringBuilder sb = new StringBuilder();
        appendRow(sb, head, width);
        for (String[] r : rows) {
            appendRow(sb, r, width);
        }
        return sb.toString();
    }

    private static void appendRow(StringBuilder sb, String[] cells, int[] width) {
        for (int c = 0; c < cells.length; c++) {
            boolean numeric = c >= 4;
            String cell = cells[c];
            if (numeric) {
                sb.append(" ".repeat(width[c] - cell.length())).append(cell);
            } else {
                sb.append(cell).append(" ".repeat(width[c] - cell.length()));
            }
            sb.append(c == cells.length - 1 ? "\n" : "  ");
        }
    }

    /** Prometheus text exposition of flows and devices (metric names prefixed {@code phost_qos_}). */
    public static String prometheus(List<QosFlowSnapshot> flows, List<QosDeviceSnapshot> devices, long alertsTotal) {
        StringBuilder sb = new StringBuilder();
        gauge(sb, "phost_qos_flow_iops", "Normalized IOPS completed over the rolling window", flows, QosFlowSnapshot::initiatorIops);
        gauge(sb, "phost_qos_flow_latency_seconds", "Average completion latency over the rolling window", flows,
            f -> f.initiatorLatencyMicros() / 1e6);
        gauge(sb, "phost_qos_flow_bandwidth_bytes_per_second", "Bytes per second completed over the rolling window", flows,
            QosFlowSnapshot::initiatorBandwidth);
        gauge(sb, "phost_qos_flow_minimum_iops", "Reservation in normalized IOPS (0 = none)", flows, f -> f.minimumIops());
        gauge(sb, "phost_qos_flow_maximum_iops", "Limit in normalized IOPS (0 = unlimited)", flows, f -> f.maximumIops());
        gauge(sb, "phost_qos_flow_outstanding", "I/Os admitted and not yet completed", flows, f -> f.outstanding());
        sb.append("# HELP phost_qos_flow_status 1 for the flow's current status\n# TYPE phost_qos_flow_status gauge\n");
        for (QosFlowSnapshot f : flows) {
            for (QosFlowStatus s : QosFlowStatus.values()) {
                sb.append("phost_qos_flow_status{").append(labels(f)).append(",status=\"").append(s.name()).append("\"} ")
                    .append(f.status() == s ? 1 : 0).append('\n');
            }
        }
        sb.append("# HELP phost_qos_device_capacity_iops Estimated normalized IOPS of the backing device\n")
            .append("# TYPE phost_qos_device_capacity_iops gauge\n");
        for (QosDeviceSnapshot d : devices) {
            sb.append("phost_qos_device_capacity_iops{device=\"").append(escape(d.id())).append("\"} ")
                .append(num(d.capacityIops())).append('\n');
        }
        sb.append("# HELP phost_qos_device_reserved_iops Sum of the minimums of active flows\n")
            .append("# TYPE phost_qos_device_reserved_iops gauge\n");
        for (QosDeviceSnapshot d : devices) {
            sb.append("phost_qos_device_reserved_iops{device=\"").append(escape(d.id())).append("\"} ")
                .append(num(d.reservedIops())).append('\n');
        }
        sb.append("# HELP phost_qos_alerts_total Alerts raised since start\n# TYPE phost_qos_alerts_total counter\n")
            .append("phost_qos_alerts_total ").append(alertsTotal).append('\n');
        return sb.toString();
    }

    private interface Metric {
        double value(QosFlowSnapshot f);
    }

    private static void gauge(StringBuilder sb, String name, String help, List<QosFlowSnapshot> flows, Metric m) {
        sb.append("# HELP ").append(name).append(' ').append(help).append('\n');
        sb.append("# TYPE ").append(name).append(" gauge\n");
        for (QosFlowSnapshot f : flows) {
            sb.append(name).append('{').append(labels(f)).append("} ").append(num(m.value(f))).append('\n');
        }
    }

    private static String labels(QosFlowSnapshot f) {
        return "partition=\"" + escape(f.partition()) + "\",disk=\"" + escape(f.disk()) + "\",policy=\""
            + escape(f.policy() == null ? "" : f.policy()) + "\"";
    }

    private static String escape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    private static String num(double v) {
        if (Double.isNaN(v) || Double.isInfinite(v)) {
            return "NaN";
        }
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : String.format(Locale.ROOT, "%.6g", v);
    }

    /** JSON for {@code GET /qos/flows}: {@code {"flows":[{...}],"alerts":[{...}]}}. */
    public static String json(List<QosFlowSnapshot> flows, List<QosAlert> alerts) {
        StringBuilder sb = new StringBuilder("{\"flows\":[");
        for (int i = 0; i < flows.size(); i++) {
            QosFlowSnapshot f = flows.get(i);
            if (i > 0) {
                sb.append(',');
            }
            sb.append("{\"partition\":").append(str(f.partition()))
                .append(",\"disk\":").append(str(f.disk()))
                .append(",\"device\":").append(str(f.device()))
                .append(",\"policy\":").append(f.policy() == null ? "null" : str(f.policy()))
                .append(",\"status\":").append(str(f.status().name()))
                .append(",\"initiatorIops\":").append(num(f.initiatorIops()))
                .append(",\"initiatorRawIops\":").append(num(f.initiatorRawIops()))
                .append(",\"initiatorLatencyMicros\":").append(num(f.initiatorLatencyMicros()))
                .append(",\"initiatorBandwidthBytesPerSec\":").append(num(f.initiatorBandwidth()))
                .append(",\"minimumIops\":").append(f.minimumIops())
                .append(",\"maximumIops\":").append(f.maximumIops())
                .append(",\"maximumBandwidthBytesPerSec\":").append(f.maximumBandwidth())
                .append(",\"outstanding\":").append(f.outstanding())
                .append(",\"allocatedIops\":").append(num(f.allocatedIops()))
                .append('}');
        }
        sb.append("],\"alerts\":[");
        for (int i = 0; i < alerts.size(); i++) {
            QosAlert a = alerts.get(i);
            if (i > 0) {
                sb.append(',');
            }
            sb.append("{\"time\":").append(str(a.time().toString()))
                .append(",\"partition\":").append(str(a.partition()))
                .append(",\"disk\":").append(str(a.disk()))
                .append(",\"policy\":").append(a.policy() == null ? "null" : str(a.policy()))
                .append(",\"status\":").append(str(a.status().name()))
                .append(",\"message\":").append(str(a.message() == null ? "" : a.message()))
                .append('}');
        }
        return sb.append("]}").toString();
    }

    private static String str(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20) {
                        sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        return sb.append('"').toString();
    }
}
