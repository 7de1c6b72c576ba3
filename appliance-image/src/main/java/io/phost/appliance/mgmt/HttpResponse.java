package io.phost.appliance.mgmt;

import java.nio.charset.StandardCharsets;

/** A management API response. */
public record HttpResponse(int status, String contentType, byte[] body) {
    public static HttpResponse json(String json) {
        return new HttpResponse(200, "application/json", json.getBytes(StandardCharsets.UTF_8));
    }

    public static HttpResponse text(int status, String text) {
        return new HttpResponse(status, "text/plain; charset=utf-8", text.getBytes(StandardCharsets.UTF_8));
    }

    /** Prometheus text exposition format 0.0.4 (the content type the Prometheus client's writer declares). */
    public static HttpResponse metrics(String text) {
        return new HttpResponse(200, "text/plain; version=0.0.4; charset=utf-8", text.getBytes(StandardCharsets.UTF_8));
    }

    public String bodyText() {
        return new String(body, StandardCharsets.UTF_8);
    }
}
