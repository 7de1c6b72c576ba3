package io.phost.appliance.config;

import java.util.Comparator;

/**
 * One problem in a config file, at the line and column (1-based) of the offending key or value; for a missing
 * required key, the position of the table header that should hold it.
 *
 * @param file    the source name given to the loader (a path, or a name like {@code <demo>})
 * @param keyPath dotted path with array indices, e.g. {@code partition[1].nic[0].vlan_access}; empty for syntax errors
 * @param reason  the kind of mistake
 */
public record ConfigError(String file, int line, int column, String keyPath, Reason reason, String message) {

    /** Control characters from the file (a newline in a name) are escaped: every error stays one line. */
    public ConfigError {
        keyPath = oneLine(keyPath);
        message = oneLine(message);
    }

    /** {@code text} with CR, LF, TAB as {@code \r \n \t} and other control characters as a backslash, u and four hex digits. */
    static String oneLine(String text) {
        if (text == null || text.chars().noneMatch(c -> c < 0x20 || c == 0x7f)) {
            return text;
        }
        StringBuilder b = new StringBuilder(text.length() + 8);
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            switch (c) {
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20 || c == 0x7f) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.toString();
    }

    /** What kind of mistake it is (tests and tools match on this; people read the message). */
    public enum Reason {
        /** The file could not be read, or is larger than {@link ConfigLoader#MAX_BYTES}. */
        UNREADABLE,
        /** The bytes are not UTF-8. */
        ENCODING,
        /** Not TOML (the parser's message and position). */
        SYNTAX,
        /** A key the schema does not know, usually a typo. */
        UNKNOWN_KEY,
        /** A required key or table is absent (reported at the header of the table that should hold it). */
        MISSING_KEY,
        /** A value of the wrong TOML type, e.g. a string where an integer belongs. */
        WRONG_TYPE,
        /** A value outside its range or its list of allowed values. */
        OUT_OF_RANGE,
        /** A value of the right type in the wrong form: a bad name, MAC, path, unit or address. */
        INVALID_VALUE,
        /** A name that names no defined disk, switch or QoS policy. */
        DANGLING_REFERENCE,
        /** A name, file, MAC or (controller, LUN) slot used twice. */
        DUPLICATE,
        /** Options that cannot be used together, or an option that the rest of the item rules out. */
        CONFLICT
    }

    /** Orders errors by their place in the file, so the user reads them top to bottom. */
    public static final Comparator<ConfigError> BY_POSITION =
        Comparator.comparingInt(ConfigError::line).thenComparingInt(ConfigError::column)
            .thenComparing(ConfigError::keyPath).thenComparing(ConfigError::message);

    /** {@code FILE:LINE:COL: key.path: message} (the key path is left out when there is none). */
    @Override
    public String toString() {
        String where = file + ":" + line + ":" + column + ": ";
        return keyPath.isEmpty() ? where + message : where + keyPath + ": " + message;
    }
}
