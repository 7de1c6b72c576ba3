package io.phost.appliance.mgmt;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;

/** GETs a resource from a running host's management endpoint (Unix socket or TCP with a token). */
public final class ManagementClient {
    private static final int MAX_RESPONSE = 16 * 1024 * 1024;

    private final ManagementAddress address;
    private final String token;

    public ManagementClient(ManagementAddress address, String token) {
        this.address = address;
        this.token = token;
    }

    public ManagementAddress address() {
        return address;
    }

    public HttpResponse get(String target) throws IOException {
        return request("GET", target);
    }

    /** POST with the arguments in the query string and an empty body. */
    public HttpResponse post(String target) throws IOException {
        return request("POST", target);
    }

    /** POST with {@code body} (e.g. a config's text for /v1/config). */
    public HttpResponse post(String target, byte[] body) throws IOException {
        return request("POST", target, body);
    }

    private HttpResponse request(String method, String target) throws IOException {
        return request(method, target, method.equals("POST") ? new byte[0] : null);
    }

    private HttpResponse request(String method, String target, byte[] body) throws IOException {
        try (SocketChannel ch = address.isUnix()
            ? SocketChannel.open(address.family()) : SocketChannel.open()) {
            ch.connect(address.socketAddress());
            String req = method + " " + target + " HTTP/1.1\r\nHost: phost\r\n"
                + (token != null ? "Authorization: Bearer " + token + "\r\n" : "")
                + (body != null ? "Content-Length: " + body.length + "\r\n" : "")
                + "Connection: close\r\n\r\n";
            ByteBuffer out = ByteBuffer.wrap(req.getBytes(StandardCharsets.ISO_8859_1));
            while (out.hasRemaining()) {
                ch.write(out);
            }
            if (body != null) {
                ByteBuffer b = ByteBuffer.wrap(body);
                while (b.hasRemaining()) {
                    ch.write(b);
                }
            }
            ByteArrayOutputStream all = new ByteArrayOutputStream();
            ByteBuffer buf = ByteBuffer.allocate(8192);
            while (ch.read(buf.clear()) >= 0) {
                all.write(buf.array(), 0, buf.position());
                if (all.size() > MAX_RESPONSE) {
                    throw new IOException("response from " + address + " exceeds " + MAX_RESPONSE + " bytes");
                }
            }
            byte[] bytes = all.toByteArray();
            String text = new String(bytes, StandardCharsets.ISO_8859_1);
            int end = text.indexOf("\r\n\r\n");
            if (end < 0 || !text.startsWith("HTTP/1.")) {
                throw new IOException("malformed response from " + address);
            }
            int status = Integer.parseInt(text.substring(9, 12));
            String contentType = "";
            java.util.Map<String, String> headers = new java.util.LinkedHashMap<>();
            String[] headLines = text.substring(0, end).split("\r\n");
            for (int i = 1; i < headLines.length; i++) {
                int colon = headLines[i].indexOf(':');
                if (colon <= 0) {
                    continue;
                }
                String name = headLines[i].substring(0, colon).trim();
                String value = headLines[i].substring(colon + 1).trim();
                if (name.equalsIgnoreCase("content-type")) {
                    contentType = value;
                } else if (!name.equalsIgnoreCase("content-length") && !name.equalsIgnoreCase("connection")) {
                    headers.put(name, value);
                }
            }
            byte[] responseBody = java.util.Arrays.copyOfRange(bytes, end + 4, bytes.length);
            return new HttpResponse(status, contentType, responseBody, headers);
        }
    }

    /** True when something answers /health at {@code address}. */
    public static boolean isAlive(ManagementAddress address) {
        try {
            return new ManagementClient(address, null).get(ManagementServer.HEALTH).status() == 200;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }
}
