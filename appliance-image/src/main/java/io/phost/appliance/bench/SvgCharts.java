package io.phost.appliance.bench;

import io.phost.perf.BenchResult;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The report's SVG charts, drawn so they can be read without the table: every chart has a value axis with
 * ticks and a title naming the unit, label columns are as wide as their longest label (estimated from the
 * font size, so labels never run into bars or each other), bars come in a stated order, and no bar has a
 * negative or NaN size (such values are drawn as zero-length and labelled "n/a").
 */
final class SvgCharts {
    /** Average advance of a sans-serif glyph as a fraction of the font size; generous for digits and capitals. */
    static final double CHAR_WIDTH_EM = 0.62;

    private SvgCharts() {}

    /** Horizontal bars of ours/peer, best first, with a dashed parity line at 1.0 and an x axis in "x". */
    static String ratioChart(String title, List<BenchResult> results) {
        List<BenchResult> rows = new ArrayList<>(results);
        rows.sort(Comparator.comparingDouble((BenchResult r) -> safe(r.ratio())).reversed());
        int rowH = 22;
        int fontSize = 12;
        int labelW = 12 + (int) Math.ceil(rows.stream().mapToInt(r -> r.name().length()).max().orElse(4) * fontSize * CHAR_WIDTH_EM);
        int barW = 480;
        int top = 40;
        int plotH = rowH * rows.size();
        int h = top + plotH + 52;
        int w = labelW + barW + 70;
        double[] ticks = ticks(Math.max(1.2, rows.stream().mapToDouble(r -> safe(r.ratio())).max().orElse(1) * 1.05));
        double max = ticks[ticks.length - 1];
        StringBuilder s = head(w, h, title);
        for (double t : ticks) {
            double x = labelW + barW * t / max;
            s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>", x, top, x, top + plotH));
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%sx</text>",
                x, top + plotH + 15, tick(t)));
        }
        for (int i = 0; i < rows.size(); i++) {
            BenchResult r = rows.get(i);
            int y = top + i * rowH;
            double ratio = safe(r.ratio());
            double bw = barW * Math.min(ratio, max) / max;
            String color = ratio >= 1 ? "#2e86c1" : "#e67e22";
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" font-size=\"%d\" text-anchor=\"end\">%s</text>",
                labelW - 6, y + 15, fontSize, esc(r.name())));
            s.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"16\" fill=\"%s\"/>", labelW, y + 3, bw, color));
            s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\">%s</text>", labelW + bw + 4, y + 15,
                ratio > 0 ? String.format(Locale.ROOT, "%.2fx", r.ratio()) : "n/a"));
        }
        double parityX = labelW + barW / max;
        s.append(String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>",
            parityX, top - 4, parityX, top + plotH));
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", labelW, top + plotH, labelW + barW, top + plotH));
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", labelW, top, labelW, top + plotH));
        s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%s</text>",
            labelW + barW / 2, top + plotH + 36, "ours / peer (x; latencies inverted; higher is better; dashed line = parity)"));
        return s.append("</svg>").toString();
    }

    /** Vertical bars of one result's series in natural key order (qd1, qd2, qd16; p50, p90, p99), y axis in {@code unit}. */
    static String seriesChart(String title, String unit, Map<String, Double> series) {
        List<Map.Entry<String, Double>> bars = new ArrayList<>(series.entrySet());
        bars.sort(Map.Entry.comparingByKey(SvgCharts::naturalCompare));
        int left = 78;
        int top = 36;
        int plotH = 220;
        int w = Math.max(480, left + 20 + bars.size() * 56);
        double slot = (w - left - 20.0) / Math.max(1, bars.size());
        int longest = bars.stream().mapToInt(e -> e.getKey().length()).max().orElse(1);
        boolean rotate = longest * 11 * CHAR_WIDTH_EM > slot - 4;
        int labelH = rotate ? (int) Math.ceil(longest * 11 * CHAR_WIDTH_EM * 0.71) + 14 : 16;
        int h = top + plotH + labelH + 34;
        double[] ticks = ticks(bars.stream().mapToDouble(e -> safe(e.getValue())).max().orElse(0) * 1.08);
        double max = ticks[ticks.length - 1];
        int base = top + plotH;
        StringBuilder s = head(w, h, title);
        for (double t : ticks) {
            double y = base - plotH * t / max;
            s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>", left, y, w - 10, y));
            s.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>", left - 5, y + 4, tick(t)));
        }
        boolean valueLabels = ticks.length > 0 && slot >= 11 * CHAR_WIDTH_EM * 6;
        for (int i = 0; i < bars.size(); i++) {
            Map.Entry<String, Double> e = bars.get(i);
            double v = safe(e.getValue());
            double bh = plotH * v / max;
            double x = left + i * slot + slot * 0.15;
            double cx = x + slot * 0.35;
            s.append(String.format(Locale.ROOT, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#2e86c1\"/>", x, base - bh, slot * 0.7, bh));
            if (valueLabels) {
                s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%s</text>",
                    cx, base - bh - 3, v > 0 || e.getValue() == 0 ? Human.compact(v) : "n/a"));
            }
            if (rotate) {
                s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"end\" transform=\"rotate(-45 %.1f %d)\">%s</text>",
                    cx, base + 14, cx, base + 14, esc(e.getKey())));
            } else {
                s.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>", cx, base + 14, esc(e.getKey())));
            }
        }
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", left, base, w - 10, base));
        s.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>", left, top, left, base));
        s.append(String.format(Locale.ROOT, "<text x=\"16\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">%s</text>",
            top + plotH / 2, top + plotH / 2, esc(unit)));
        return s.append("</svg>").toString();
    }

    /** Round tick values from 0 to at least {@code max}: steps of 1, 2 or 5 times a power of ten, 4 to 8 ticks. */
    static double[] ticks(double max) {
        if (!(max > 0)) {
            return new double[] {0, 1};
        }
        double raw = max / 5;
        double mag = Math.pow(10, Math.floor(Math.log10(raw)));
        double step = raw / mag <= 1 ? mag : raw / mag <= 2 ? 2 * mag : raw / mag <= 5 ? 5 * mag : 10 * mag;
        int n = (int) Math.ceil(max / step - 1e-9);
        double[] t = new double[n + 1];
        for (int i = 0; i <= n; i++) {
            t[i] = i * step;
        }
        return t;
    }

    /** Compares "qd16" after "qd2" and "p99.9" after "p99": digit runs compare as numbers. */
    static int naturalCompare(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            char ca = a.charAt(i);
            char cb = b.charAt(j);
            if (Character.isDigit(ca) && Character.isDigit(cb)) {
                int si = i;
                int sj = j;
                while (i < a.length() && (Character.isDigit(a.charAt(i)) || a.charAt(i) == '.')) {
                    i++;
                }
                while (j < b.length() && (Character.isDigit(b.charAt(j)) || b.charAt(j) == '.')) {
                    j++;
                }
                int c = Double.compare(number(a.substring(si, i)), number(b.substring(sj, j)));
                if (c != 0) {
                    return c;
                }
            } else {
                if (ca != cb) {
                    return Character.compare(ca, cb);
                }
                i++;
                j++;
            }
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    private static double number(String digits) {
        try {
            return Double.parseDouble(digits.endsWith(".") ? digits.substring(0, digits.length() - 1) : digits);
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    private static double safe(double v) {
        return Double.isNaN(v) || v < 0 || Double.isInfinite(v) ? 0 : v;
    }

    private static String tick(double t) {
        return Human.compact(t);
    }

    private static StringBuilder head(int w, int h, String title) {
        return new StringBuilder(String.format(Locale.ROOT,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">"
                + "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/><text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>",
            w, h, w, h, esc(title)));
    }

    static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }

    /** Short numbers for axes and bar tops: 0.5, 12, 4.9k, 1.2M. */
    static final class Human {
        private Human() {}

        static String compact(double v) {
            double a = Math.abs(v);
            if (a >= 1e9) {
                return trim(v / 1e9) + "G";
            }
            if (a >= 1e6) {
                return trim(v / 1e6) + "M";
            }
            if (a >= 1e4) {
                return trim(v / 1e3) + "k";
            }
            return trim(v);
        }

        private static String trim(double v) {
            String s = Math.abs(v) >= 100 ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.3g", v);
            if (s.contains(".") && !s.contains("e")) {
                s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
            }
            return s;
        }
    }
}
