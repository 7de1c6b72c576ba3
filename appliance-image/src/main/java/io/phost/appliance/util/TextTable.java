package io.phost.appliance.util;

import io.phost.core.text.Json;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Renders rows as an aligned plain-text table (numbers right-aligned), for CLI output. */
public final class TextTable {
    private final List<String> headers;
    private final List<List<String>> rows = new ArrayList<>();

    public TextTable(List<String> headers) {
        this.headers = List.copyOf(headers);
    }

    public TextTable row(List<?> cells) {
        List<String> r = new ArrayList<>(headers.size());
        for (int i = 0; i < headers.size(); i++) {
            r.add(i < cells.size() ? cell(cells.get(i)) : "");
        }
        rows.add(r);
        return this;
    }

    static String cell(Object o) {
        if (o == null) {
            return "-";
        }
        if (o instanceof Double d) {
            if (d.isNaN()) {
                return "-";
            }
            if (d == Math.rint(d) && Math.abs(d) < 1e12) {
                return Long.toString(d.longValue());
            }
            return Math.abs(d) >= 100 ? String.format("%.0f", d) : String.format("%.3g", d);
        }
        if (o instanceof Map<?, ?> || o instanceof List<?>) {
            return Json.write(o);
        }
        return o.toString();
    }

    /** A table from a list of JSON objects, columns in first-seen key order. */
    public static TextTable of(List<?> objects) {
        List<String> keys = new ArrayList<>();
        for (Object o : objects) {
            if (o instanceof Map<?, ?> m) {
                for (Object k : m.keySet()) {
                    if (!keys.contains(k.toString())) {
                        keys.add(k.toString());
                    }
                }
            }
        }
        TextTable t = new TextTable(keys);
        for (Object o : objects) {
            List<Object> cells = new ArrayList<>();
            for (String k : keys) {
                cells.add(o instanceof Map<?, ?> m ? m.get(k) : null);
            }
            t.row(cells);
        }
        return t;
    }

    @Override
    public String toString() {
        int[] w = new int[headers.size()];
        for (int i = 0; i < w.length; i++) {
            w[i] = headers.get(i).length();
            for (List<String> r : rows) {
                w[i] = Math.max(w[i], r.get(i).length());
            }
        }
        StringBuilder sb = new StringBuilder();
        line(sb, headers, w, false);
        for (List<String> r : rows) {
            line(sb, r, w, true);
        }
        return sb.toString();
    }

    private static void line(StringBuilder sb, List<String> cells, int[] w, boolean alignNumbers) {
        for (int i = 0; i < w.length; i++) {
            String c = cells.get(i);
            boolean right = alignNumbers && c.matches("-?[0-9][0-9.,eE+x%-]*");
            if (i > 0) {
                sb.append("  ");
            }
            if (right) {
                sb.repeat(' ', w[i] - c.length()).append(c);
            } else {
                sb.append(c);
                if (i < w.length - 1) {
                    sb.repeat(' ', w[i] - c.length());
                }
            }
        }
        sb.append('\n');
    }
}
