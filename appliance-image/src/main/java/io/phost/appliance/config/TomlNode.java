package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.ConfigSchema.Key;
import io.phost.appliance.config.ConfigSchema.Kind;
import io.phost.appliance.config.ConfigSchema.Section;
import java.time.temporal.TemporalAccessor;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.tomlj.TomlArray;
import org.tomlj.TomlPosition;
import org.tomlj.TomlTable;

/**
 * A cursor over one TOML table checked against its {@link Section}: typed getters that record an error (at the
 * key's position) and return null when a value is missing-but-required, of the wrong type or out of range, and
 * return the schema's default when the key is absent. Unknown keys are reported when the node is made.
 */
final class TomlNode {
    private final Errors errors;
    private final TomlTable table;
    private final String path;
    private final TomlPosition position;
    private final Section section;

    /** Sink for errors, shared by all nodes of one file. */
    interface Errors {
        void add(TomlPosition position, String keyPath, Reason reason, String message);
    }

    TomlNode(Errors errors, TomlTable table, String path, TomlPosition position, Section section) {
        this.errors = errors;
        this.table = table;
        this.path = path;
        this.position = position == null ? TomlPosition.positionAt(1, 1) : position;
        this.section = section;
        for (String k : table.keySet()) {
            if (!section.keys().containsKey(k)) {
                String hint = suggestion(k, section);
                String where = section.name().isEmpty() ? "at the top level" : "in " + section.docTitle();
                errors.add(positionOf(k), pathOf(k), Reason.UNKNOWN_KEY, "unknown key '" + k + "' " + where
                    + (hint == null ? " (known: " + ConfigSchema.keyList(section) + ")" : "; did you mean '" + hint + "'?"));
            }
        }
    }

    String path() {
        return path;
    }

    TomlPosition position() {
        return position;
    }

    boolean has(String key) {
        section.key(key);
        return table.get(List.of(key)) != null;
    }

    TomlPosition positionOf(String key) {
        TomlPosition p = table.inputPositionOf(List.of(key));
        return p == null ? position : p;
    }

    String pathOf(String key) {
        return path.isEmpty() ? key : path + "." + key;
    }

    /** Records an error at a key (or at this table's header when the key is absent). */
    void error(String key, Reason reason, String message) {
        errors.add(positionOf(key), pathOf(key), reason, message);
    }

    /** Records an error at element {@code index} of the array under {@code key} ({@code key[index]} in the path). */
    void elementError(String key, int index, Reason reason, String message) {
        TomlPosition p = table.get(List.of(key)) instanceof TomlArray a && index < a.size()
            ? elementPosition(a, index, key) : positionOf(key);
        errors.add(p, pathOf(key) + "[" + index + "]", reason, message);
    }

    /** Records an error at this table's header. */
    void errorHere(Reason reason, String message) {
        errors.add(position, path, reason, message);
    }

    // ---- typed getters ----

    String string(String key) {
        Key k = expect(key, Kind.STRING, Kind.PATH, Kind.NAME, Kind.MAC);
        Object v = raw(k);
        if (v == null) {
            return k.computed() ? null : k.defaultText();
        }
        if (!(v instanceof String s)) {
            return typeError(k, v, "a string");
        }
        if (k.kind() == Kind.NAME && !validName(s)) {
            error(key, Reason.INVALID_VALUE,
                "'" + s + "' is not a valid name (1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)");
            return null;
        }
        if (k.kind() == Kind.PATH && (s.isEmpty() || s.indexOf('\0') >= 0)) {
            error(key, Reason.INVALID_VALUE, "a path must be non-empty and without NUL characters");
            return null;
        }
        return s;
    }

    Boolean bool(String key) {
        Key k = expect(key, Kind.BOOLEAN);
        Object v = raw(k);
        if (v == null) {
            return k.computed() || k.defaultText() == null ? null : Boolean.valueOf(k.defaultText());
        }
        return v instanceof Boolean b ? b : typeError(k, v, "true or false");
    }

    Long integer(String key) {
        Key k = expect(key, Kind.INTEGER);
        Object v = raw(k);
        if (v == null) {
            return k.computed() || k.defaultText() == null ? null : Long.valueOf(k.defaultText());
        }
        if (!(v instanceof Long n)) {
            return typeError(k, v, "an integer");
        }
        return checkRange(k, n, positionOf(key), pathOf(key)) ? n : null;
    }

    Long size(String key) {
        return unitValue(key, Kind.SIZE);
    }

    Long bandwidth(String key) {
        return unitValue(key, Kind.BANDWIDTH);
    }

