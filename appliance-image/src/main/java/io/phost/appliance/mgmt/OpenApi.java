package io.phost.appliance.mgmt;

import io.phost.core.text.Json;
import io.phost.appliance.util.MiniYaml;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * The management API's description, {@code docs/openapi.yaml} (shipped in the jar), served as
 * {@code GET /openapi.json}. The host installs only documented routes ({@link #requireDocumented}), and a
 * test calls every documented operation on a live host, so the document and the code cannot drift apart.
 */
public final class OpenApi {
    static final String RESOURCE = "/io/phost/appliance/mgmt/openapi.yaml";
    private static final Map<?, ?> DOCUMENT = load();
    private static final String JSON = Json.pretty(DOCUMENT);

    private OpenApi() {
    }

    private static Map<?, ?> load() {
        try (InputStream in = OpenApi.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("missing classpath resource " + RESOURCE);
            }
            return (Map<?, ?>) MiniYaml.parse(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The document as JSON. */
    public static String json() {
        return JSON;
    }

    public static Map<?, ?> document() {
        return DOCUMENT;
    }

    /** Every documented operation as {@code "METHOD /path"}, e.g. {@code "POST /v1/qos/policies"}. */
    public static Set<String> operations() {
        Set<String> out = new LinkedHashSet<>();
        ((Map<?, ?>) DOCUMENT.get("paths")).forEach((path, item) -> ((Map<?, ?>) item).keySet().forEach(m -> {
            String method = m.toString();
            if (Set.of("get", "post", "put", "delete", "patch").contains(method)) {
                out.add(method.toUpperCase(Locale.ROOT) + " " + path);
            }
        }));
        return out;
    }

    /** Throws IllegalStateException when {@code operation} ("METHOD /path") is not in openapi.yaml. */
    public static void requireDocumented(String operation) {
        if (!operations().contains(operation)) {
            throw new IllegalStateException("route " + operation + " is not described in docs/openapi.yaml; "
                + "describe it there (documented: " + operations() + ")");
        }
    }
}
