package io.phost.appliance.config;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Writes NIC keys into a config's text (a {@code POST /v1/switches/port} change that is saved in applied.toml): the
 * NIC is found by position ({@code partition[i].nic[n]}), as a {@code [[partition.nic]]} table (the key's line is
 * replaced, or a line added under the header) or as an inline table on one line (the key's entry is replaced or
 * appended). The rest of the file, comments included, stays as the operator wrote it.
 */
public final class NicText {
    private NicText() {
    }

    /**
     * {@code values}: key → TOML value text ({@code 10}, {@code true}, {@code ["a", "b"]}), or null to remove the key.
     * Throws IllegalArgumentException when the NIC is not in the text.
     */
    public static String set(String text, int partitionIndex, int nicIndex, Map<String, String> values) {
        int[] at = new ConfigPositions(text).of("partition[" + partitionIndex + "].nic[" + nicIndex + "]");
        List<String> lines = new ArrayList<>(Arrays.asList(text.split("\n", -1)));
        int row = at[0] - 1;
        if (row < 0 || row >= lines.size()) {
            throw new IllegalArgumentException("partition " + partitionIndex + " nic " + nicIndex + " not found");
        }
        String line = lines.get(row);
        if (line.strip().startsWith("[[")) {
            setInTable(lines, row, values);
        } else {
            int brace = line.indexOf('{', Math.max(0, at[1] - 1));
            if (brace < 0) {
                throw new IllegalArgumentException("partition " + partitionIndex + " nic " + nicIndex + " is not a table");
            }
            lines.set(row, setInline(line, brace, values));
        }
        return String.join("\n", lines);
    }

    private static void setInTable(List<String> lines, int header, Map<String, String> values) {
        for (Map.Entry<String, String> e : values.entrySet()) {
            int end = header + 1;
            while (end < lines.size() && !lines.get(end).strip().startsWith("[")) {
                end++;
            }
            boolean done = false;
            for (int i = header + 1; i < end && !done; i++) {
                if (keyOf(lines.get(i)).equals(e.getKey())) {
                    int last = i;
                    int depth = depth(lines.get(i));
                    while (depth > 0 && last + 1 < end) { // a multi-line array: its lines go with the key
                        depth += depth(lines.get(++last));
                    }
                    String indent = lines.get(i).substring(0, lines.get(i).indexOf(e.getKey()));
                    lines.subList(i, last + 1).clear();
                    if (e.getValue() != null) {
                        lines.add(i, indent + e.getKey() + " = " + e.getValue());
                    }
                    done = true;
                }
            }
            if (!done && e.getValue() != null) {
                String indent = lines.get(header).substring(0, lines.get(header).indexOf('['));
                lines.add(header + 1, indent + e.getKey() + " = " + e.getValue());
            }
        }
    }

    private static String setInline(String line, int open, Map<String, String> values) {
        int close = open + 1;
        int depth = 1;
        boolean quoted = false;
        for (; close < line.length() && depth > 0; close++) {
            char c = line.charAt(close);
            if (c == '"' && line.charAt(close - 1) != '\\') {
                quoted = !quoted;
            } else if (!quoted && (c == '{' || c == '[')) {
                depth++;
            } else if (!quoted && (c == '}' || c == ']')) {
                depth--;
            }
        }
        List<String> entries = new ArrayList<>(topLevel(line.substring(open + 1, close - 1)));
        for (Map.Entry<String, String> e : values.entrySet()) {
            entries.removeIf(x -> keyOf(x).equals(e.getKey()));
            if (e.getValue() != null) {
                entries.add(e.getKey() + " = " + e.getValue());
            }
        }
        return line.substring(0, open) + "{ " + String.join(", ", entries) + " }" + line.substring(close);
    }

    /** The comma-separated entries of an inline table's body, outside strings and brackets. */
    private static List<String> topLevel(String body) {
        List<String> out = new ArrayList<>();
        int depth = 0;
        boolean quoted = false;
        int start = 0;
        for (int i = 0; i < body.length(); i++) {
            char c = body.charAt(i);
            if (c == '"' && (i == 0 || body.charAt(i - 1) != '\\')) {
                quoted = !quoted;
            } else if (!quoted && (c == '[' || c == '{')) {
                depth++;
            } else if (!quoted && (c == ']' || c == '}')) {
                depth--;
            } else if (!quoted && depth == 0 && c == ',') {
                out.add(body.substring(start, i).strip());
                start = i + 1;
            }
        }
        if (!body.substring(start).isBlank()) {
            out.add(body.substring(start).strip());
        }
        return out;
    }

    private static String keyOf(String entry) {
        int eq = entry.indexOf('=');
        return eq < 0 ? "" : entry.substring(0, eq).strip();
    }

    /** Open minus closed brackets on a line, outside strings and comments. */
    private static int depth(String line) {
        int d = 0;
        boolean quoted = false;
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '"' && (i == 0 || line.charAt(i - 1) != '\\')) {
                quoted = !quoted;
            } else if (!quoted && c == '#') {
                break;
            } else if (!quoted) {
                d += c == '[' ? 1 : c == ']' ? -1 : 0;
            }
        }
        return d;
    }

    /** A TOML array of strings. */
    public static String strings(List<String> items) {
        return items.stream().map(s -> "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"")
            .collect(java.util.stream.Collectors.joining(", ", "[", "]"));
    }
}
