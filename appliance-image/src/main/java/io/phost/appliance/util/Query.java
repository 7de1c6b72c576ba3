package io.phost.appliance.util;

import java.net.URLDecoder;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** URL query strings: {@code a=1&b=x%20y} to and from an ordered map. */
public final class Query {
    private Query() {}

    /** Throws IllegalArgumentException (a 400 on the API) for a malformed %-escape or a repeated key. */
    public static Map<String, String> parse(String query) {
        Map<String, String> m = new LinkedHashMap<>();
        if (query == null || query.isEmpty()) {
            return m;
        }
        for (String pair : query.split("&")) {
            int eq = pair.indexOf('=');
            String k = eq < 0 ? pair : pair.substring(0, eq);
            String v = eq < 0 ? "" : pair.substring(eq + 1);
            String key;
            String value;
            try {
                key = URLDecoder.decode(k, StandardCharsets.UTF_8);
                value = URLDecoder.decode(v, StandardCharsets.UTF_8);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("malformed %-escape in the query string: " + pair);
            }
            if (m.put(key, value) != null) {
                throw new IllegalArgumentException(key + ": given twice in the query string");
            }
        }
        return m;
    }

    public static String encode(Map<String, ?> params) {
        StringBuilder sb = new StringBuilder();
        params.forEach((k, v) -> {
            if (v != null) {
                sb.append(sb.isEmpty() ? "" : "&").append(URLEncoder.encode(k, StandardCharsets.UTF_8)).append('=')
                    .append(URLEncoder.encode(v.toString(), StandardCharsets.UTF_8));
            }
        });
        return sb.toString();
    }
}
