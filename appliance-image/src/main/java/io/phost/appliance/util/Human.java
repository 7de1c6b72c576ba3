package io.phost.appliance.util;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Numbers for people in CLI tables: {@code 1.0 GiB}, {@code 4.9k}, {@code 12 ms}, {@code 9.6 MiB/s}. */
public final class Human {
    private static final String[] BINARY = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};

    private Human() {
    }

    /** Bytes with binary prefixes: 512 B, 1.0 GiB. */
    public static String bytes(double n) {
        int i = 0;
        double v = n;
        while (Math.abs(v) >= 1024 && i < BINARY.length - 1) {
            v /= 1024;
            i++;
        }
        return i == 0 ? String.format(Locale.ROOT, "%.0f B", v) : String.format(Locale.ROOT, "%.1f %s", v, BINARY[i]);
    }

    public static String bytesPerSecond(double n) {
        return bytes(n) + "/s";
    }

    /** A count or rate with k/M/G suffixes: 950, 4.9k, 1.2M. */
    public static String count(double n) {
        double a = Math.abs(n);
        if (a < 1000) {
            return n == Math.rint(n) ? String.format(Locale.ROOT, "%.0f", n) : String.format(Locale.ROOT, "%.1f", n);
        }
        if (a < 1e6) {
            return String.format(Locale.ROOT, "%.1fk", n / 1e3);
        }
        if (a < 1e9) {
            return String.format(Locale.ROOT, "%.1fM", n / 1e6);
        }
        return String.format(Locale.ROOT, "%.1fG", n / 1e9);
    }

    /** A latency given in microseconds: 850 µs, 12 ms, 2.5 s. */
    public static String micros(double us) {
        if (us < 1000) {
            return String.format(Locale.ROOT, "%.0f µs", us);
        }
        if (us < 1e6) {
            return String.format(Locale.ROOT, us < 10_000 ? "%.1f ms" : "%.0f ms", us / 1e3);
        }
        return String.format(Locale.ROOT, "%.1f s", us / 1e6);
    }

    /**
     * A status row for people: values formatted by their key's unit (the API's naming: {@code *_bytes} and
     * {@code size}, {@code *_iops}, {@code *_us}/{@code *_micros}, {@code *bandwidth*}/{@code *_bytes_per_sec}).
     */
    public static Map<String, Object> row(Map<?, ?> row) {
        Map<String, Object> out = new LinkedHashMap<>();
        row.forEach((k, v) -> out.put(String.valueOf(k), v instanceof Number n ? value(String.valueOf(k), n) : v));
        return out;
    }

    public static List<Object> rows(List<?> rows) {
        return rows.stream().map(r -> r instanceof Map<?, ?> m ? (Object) row(m) : r).toList();
    }

    private static Object value(String key, Number n) {
        double d = n.doubleValue();
        if (key.contains("bandwidth") || key.endsWith("_bytes_per_sec")) {
            return d == 0 && key.startsWith("max") ? "unlimited" : bytesPerSecond(d);
        }
        if (key.endsWith("_mib_s")) {
            return bytesPerSecond(d * 1024 * 1024);
        }
        if (key.endsWith("_bytes") || key.equals("size") || key.equals("bytes_read") || key.equals("bytes_written")
            || key.equals("normalization_size")) {
            return bytes(d);
        }
        if (key.endsWith("_us") || key.endsWith("_micros")) {
            return micros(d);
        }
        if (key.endsWith("iops") || key.endsWith("_pps")) {
            return count(d);
        }
        return n;
    }
}
