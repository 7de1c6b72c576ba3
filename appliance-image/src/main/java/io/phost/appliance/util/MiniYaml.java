package io.phost.appliance.util;

import io.phost.core.text.Json;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The block-style subset of YAML that {@code docs/openapi.yaml} is written in, read into the same maps, lists,
 * strings, longs, doubles and booleans as {@link Json}, so the management endpoint can serve it as
 * {@code /openapi.json} without a YAML library in the image.
 *
 * <p>Supported: indentation by spaces; {@code key: value} and {@code key:} + a deeper block; {@code - item},
 * {@code - key: value} (a mapping item) and {@code -} + a deeper block; plain, 'single' and "double" quoted
 * scalars; one-line flow sequences {@code [a, "b"]}; {@code []}, {@code {}}; {@code #} comments. Anything else
 * (tabs, anchors, tags, flow mappings, multi-line scalars, a duplicate key) is a {@link IllegalArgumentException}
 * naming the line.
 */
public final class MiniYaml {
    private record Line(int number, int indent, String text) {
    }

    private final List<Line> lines = new ArrayList<>();
    private int pos;

    private MiniYaml(String text) {
        String[] raw = text.split("\n", -1);
        for (int i = 0; i < raw.length; i++) {
            String l = raw[i];
            if (l.indexOf('\t') >= 0) {
                throw error(i + 1, "a tab (indent with spaces)");
            }
            String content = stripComment(l, i + 1).stripTrailing();
            if (content.isBlank() || content.equals("---")) {
                continue;
            }
            int indent = 0;
            while (content.charAt(indent) == ' ') {
                indent++;
            }
            lines.add(new Line(i + 1, indent, content.substring(indent)));
        }
    }

    /** Parses {@code text}; throws IllegalArgumentException with the line number when it leaves the subset. */
    public static Object parse(String text) {
        MiniYaml y = new MiniYaml(text);
        if (y.lines.isEmpty()) {
            return null;
        }
        Object v = y.block(y.lines.getFirst().indent());
        if (y.pos < y.lines.size()) {
            Line l = y.lines.get(y.pos);
            throw error(l.number(), "unexpected indentation");
        }
        return v;
    }

    private Object block(int indent) {
        Line first = lines.get(pos);
        return first.text().equals("-") || first.text().startsWith("- ") ? sequence(indent) : mapping(indent);
    }

    private List<Object> sequence(int indent) {
        List<Object> out = new ArrayList<>();
        while (pos < lines.size() && lines.get(pos).indent() == indent
            && (lines.get(pos).text().equals("-") || lines.get(pos).text().startsWith("- "))) {
            Line l = lines.get(pos);
            String rest = l.text().substring(1).strip();
            if (rest.isEmpty()) {
                pos++;
                out.add(nested(indent, l));
            } else if (keyEnd(rest) > 0) {
                // "- key: value": a mapping whose keys sit two columns right of the dash
                lines.set(pos, new Line(l.number(), indent + 2, rest));
                out.add(mapping(indent + 2));
            } else {
                pos++;
                out.add(scalar(rest, l.number()));
            }
        }
        return out;
    }

    private Map<String, Object> mapping(int indent) {
        Map<String, Object> out = new LinkedHashMap<>();
        while (pos < lines.size() && lines.get(pos).indent() == indent) {
            Line l = lines.get(pos);
            if (l.text().startsWith("- ") || l.text().equals("-")) {
                throw error(l.number(), "a list item where a key was expected");
            }
            int colon = keyEnd(l.text());
            if (colon < 0) {
                throw error(l.number(), "expected 'key: value'");
            }
            String key = unquote(l.text().substring(0, colon).strip(), l.number());
            String rest = l.text().substring(colon + 1).strip();
            pos++;
            Object value = rest.isEmpty() ? nested(indent, l) : scalar(rest, l.number());
            if (out.put(key, value) != null) {
                throw error(l.number(), "duplicate key '" + key + "'");
            }
        }
        if (pos < lines.size() && lines.get(pos).indent() > indent) {
            throw error(lines.get(pos).number(), "unexpected indentation");
        }
        return out;
    }

    private Object nested(int indent, Line owner) {
        if (pos >= lines.size() || lines.get(pos).indent() <= indent) {
            throw error(owner.number(), "an empty value (write \"\", [] or {})");
        }
        return block(lines.get(pos).indent());
    }

    /** Index of the ':' that ends a key (followed by a space or the end), outside quotes; -1 when none. */
    private static int keyEnd(String s) {
        char q = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (q != 0) {
                if (c == q) {
                    q = 0;
                }
            } else if (c == '"' || c == '\'') {
                if (i != 0) {
                    return -1;
                }
                q = c;
            } else if (c == '[' || c == '{') {
                return -1;
            } else if (c == ':' && (i + 1 == s.length() || s.charAt(i + 1) == ' ')) {
                return i;
            }
        }
        return -1;
    }

    private static Object scalar(String s, int line) {
        if (s.startsWith("[")) {
            if (!s.endsWith("]")) {
                throw error(line, "a flow sequence must end on its line");
            }
            List<Object> out = new ArrayList<>();
            String inner = s.substring(1, s.length() - 1).strip();
            if (!inner.isEmpty()) {
                for (String part : splitFlow(inner, line)) {
                    out.add(scalar(part.strip(), line));
                }
            }
            return out;
        }
        if (s.equals("{}")) {
            return new LinkedHashMap<String, Object>();
        }
        if (s.startsWith("{") || s.startsWith("&") || s.startsWith("*") || s.startsWith("!")
            || s.startsWith("|") || s.startsWith(">")) {
            throw error(line, "'" + s.charAt(0) + "' is outside the YAML subset this file uses");
        }
        if (s.startsWith("\"") || s.startsWith("'")) {
            return unquote(s, line);
        }
        switch (s) {
            case "true":
                return Boolean.TRUE;
            case "false":
                return Boolean.FALSE;
            case "null", "~":
                return null;
            default:
                break;
        }
        if (s.matches("-?[0-9]+")) {
            return Long.parseLong(s);
        }
        if (s.matches("-?[0-9]+\\.[0-9]+")) {
            return Double.parseDouble(s);
        }
        return s;
    }

    private static List<String> splitFlow(String s, int line) {
        List<String> parts = new ArrayList<>();
        char q = 0;
        int start = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (q != 0) {
                if (c == q) {
                    q = 0;
                }
            } else if (c == '"' || c == '\'') {
                q = c;
            } else if (c == '[' || c == '{') {
                throw error(line, "nested flow collections are outside the YAML subset this file uses");
            } else if (c == ',') {
                parts.add(s.substring(start, i));
                start = i + 1;
            }
        }
        parts.add(s.substring(start));
        return parts;
    }

    private static String unquote(String s, int line) {
        if (s.length() >= 2 && s.startsWith("'") && s.endsWith("'")) {
            return s.substring(1, s.length() - 1).replace("''", "'");
        }
        if (s.length() >= 2 && s.startsWith("\"") && s.endsWith("\"")) {
            Object v = Json.parse(s);
            if (v instanceof String str) {
                return str;
            }
        }
        if (s.startsWith("'") || s.startsWith("\"")) {
            throw error(line, "an unterminated quoted string");
        }
        return s;
    }

    private static String stripComment(String l, int line) {
        char q = 0;
        for (int i = 0; i < l.length(); i++) {
            char c = l.charAt(i);
            if (q != 0) {
                if (c == q) {
                    q = 0;
                }
            } else if ((c == '"' || c == '\'') && opensScalar(l, i)) {
                q = c;
            } else if (c == '#' && (i == 0 || l.charAt(i - 1) == ' ')) {
                return l.substring(0, i);
            }
        }
        return l;
    }

    /** A quote opens a quoted scalar only where a scalar starts (an apostrophe inside plain text does not). */
    private static boolean opensScalar(String l, int i) {
        int j = i - 1;
        while (j >= 0 && l.charAt(j) == ' ') {
            j--;
        }
        return j < 0 || ":-[,".indexOf(l.charAt(j)) >= 0;
    }

    private static IllegalArgumentException error(int line, String what) {
        return new IllegalArgumentException("openapi.yaml:" + line + ": " + what);
    }
}
