package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.tomlj.TomlPosition;

/** Small helpers shared by the config binders: path parsing, name hints, duplicate-name checks. */
final class BindSupport {
    private BindSupport() {
    }

    static Path path(TomlNode n, String key, String text) {
        try {
            return Path.of(text);
        } catch (InvalidPathException e) {
            n.error(key, Reason.INVALID_VALUE, "'" + text + "' is not a valid path: " + e.getReason());
            return null;
        }
    }

    static String hint(String name, Set<String> known) {
        String c = TomlNode.closest(name, known);
        if (c != null) {
            return "; did you mean '" + c + "'?";
        }
        return known.isEmpty() ? " (none defined)" : " (defined: " + String.join(", ", known) + ")";
    }

    static String lower(Enum<?> e) {
        return e.name().toLowerCase(Locale.ROOT);
    }

    static <T> boolean unique(Map<String, Defined<T>> seen, String name, TomlNode n, String what) {
        Defined<T> first = seen.get(name);
        if (first != null) {
            TomlPosition p = first.node().positionOf("name");
            n.error("name", Reason.DUPLICATE,
                "duplicate " + what + " name '" + name + "' (first defined at line " + p.line() + ")");
            return false;
        }
        return true;
    }
}
