package io.phost.appliance.util;

import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Turns module snapshot records into JSON-able maps with snake_case keys, so status needs no mapping code. */
public final class Records {
    private Records() {}

    public static Object toJsonable(Object value) {
        if (value instanceof Record r) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (RecordComponent c : r.getClass().getRecordComponents()) {
                try {
                    m.put(snake(c.getName()), toJsonable(c.getAccessor().invoke(r)));
                } catch (ReflectiveOperationException e) {
                    m.put(snake(c.getName()), e.toString());
                }
            }
            return m;
        }
        if (value instanceof List<?> l) {
            List<Object> out = new ArrayList<>(l.size());
            l.forEach(o -> out.add(toJsonable(o)));
            return out;
        }
        if (value instanceof Map<?, ?> mp) {
            Map<String, Object> out = new LinkedHashMap<>();
            mp.forEach((k, v) -> out.put(String.valueOf(k), toJsonable(v)));
            return out;
        }
        if (value instanceof Enum<?> e) {
            return enumValue(e); // one casing for every enum of the API: snake_case, as in the config file
        }
        if (value instanceof java.time.Duration d) {
            return d.toNanos() / 1e9; // seconds, not "PT1M"
        }
        if (value instanceof java.nio.file.Path || value instanceof java.util.UUID) {
            return value.toString();
        }
        return value;
    }

    /** {@code RUNNING} to "running", {@code InsufficientThroughput} to "insufficient_throughput". */
    public static String enumValue(Enum<?> e) {
        String n = e.name();
        return n.equals(n.toUpperCase(java.util.Locale.ROOT)) ? n.toLowerCase(java.util.Locale.ROOT)
            : snake(Character.toLowerCase(n.charAt(0)) + n.substring(1));
    }

    static String snake(String camel) {
        StringBuilder sb = new StringBuilder(camel.length() + 4);
        for (char c : camel.toCharArray()) {
            if (Character.isUpperCase(c)) {
                sb.append('_').append(Character.toLowerCase(c));
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }
}
