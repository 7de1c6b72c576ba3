package io.phost.appliance.bench;

import io.phost.appliance.util.TextTable;
import io.phost.perf.BenchResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Turns results into what a person would rather look at than read: a table for the terminal, and for
 * {@code --report DIR} a Markdown page and a self-contained HTML page with SVG charts: one chart of the
 * ratios against each peer (1.0 = parity), and one per result that carries a series (IOPS by queue
 * depth, latency percentiles).
 */
public final class BenchReport {
    private BenchReport() {}

    public static String table(List<BenchResult> results) {
        TextTable t = new TextTable(List.of("benchmark", "ours", "unit", "peer", "peer value", "ratio"));
        for (BenchResult r : results) {
            t.row(List.of(r.name(), r.value(), r.unit(), r.peer() == null ? "-" : r.peer(),
                r.peerValue(), Double.isNaN(r.ratio()) ? "-" : String.format("%.3fx", r.ratio())));
        }
        return t.toString();
    }

    /** Writes DIR/report.md, DIR/report.html and the charts as DIR/*.svg. */
    public static void write(Path dir, String suite, Map<String, Object> machine, List<BenchResult> results) throws IOException {
        Files.createDirectories(dir);
        List<String> charts = new ArrayList<>();
        List<String> chartFiles = new ArrayList<>();
        List<BenchResult> compared = results.stream().filter(r -> !Double.isNaN(r.ratio())).toList();
        if (!compared.isEmpty()) {
            String svg = SvgCharts.ratioChart("Ratio to peer, best first", compared);
            charts.add(svg);
            chartFiles.add(save(dir, "ratios.svg", svg));
        }
        int i = 0;
        for (BenchResult r : results) {
            if (!r.series().isEmpty() && r.seriesUnit() != null) {
                String svg = SvgCharts.seriesChart(r.name(), r.seriesUnit(), r.series());
                charts.add(svg);
                chartFiles.add(save(dir, "series-" + (i++) + ".svg", svg));
            }
        }
        StringBuilder md = new StringBuilder();
        md.append("# phost bench ").append(suite).append("\n\n");
        Headline headline = Headline.of(results);
        md.append("Machine: ").append(MachineInfo.inWords(machine)).append("\n\n");
        if (headline != null) {
            md.append("**Headline: ").append(headline.summary()).append("** ").append(Headline.DEFINITION).append("\n\n");
        }
        md.append("| benchmark | ours | unit | peer | peer value | ratio |\n|---|---:|---|---|---:|---:|\n");
        for (BenchResult r : results) {
            md.append("| ").append(r.name()).append(" | ").append(fmt(r.value())).append(" | ").append(r.unit())
                .append(" | ").append(r.peer() == null ? "-" : r.peer()).append(" | ").append(fmt(r.peerValue()))
                .append(" | ").append(Double.isNaN(r.ratio()) ? "-" : String.format("%.3fx", r.ratio())).append(" |\n");
        }
        md.append('\n');
        List<String> details = details(results);
        if (!details.isEmpty()) {
            md.append("Details (numbers of mixed units, not charted):\n\n");
            details.forEach(d -> md.append("- ").append(d).append('\n'));
            md.append('\n');
        }
        for (String f : chartFiles) {
            md.append("![").append(f).append("](").append(f).append(")\n\n");
        }
        Files.writeString(dir.resolve("report.md"), md);

        StringBuilder html = new StringBuilder();
        html.append("<!doctype html><html><head><meta charset=\"utf-8\"><title>phost bench ").append(esc(suite))
            .append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
                + "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}td.n{text-align:right}"
                + ".good{color:#186a3b}.bad{color:#a93226}</style></head><body>");
        html.append("<h1>phost bench ").append(esc(suite)).append("</h1><p>Machine: ").append(esc(MachineInfo.inWords(machine))).append("</p>");
        if (headline != null) {
            html.append("<p><b>Headline: ").append(esc(headline.summary())).append("</b> ").append(esc(Headline.DEFINITION)).append("</p>");
        }
        html.append("<table><tr><th>benchmark</th><th>ours</th><th>unit</th><th>peer</th><th>peer value</th><th>ratio</th></tr>");
        for (BenchResult r : results) {
            String cls = Double.isNaN(r.ratio()) ? "" : r.ratio() >= 1 ? "good" : "bad";
            html.append("<tr><td>").append(esc(r.name())).append("</td><td class=n>").append(fmt(r.value()))
                .append("</td><td>").append(esc(r.unit())).append("</td><td>").append(esc(r.peer() == null ? "-" : r.peer()))
                .append("</td><td class=n>").append(fmt(r.peerValue())).append("</td><td class=\"n ").append(cls).append("\">")
                .append(Double.isNaN(r.ratio()) ? "-" : String.format("%.3fx", r.ratio())).append("</td></tr>");
        }
        html.append("</table>");
        if (!details.isEmpty()) {
            html.append("<p>Details (numbers of mixed units, not charted):</p><ul>");
            details.forEach(d -> html.append("<li>").append(esc(d)).append("</li>"));
            html.append("</ul>");
        }
        for (String svg : charts) {
            html.append("<div>").append(svg).append("</div>");
        }
        html.append("</body></html>\n");
        Files.writeString(dir.resolve("report.html"), html);
    }

    /** "name: key=value, ..." for each series that mixes units (sorted keys, 3 significant digits). */
    static List<String> details(List<BenchResult> results) {
        List<String> out = new ArrayList<>();
        for (BenchResult r : results) {
            if (!r.series().isEmpty() && r.seriesUnit() == null) {
                StringBuilder sb = new StringBuilder(r.name()).append(": ");
                r.series().entrySet().stream().sorted(Map.Entry.comparingByKey(SvgCharts::naturalCompare))
                    .forEach(e -> sb.append(e.getKey()).append('=').append(fmt(e.getValue())).append(", "));
                out.add(sb.substring(0, sb.length() - 2));
            }
        }
        return out;
    }

    private static String save(Path dir, String name, String svg) throws IOException {
        Files.writeString(dir.resolve(name), svg);
        return name;
    }

    private static String fmt(double v) {
        if (Double.isNaN(v)) {
            return "-";
        }
        if (v == Math.rint(v) && Math.abs(v) < 1e12) {
            return Long.toString((long) v);
        }
        return Math.abs(v) >= 100 ? String.format("%.0f", v) : String.format("%.3g", v);
    }

    private static String esc(String s) {
        return SvgCharts.esc(s);
    }
}
