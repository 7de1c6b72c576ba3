package io.phost.appliance.config;

import java.util.Comparator;

/**
 * One problem in a config file, at the line and column (1-based) of the offending key or value; for a missing
 * required key, the position of the table header that should hold it.
 *
 * @param file    the source name given to the loader (a path, or a name like {@code <demo>})
 * @param keyPath dotted path with array indices, e.g. {@code partition[1].nic[0].vlan_access}; empty for syntax errors
 */
public record ConfigError(String file, int line, int column, String keyPath, String message) {

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