    /** An ENUM key as the upper-case name of {@code type}'s constant. */
    <E extends Enum<E>> E enumValue(String key, Class<E> type) {
        Key k = expect(key, Kind.ENUM);
        Object v = raw(k);
        String word;
        if (v == null) {
            if (k.computed() || k.defaultText() == null) {
                return null;
            }
            word = k.defaultText();
        } else if (v instanceof String s) {
            if (!k.allowed().contains(s)) {
                String hint = closest(s, k.allowed());
                error(key, Reason.INVALID_VALUE, "'" + s + "' is not one of " + String.join(", ", k.allowed())
                    + (hint == null ? "" : "; did you mean '" + hint + "'?"));
                return null;
            }
            word = s;
        } else {
            return typeError(k, v, "one of the strings " + String.join(", ", k.allowed()));
        }
        return Enum.valueOf(type, word.toUpperCase(Locale.ROOT));
    }

    /** An ENUM key whose values are kept as strings. */
    String word(String key) {
        Key k = expect(key, Kind.ENUM);
        Object v = raw(k);
        if (v == null) {
            return k.computed() ? null : k.defaultText();
        }
        if (!(v instanceof String s)) {
            return typeError(k, v, "one of the strings " + String.join(", ", k.allowed()));
        }
        if (!k.allowed().contains(s)) {
            String hint = closest(s, k.allowed());
            error(key, Reason.INVALID_VALUE, "'" + s + "' is not one of " + String.join(", ", k.allowed())
                + (hint == null ? "" : "; did you mean '" + hint + "'?"));
            return null;
        }
        return s;
    }

    List<String> strings(String key) {
        Key k = expect(key, Kind.STRING_ARRAY);
        Object v = raw(k);
        if (v == null) {
            return k.defaultText() == null ? null : List.of();
        }
        if (!(v instanceof TomlArray a)) {
            return typeError(k, v, "an array of strings");
        }
        List<String> out = new ArrayList<>(a.size());
        boolean ok = true;
        for (int i = 0; i < a.size(); i++) {
            Object e = a.get(i);
            if (e instanceof String s) {
                out.add(s);
            } else {
                errors.add(elementPosition(a, i, key), pathOf(key) + "[" + i + "]", Reason.WRONG_TYPE,
                    "expected a string, found " + describe(e));
                ok = false;
            }
        }
        return ok ? out : null;
    }

    /** INTEGER_ARRAY elements, each checked against the key's range. */
    List<Long> integers(String key) {
        Key k = expect(key, Kind.INTEGER_ARRAY);
        Object v = raw(k);
        if (v == null) {
            return k.defaultText() == null ? null : List.of();
        }
        if (!(v instanceof TomlArray a)) {
            return typeError(k, v, "an array of integers");
        }
        List<Long> out = new ArrayList<>(a.size());
        boolean ok = true;
        for (int i = 0; i < a.size(); i++) {
            Object e = a.get(i);
            TomlPosition p = elementPosition(a, i, key);
            String ep = pathOf(key) + "[" + i + "]";
            if (!(e instanceof Long n)) {
                errors.add(p, ep, Reason.WRONG_TYPE, "expected an integer, found " + describe(e));
                ok = false;
            } else if (!checkRange(k, n, p, ep)) {
                ok = false;
            } else if (out.contains(n)) {
                errors.add(p, ep, Reason.DUPLICATE, n + " is listed twice");
                ok = false;
            } else {
                out.add(n);
            }
        }
        return ok ? out : null;
    }

    /** A TABLE key; null when absent (a required table is reported missing) or not a table. */
    TomlNode table(String key) {
        Key k = expect(key, Kind.TABLE);
        Object v = raw(k);
        if (v == null) {
            return null;
        }
        if (!(v instanceof TomlTable t)) {
            return typeError(k, v, "a table");
        }
        return new TomlNode(errors, t, pathOf(key), positionOf(key), ConfigSchema.section(k.child()));
    }

    /** A TABLE_ARRAY key: {@code [[x]]} headers or an array of inline tables; elements that are no table are reported. */
    List<TomlNode> tables(String key) {
        Key k = expect(key, Kind.TABLE_ARRAY);
        Object v = raw(k);
        if (v == null) {
            return List.of();
        }
        if (!(v instanceof TomlArray a)) {
            typeError(k, v, "an array of tables ([[" + ConfigSchema.section(k.child()).name() + "]])");
            return List.of();
        }
        List<TomlNode> out = new ArrayList<>(a.size());
        Section child = ConfigSchema.section(k.child());
        for (int i = 0; i < a.size(); i++) {
            Object e = a.get(i);
            TomlPosition p = elementPosition(a, i, key);
            String ep = pathOf(key) + "[" + i + "]";
            if (e instanceof TomlTable t) {
                out.add(new TomlNode(errors, t, ep, p, child));
            } else {
                errors.add(p, ep, Reason.WRONG_TYPE, "expected a table, found " + describe(e));
            }
        }
        return out;
    }

