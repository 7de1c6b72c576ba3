package io.phost.appliance.mgmt;

import io.phost.core.text.Json;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** A management API response; {@code headers} are extra response headers (e.g. {@code Allow}, {@code Location}). */
public record HttpResponse(int status, String contentType, byte[] body, Map<String, String> headers) {
    /** Why a request failed: the {@code reason} of every JSON error body (docs/openapi.yaml, schema Error). */
    public enum Reason {
        BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, MOVED, METHOD_NOT_ALLOWED, INVALID_ARGUMENT, LIMIT_REACHED,
        REQUEST_HEAD_TOO_LARGE, TOO_MANY_CONNECTIONS, INTERNAL_ERROR;

        /** The wire form: snake_case, like every key and enum value of the API. */
        public String wire() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    public HttpResponse {
        headers = Map.copyOf(headers);
    }

    public HttpResponse(int status, String contentType, byte[] body) {
        this(status, contentType, body, Map.of());
    }

    public static HttpResponse json(String json) {
        return new HttpResponse(200, "application/json", json.getBytes(StandardCharsets.UTF_8));
    }

    public static HttpResponse text(int status, String text) {
        return new HttpResponse(status, "text/plain; charset=utf-8", text.getBytes(StandardCharsets.UTF_8));
    }

    /** {@code {"error": message, "reason": reason}} with {@code status}. */
    public static HttpResponse error(int status, Reason reason, String message) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("error", message);
        body.put("reason", reason.wire());
        return new HttpResponse(status, "application/json", (Json.write(body) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    /** Prometheus text exposition format 0.0.4 (the content type the Prometheus client's writer declares). */
    public static HttpResponse metrics(String text) {
        return new HttpResponse(200, "text/plain; version=0.0.4; charset=utf-8", text.getBytes(StandardCharsets.UTF_8));
    }

    /** This response with one more header. */
    public HttpResponse withHeader(String name, String value) {
        Map<String, String> h = new LinkedHashMap<>(headers);
        h.put(name, value);
        return new HttpResponse(status, contentType, body, h);
    }

    public String bodyText() {
        return new String(body, StandardCharsets.UTF_8);
    }
}
