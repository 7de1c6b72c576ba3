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
            String svg = ratioChart("Ratio to peer (higher is better; line = parity)", compared);
            charts.add(svg);
            chartFiles.add(save(dir, "ratios.svg", svg));
        }
        int i = 0;
        for (BenchResult r : results) {
            if (!r.series().isEmpty()) {
                String svg = seriesChart(r.name() + " (" + r.unit() + ")", r.series());
                charts.add(svg);
                chartFiles.add(save(dir, "series-" + (i++) + ".svg", svg));
            }
        }
        StringBuilder md = new StringBuilder();
        md.append("# phost bench ").append(suite).append("\n\n");
        md.append("Machine: ").append(machine).append("\n\n");
        md.append("| benchmark | ours | unit | peer | peer value | ratio |\n|---|---:|---|---|---:|---:|\n");
        for (BenchResult r : results) {
            md.append("| ").append(r.name()).append(" | ").append(fmt(r.value())).append(" | ").append(r.unit())
                .append(" | ").append(r.peer() == null ? "-" : r.peer()).append(" | ").append(fmt(r.peerValue()))
                .append(" | ").append(Double.isNaN(r.ratio()) ? "-" : String.format("%.3fx", r.ratio())).append(" |\n");
        }
        md.append('\n');
        for (String f : chartFiles) {
            md.append("![").append(f).append("](").append(f).append(")\n\n");
        }
        Files.writeString(dir.resolve("report.md"), md);

        StringBuilder html = new StringBuilder();
        html.append("<!doctype html><html><head><meta charset=\"utf-8\"><title>phost bench ").append(esc(suite))
            .append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
                + "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}td.n{text-align:right}"
                + ".good{color:#186a3b}.bad{color:#a93226}</style></head><body>");
        html.append("<h1>phost bench ").append(esc(suite)).append("</h1><p>").append(esc(machine.toString())).append("</p>");
        html.append("<table><tr><th>benchmark</th><th>ours</th><th>unit</th><th>peer</th><th>peer value</th><th>ratio</th></tr>");
        for (BenchResult r : results) {
            String cls = Double.isNaN(r.ratio()) ? "" : r.ratio() >= 1 ? "good" : "bad";
            html.append("<tr><td>").append(esc(r.name())).append("</td><td class=n>").append(fmt(r.value()))
                .append("</td><td>").append(esc(r.unit())).append("</td><td>").append(esc(r.peer() == null ? "-" : r.peer()))
                .append("</td><td class=n>").append(fmt(r.peerValue())).append("</td><td class=\"n ").append(cls).append("\">")
                .append(Double.isNaN(r.ratio()) ? "-" : String.format("%.3fx", r.ratio())).append("</td></tr>");
        }
        html.append("</table>");
        for (String svg : charts) {
            html.append("<div>").append(svg).append("</div>");
        }
        html.append("</body></html>\n");
        Files.writeString(dir.resolve("report.html"), html);
    }

    private static String save(Path dir, String name, String svg) throws IOException {
        Files.writeString(dir.resolve(name), svg);
        return name;
    }

    static String ratioChart(String title, List<BenchResult> results) {
        int rowH = 22;
        int labelW = 330;
        int barW = 520;
        int h = 40 + rowH * results.size() + 20;
        double max = Math.max(1.25, results.stream().mapToDouble(BenchResult::ratio).max().orElse(1) * 1.1);
        StringBuilder s = svgHead(labelW + barW + 80, h, title);
        double parityX = labelW + barW / max;
        for (int i = 0; i < results.size(); i++) {
            BenchResult r = results.get(i);
            int y = 34 + i * rowH;
            double w = barW * Math.min(r.ratio(), max) / max;
            String color = r.ratio() >= 1 ? "#2e86c1" : "#e67e22";
            s.append(String.format("<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">%s</text>", labelW - 6, y + 14, esc(r.name())));
            s.append(String.format("<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"16\" fill=\"%s\"/>", labelW, y + 2, w, color));
            s.append(String.format("<text x=\"%.1f\" y=\"%d\" font-size=\"11\">%.2fx</text>", labelW + w + 4, y + 14, r.ratio()));
        }
        s.append(String.format("<line x1=\"%.1f\" y1=\"28\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>", parityX, parityX, h - 10));
        return s.append("</svg>").toString();
    }

    static String seriesChart(String title, Map<String, Double> series) {
        int w = 640;
        int h = 300;
        int left = 70;
        int bottom = 40;
        double max = series.values().stream().mapToDouble(Double::doubleValue).max().orElse(1);
        max = max <= 0 ? 1 : max * 1.1;
        StringBuilder s = svgHead(w, h, title);
        int n = series.size();
        double slot = (w - left - 20.0) / n;
        int i = 0;
        for (Map.Entry<String, Double> e : series.entrySet()) {
            double bh = (h - bottom - 40) * e.getValue() / max;
            double x = left + i * slot + slot * 0.15;
            double y = h - bottom - bh;
            s.append(String.format("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#2e86c1\"/>", x, y, slot * 0.7, bh));
            s.append(String.format("<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%s</text>", x + slot * 0.35, y - 3, fmt(e.getValue())));
            s.append(String.format("<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>", x + slot * 0.35, h - bottom + 16, esc(e.getKey())));
            i++;
        }
        s.append(String.format("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", left, h - bottom, w - 10, h - bottom));
        return s.append("</svg>").toString();
    }

    private static StringBuilder svgHead(int w, int h, String title) {
        return new StringBuilder(String.format(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">"
                + "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/><text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">%s</text>",
            w, h, w, h, esc(title)));
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
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