    // ---- helpers ----

    private Long unitValue(String key, Kind kind) {
        Key k = expect(key, kind);
        Object v = raw(k);
        long n;
        if (v == null) {
            if (k.computed() || k.defaultText() == null) {
                return null;
            }
            v = k.defaultText();
        }
        if (v instanceof Long l) {
            n = l;
        } else if (v instanceof String s) {
            try {
                n = kind == Kind.SIZE ? Units.parseSize(s) : Units.parseBandwidth(s);
            } catch (Units.UnitException e) {
                error(key, Reason.INVALID_VALUE, e.getMessage());
                return null;
            }
        } else {
            return typeError(k, v, kind == Kind.SIZE
                ? "a size (an integer in bytes or a string like \"64GiB\")"
                : "a bandwidth (an integer in bytes/s or a string like \"100Mbps\" or \"10MB/s\")");
        }
        return checkRange(k, n, positionOf(key), pathOf(key)) ? n : null;
    }

    private boolean checkRange(Key k, long n, TomlPosition p, String keyPath) {
        boolean sizes = k.kind() == Kind.SIZE;
        if (!k.allowed().isEmpty() && !k.allowed().contains(Long.toString(n))) {
            errors.add(p, keyPath, Reason.OUT_OF_RANGE, n + " is not one of " + String.join(", ", k.allowed()));
            return false;
        }
        if ((k.min() != null && n < k.min()) || (k.max() != null && n > k.max())) {
            String shown = sizes ? n + " bytes" : Long.toString(n);
            errors.add(p, keyPath, Reason.OUT_OF_RANGE,
                shown + " is out of range (" + k.docRange().split(";")[0] + ")");
            return false;
        }
        return true;
    }

    private Object raw(Key k) {
        Object v = table.get(List.of(k.name()));
        if (v == null && k.required()) {
            // Reported at the header of the table that should hold the key (line 1 for the top level).
            String what = k.kind() == Kind.TABLE ? "required table [" + k.child() + "] is missing"
                : "required key is missing" + (section.name().isEmpty() ? "" : " from " + section.docTitle());
            errors.add(position, pathOf(k.name()), Reason.MISSING_KEY, what);
        }
        return v;
    }

    private Key expect(String key, Kind... kinds) {
        Key k = section.key(key);
        for (Kind kind : kinds) {
            if (k.kind() == kind) {
                return k;
            }
        }
        throw new IllegalArgumentException(section.name() + "." + key + " is " + k.kind());
    }

    private <T> T typeError(Key k, Object v, String expected) {
        error(k.name(), Reason.WRONG_TYPE, "expected " + expected + ", found " + describe(v));
        return null;
    }

    private TomlPosition elementPosition(TomlArray a, int i, String key) {
        TomlPosition p = a.inputPositionOf(i);
        return p == null ? positionOf(key) : p;
    }

    static String describe(Object v) {
        if (v instanceof String s) {
            return "the string \"" + (s.length() > 40 ? s.substring(0, 40) + "..." : s) + "\"";
        }
        if (v instanceof Long n) {
            return "the integer " + n;
        }
        if (v instanceof Double d) {
            return "the float " + d;
        }
        if (v instanceof Boolean b) {
            return "the boolean " + b;
        }
        if (v instanceof TomlArray) {
            return "an array";
        }
        if (v instanceof TomlTable) {
            return "a table";
        }
        if (v instanceof TemporalAccessor) {
            return "a date/time";
        }
        return "a " + v.getClass().getSimpleName();
    }

    static boolean validName(String s) {
        if (s.isEmpty() || s.length() > 64) {
            return false;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            boolean alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
                return false;
            }
        }
        return true;
    }

    private static String suggestion(String unknown, Section section) {
        return closest(unknown, section.keys().keySet());
    }

    /** The candidate within a small edit distance of {@code s}, or null (a typo, a plural, a dash for an underscore). */
    static String closest(String s, Iterable<String> candidates) {
        String best = null;
        int bestDistance = Integer.MAX_VALUE;
        String folded = s.toLowerCase(Locale.ROOT).replace('-', '_');
        for (String c : candidates) {
            int d = distance(folded, c);
            if (d < bestDistance) {
                best = c;
                bestDistance = d;
            }
        }
        int limit = Math.max(1, Math.min(3, s.length() / 3));
        return bestDistance <= limit ? best : null;
    }

    /** Levenshtein distance; inputs are bounded by the key lengths a person types, capped for hostile input. */
    static int distance(String a, String b) {
        if (a.length() > 100 || b.length() > 100) {
            return Integer.MAX_VALUE;
        }
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + cost);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
