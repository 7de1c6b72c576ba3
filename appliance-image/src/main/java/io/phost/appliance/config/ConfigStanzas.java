package io.phost.appliance.config;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The text of a config's {@code [[partition]]}, {@code [[disk]]} and {@code [[qos_policy]]} tables, cut and pasted as
 * the operator wrote them (comments and all): what a partition move hands to the peer ({@code phost partition move}),
 * which adds it to its own config and applies that live, while this host drops the partition's and its disks'
 * tables from its own (the policies stay: other disks may name them).
 *
 * <p>A table runs from its {@code [[disk]]}/{@code [[partition]]} header to the next header that is not one of its
 * sub-tables ({@code [disk.rbd]}, {@code [[partition.nic]]}), with the comment lines right above its header; its
 * name is its first {@code name = "..."} line.
 */
public final class ConfigStanzas {
    private static final Pattern HEADER = Pattern.compile("^\\s*\\[\\[?\\s*([A-Za-z0-9_]+)(\\.[A-Za-z0-9_.]+)?\\s*]]?\\s*(#.*)?$");
    private static final Pattern NAME = Pattern.compile("^\\s*name\\s*=\\s*[\"']([^\"']*)[\"']\\s*(#.*)?$");

    /** One top-level table: its kind ({@code disk}, {@code partition}, ...), name and lines [from, to). */
    private record Table(String kind, String name, int from, int to) {
    }

    private ConfigStanzas() {
    }

    /** The tables of partition {@code partition} and of each of {@code disks}, in file order, as text. */
    public static String of(String text, String partition, List<String> disks) {
        return of(text, partition, disks, List.of());
    }

    /** As {@link #of(String, String, List)}, with the tables of the QoS policies {@code policies}. */
    public static String of(String text, String partition, List<String> disks, List<String> policies) {
        List<String> lines = lines(text);
        StringBuilder out = new StringBuilder();
        for (Table t : tables(lines)) {
            if (wanted(t, partition, disks) || t.kind.equals("qos_policy") && policies.contains(t.name)) {
                out.append(String.join("\n", lines.subList(t.from, t.to)).strip()).append("\n\n");
            }
        }
        return out.toString();
    }

    /** {@code text} without the tables of partition {@code partition} and of {@code disks}. */
    public static String without(String text, String partition, List<String> disks) {
        List<String> lines = lines(text);
        List<String> out = new ArrayList<>(lines);
        List<Table> ts = tables(lines);
        for (int i = ts.size() - 1; i >= 0; i--) {
            Table t = ts.get(i);
            if (wanted(t, partition, disks)) {
                out.subList(t.from, t.to).clear();
            }
        }
        return String.join("\n", out);
    }

    /** The names of the {@code [[partition]]} tables in {@code text}. */
    public static List<String> partitions(String text) {
        return tables(lines(text)).stream().filter(t -> t.kind.equals("partition")).map(t -> t.name).toList();
    }

    /** The names of the {@code [[disk]]} tables in {@code text}, with the text of each table. */
    public static java.util.Map<String, String> disks(String text) {
        return named(text, "disk");
    }

    /** The names of the {@code [[qos_policy]]} tables in {@code text}, with the text of each table. */
    public static java.util.Map<String, String> policies(String text) {
        return named(text, "qos_policy");
    }

    /** {@code text} without the {@code [[qos_policy]]} tables named {@code names}. */
    public static String withoutPolicies(String text, List<String> names) {
        List<String> lines = lines(text);
        List<String> out = new ArrayList<>(lines);
        List<Table> ts = tables(lines);
        for (int i = ts.size() - 1; i >= 0; i--) {
            Table t = ts.get(i);
            if (t.kind.equals("qos_policy") && names.contains(t.name)) {
                out.subList(t.from, t.to).clear();
            }
        }
        return String.join("\n", out);
    }

    private static java.util.Map<String, String> named(String text, String kind) {
        List<String> lines = lines(text);
        java.util.Map<String, String> out = new java.util.LinkedHashMap<>();
        for (Table t : tables(lines)) {
            if (t.kind.equals(kind) && t.name != null) {
                out.put(t.name, String.join("\n", lines.subList(t.from, t.to)).strip() + "\n");
            }
        }
        return out;
    }

    private static boolean wanted(Table t, String partition, List<String> disks) {
        return t.name != null && (t.kind.equals("partition") && t.name.equals(partition)
            || t.kind.equals("disk") && disks.contains(t.name));
    }

    private static List<String> lines(String text) {
        return new ArrayList<>(List.of(text.split("\n", -1)));
    }

    /**
     * The top-level tables. A multi-line string ({@code """} or {@code '''}) is skipped so a header-like line inside
     * it does not start a table. A table's trailing blank and comment lines belong to what follows.
     */
    private static List<Table> tables(List<String> lines) {
        List<Table> out = new ArrayList<>();
        String kind = null;
        String name = null;
        int from = -1;
        boolean inString = false;
        boolean sub = false;
        for (int i = 0; i <= lines.size(); i++) {
            String line = i < lines.size() ? lines.get(i) : "[end]";
            if (inString) {
                inString = !closesMultiline(line);
                continue;
            }
            Matcher h = HEADER.matcher(line);
            if (h.matches() && !(h.group(2) != null && h.group(1).equals(kind))) {
                if (kind != null) {
                    out.add(new Table(kind, name, from, trimmedEnd(lines, from, i)));
                }
                kind = h.group(1);
                name = null;
                from = i;
                while (from > 0 && lines.get(from - 1).strip().startsWith("#")) {
                    from--; // the comment just above a table is about it
                }
                sub = false;
                continue;
            }
            if (h.matches()) {
                sub = true; // names inside a sub-table ([[partition.disk]] has none, but a nic may) are not the table's
                continue;
            }
            Matcher n = NAME.matcher(line);
            if (kind != null && name == null && !sub && n.matches()) {
                name = n.group(1);
            }
            inString = opensMultiline(line);
        }
        return out;
    }

    private static int trimmedEnd(List<String> lines, int from, int to) {
        while (to > from + 1 && (lines.get(to - 1).isBlank() || lines.get(to - 1).strip().startsWith("#"))) {
            to--;
        }
        return to;
    }

    private static boolean opensMultiline(String line) {
        for (String q : List.of("\"\"\"", "'''")) {
            int first = line.indexOf(q);
            if (first >= 0 && line.indexOf(q, first + 3) < 0) {
                return true;
            }
        }
        return false;
    }

    private static boolean closesMultiline(String line) {
        return line.contains("\"\"\"") || line.contains("'''");
    }
}
