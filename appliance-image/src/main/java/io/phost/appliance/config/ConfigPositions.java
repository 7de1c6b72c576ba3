package io.phost.appliance.config;

import org.tomlj.Toml;
import org.tomlj.TomlArray;
import org.tomlj.TomlParseResult;
import org.tomlj.TomlPosition;
import org.tomlj.TomlTable;

/**
 * Where a key path ({@code partition[1].nic[0].vlan_access}, as {@link ConfigError#keyPath()} spells it) sits in a
 * config's text, so a refused live change can name {@code file:line:col}. A key the file leaves to its default
 * is placed at the nearest enclosing table that the file does write.
 */
final class ConfigPositions {
    private final TomlParseResult toml;

    ConfigPositions(String text) {
        this.toml = Toml.parse(text);
    }

    /** {line, column} (1-based) of {@code keyPath}, or of its nearest written ancestor; 1:1 when nothing matches. */
    int[] of(String keyPath) {
        int[] at = {1, 1};
        TomlTable table = toml;
        for (String segment : keyPath.isEmpty() ? new String[0] : keyPath.split("\\.")) {
            if (table == null) {
                break;
            }
            int bracket = segment.indexOf('[');
            String key = bracket < 0 ? segment : segment.substring(0, bracket);
            TomlPosition p = positionOf(table, key);
            if (p == null) {
                break;
            }
            at = new int[] {p.line(), p.column()};
            Object value = table.get(java.util.List.of(key));
            if (bracket >= 0 && value instanceof TomlArray array) {
                int index = Integer.parseInt(segment.substring(bracket + 1, segment.length() - 1));
                if (index >= array.size() || !(array.get(index) instanceof TomlTable element)) {
                    break;
                }
                TomlPosition e = array.inputPositionOf(index);
                if (e != null) {
                    at = new int[] {e.line(), e.column()};
                }
                table = element;
            } else {
                table = value instanceof TomlTable t ? t : null;
            }
        }
        return at;
    }

    private static TomlPosition positionOf(TomlTable table, String key) {
        try {
            return table.inputPositionOf(java.util.List.of(key));
        } catch (RuntimeException e) {
            return null;
        }
    }
}
