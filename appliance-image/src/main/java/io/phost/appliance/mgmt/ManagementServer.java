package io.phost.appliance.mgmt;

import io.phost.core.sys.SocketFiles;
import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * The management endpoint: a deliberately small HTTP/1.1 server (GET, and POST with query arguments; one
 * request per connection)
 * on a Unix socket or a TCP address. The JDK's HttpServer cannot listen on a Unix socket, and the API is
 * a handful of GETs, so a hundred lines here beat a web framework in the appliance image.
 *
 * <p>Security: the Unix socket is created mode 0600 (root only). On TCP every path except {@link #HEALTH}
 * requires {@code Authorization: Bearer TOKEN}, compared in constant time. Requests are bounded (16 KiB of
 * head, 10 s to send it) and connection slots are split so that unauthenticated clients cannot exhaust them:
 * <pre>
 *   accept ──▶ pending (reading the head; at most 512; the oldest is closed to admit a newcomer;
 *              closed after 1 s without a byte, 10 s in all)
 *          ──▶ 401 at once when not authorized (no slot)  |  /v1/health answered at once (no slot)
 *          ──▶ serving (authorized requests: at most 16 handlers at once, else 503)
 * </pre>
 * Errors are JSON ({@code {"error": ..., "reason": ...}}); a 405 names the allowed methods in {@code Allow};
 * an old unversioned path ({@code /status}) is redirected (308) to its {@code /v1/} path.
 */
public final class ManagementServer implements Closeable {
    private static final System.Logger LOG = System.getLogger("phost.mgmt");
    /** The one path a TCP client may ask without the token. */
    public static final String HEALTH = "/v1/health";
    private static final int MAX_HEAD = 16 * 1024;
    static final int MAX_PENDING = 512;
    static final int MAX_SERVING = 16;
    static final long IDLE_TIMEOUT_MS = 1_000;
    private static final long READ_TIMEOUT_MS = 10_000;

    private final ManagementAddress address;
    private final ServerSocketChannel server;
    private final String token;
    private final Map<String, Function<String, HttpResponse>> routes = new ConcurrentHashMap<>();
    /** POST routes that read a request body (at most {@link #MAX_BODY} bytes, Content-Length required). */
    private final Map<String, java.util.function.BiFunction<String, byte[], HttpResponse>> bodyRoutes = new ConcurrentHashMap<>();
    /** The largest request body read (a config file's limit). */
    public static final int MAX_BODY = 1 << 20;
    /** Connections whose request head is still being read, oldest first. */
    private final ConcurrentLinkedDeque<SocketChannel> pending = new ConcurrentLinkedDeque<>();
    private final AtomicInteger pendingCount = new AtomicInteger();
    private final Semaphore serving = new Semaphore(MAX_SERVING);
    private final ScheduledExecutorService timeouts = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "mgmt-timeouts");
        t.setDaemon(true);
        return t;
    });
    private final Thread acceptor;
    private volatile boolean closed;

    /**
     * Binds {@code address}. {@code token} is required for TCP and ignored for Unix sockets. A stale socket
     * file left by a killed host is replaced; a live one (another host answering) is refused.
     */
    public ManagementServer(ManagementAddress address, String token) throws IOException {
        if (!address.isUnix() && (token == null || token.isBlank())) {
            throw new IllegalArgumentException("a TCP management endpoint needs a token");
        }
        this.token = token;
        if (address.isUnix()) {
            if (Files.exists(address.unixPath()) && SocketFiles.isSocket(address.unixPath())
                && ManagementClient.isAlive(address)) {
                throw new IOException("another phost is serving " + address);
            }
            // 0600 from the moment it exists; a stale socket is replaced, any other file is refused, never deleted
            server = SocketFiles.bindPrivate(address.unixPath());
            this.address = address;
        } else {
            server = ServerSocketChannel.open();
            server.bind(address.socketAddress());
            this.address = address.withPort(((InetSocketAddress) server.getLocalAddress()).getPort());
        }
        acceptor = Thread.ofPlatform().daemon().name("mgmt-accept").unstarted(this::acceptLoop);
    }

    /** Routes GET {@code path} (exact match, query string passed to the handler) to {@code handler}. */
    public ManagementServer route(String path, Function<String, HttpResponse> handler) {
        routes.put("GET " + path, handler);
        return this;
    }

    /**
     * Routes POST {@code path} to {@code handler}; the query string carries the arguments (no body is read).
     * A route key starting with "POST " in a component's routes lands here.
     */
    public ManagementServer routePost(String path, Function<String, HttpResponse> handler) {
        routes.put("POST " + path, handler);
        return this;
    }

    /** Routes POST {@code path} to {@code handler}, which gets the query string and the request body. */
    public ManagementServer routePostBody(String path, java.util.function.BiFunction<String, byte[], HttpResponse> handler) {
        bodyRoutes.put("POST " + path, handler);
        routes.put("POST " + path, q -> handler.apply(q, new byte[0]));
        return this;
    }

    public ManagementServer start() {
        acceptor.start();
        return this;
    }

    /** The bound address (with the real port when TCP port 0 was asked for). */
    public ManagementAddress address() {
        return address;
    }

    private void acceptLoop() {
        while (!closed) {
            SocketChannel ch;
            try {
                ch = server.accept();
            } catch (IOException e) {
                if (closed) {
                    return;
                }
                continue;
            }
            pending.addLast(ch);
            if (pendingCount.incrementAndGet() > MAX_PENDING) {
                // Full of clients that have not finished their request head: drop the oldest, not the newcomer,
                // so clients that hold connections open cannot lock out one that sends its request at once.
                SocketChannel oldest = pending.pollFirst();
                if (oldest != null) {
                    pendingCount.decrementAndGet();
                    closeQuietly(oldest);
                }
            }
            Thread.ofVirtual().name("mgmt-conn").start(() -> {
                try {
                    serve(ch);
                } finally {
                    closeQuietly(ch);
                }
            });
        }
    }

    private void serve(SocketChannel ch) {
        String head;
        ByteArrayOutputStream rest = new ByteArrayOutputStream();
        try {
            head = readHead(ch, rest);
        } catch (IOException e) {
            return;
        } finally {
            if (pending.remove(ch)) { // false when evicted: the acceptor took it out and counted it
                pendingCount.decrementAndGet();
            }
        }
        if (head == null) {
            respond(ch, HttpResponse.error(431, HttpResponse.Reason.REQUEST_HEAD_TOO_LARGE,
                "request head larger than " + MAX_HEAD + " bytes"));
            lingeringClose(ch);
            return;
        }
        long t0 = System.nanoTime();
        HttpResponse r;
        try {
            r = handle(head, readBody(ch, head, rest));
        } catch (IOException e) {
            r = HttpResponse.error(400, HttpResponse.Reason.BAD_REQUEST, oneLine(e.getMessage()));
        }
        respond(ch, r);
        if (LOG.isLoggable(System.Logger.Level.DEBUG)) { // -Dphost.log.level=DEBUG: one line per API request
            String[] line = head.substring(0, Math.max(0, head.indexOf("\r\n"))).split(" ");
            String path = line.length > 1 ? line[1].replaceFirst("\\?.*", "") : "?";
            LOG.log(System.Logger.Level.DEBUG, String.format(java.util.Locale.ROOT, "request method=%s path=%s status=%d ms=%.2f",
                line.length > 0 && line[0].matches("[A-Z]{1,10}") ? line[0] : "?", path.matches("[\\x21-\\x7e]{1,200}") ? path : "?",
                r.status(), (System.nanoTime() - t0) / 1e6));
        }
    }

    /**
     * Closing a socket with unread input makes the kernel send RST, which can destroy the error response
     * before the client reads it; so shut our side, then drain (bounded in bytes and by the read timeout).
     */
    private void lingeringClose(SocketChannel ch) {
        var timeout = timeouts.schedule(() -> closeQuietly(ch), 1000, TimeUnit.MILLISECONDS);
        try {
            ch.shutdownOutput();
            ByteBuffer sink = ByteBuffer.allocate(4096);
            long drained = 0;
            while (drained < 1 << 20) {
                int n = ch.read(sink.clear());
                if (n < 0) {
                    break;
                }
                drained += n;
            }
        } catch (IOException ignored) {
            // the client went away
        } finally {
            timeout.cancel(false);
        }
    }

    /**
     * The body of a request to a body route (Content-Length bytes, at most {@link #MAX_BODY}), else null: other
     * routes read no body.
     */
    private byte[] readBody(SocketChannel ch, String head, ByteArrayOutputStream rest) throws IOException {
        String[] requestLine = head.substring(0, Math.max(0, head.indexOf("\r\n") < 0 ? head.length() : head.indexOf("\r\n"))).split(" ");
        if (requestLine.length < 2 || !bodyRoutes.containsKey(requestLine[0] + " " + requestLine[1].replaceFirst("\\?.*", ""))) {
            return null;
        }
        if (!address.isUnix() && !authorized(head.split("\r\n"))) {
            return null; // answered 401 without reading what a stranger sends
        }
        long length = -1;
        for (String line : head.split("\r\n")) {
            int colon = line.indexOf(':');
            if (colon > 0 && line.substring(0, colon).trim().equalsIgnoreCase("content-length")) {
                try {
                    length = Long.parseLong(line.substring(colon + 1).trim());
                } catch (NumberFormatException e) {
                    throw new IOException("bad Content-Length");
                }
            }
        }
        if (length < 0) {
            throw new IOException("a body is required, with Content-Length");
        }
        if (length > MAX_BODY) {
            throw new IOException("body larger than " + MAX_BODY + " bytes");
        }
        var timeout = timeouts.schedule(() -> closeQuietly(ch), READ_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        try {
            ByteBuffer buf = ByteBuffer.allocate(8192);
            while (rest.size() < length) {
                int n = ch.read(buf.clear());
                if (n < 0) {
                    throw new IOException("connection closed before the body ended");
                }
                rest.write(buf.array(), 0, n);
            }
        } finally {
            timeout.cancel(false);
        }
        return java.util.Arrays.copyOf(rest.toByteArray(), (int) length);
    }

    HttpResponse handle(String head) {
        return handle(head, null);
    }

    HttpResponse handle(String head, byte[] body) {
        String[] lines = head.split("\r\n");
        String[] requestLine = lines[0].split(" ");
        if (requestLine.length != 3 || !requestLine[2].startsWith("HTTP/1.")) {
            return HttpResponse.error(400, HttpResponse.Reason.BAD_REQUEST, "bad request line");
        }
        String method = requestLine[0];
        String target = requestLine[1];
        int q = target.indexOf('?');
        String path = q < 0 ? target : target.substring(0, q);
        String query = q < 0 ? "" : target.substring(q + 1);
        if (!address.isUnix() && !path.equals(HEALTH) && !path.equals("/health") && !authorized(lines)) {
            return HttpResponse.error(401, HttpResponse.Reason.UNAUTHORIZED, "missing or wrong bearer token");
        }
        Function<String, HttpResponse> handler = routes.get(method + " " + path);
        var bodyHandler = body == null ? null : bodyRoutes.get(method + " " + path);
        if (bodyHandler != null) {
            handler = query1 -> bodyHandler.apply(query1, body);
        }
        if (handler == null) {
            String allow = allowed(path);
            if (!allow.isEmpty()) {
                return HttpResponse.error(405, HttpResponse.Reason.METHOD_NOT_ALLOWED, method + " " + path + ": allowed " + allow)
                    .withHeader("Allow", allow);
            }
            if (!allowed("/v1" + path).isEmpty()) {
                return HttpResponse.error(308, HttpResponse.Reason.MOVED, path + " moved to /v1" + path)
                    .withHeader("Location", "/v1" + target);
            }
            return HttpResponse.error(404, HttpResponse.Reason.NOT_FOUND, "no such resource: " + path
                + " (the API: GET /openapi.json)");
        }
        if (path.equals(HEALTH)) {
            return call(handler, query); // always answered: never waits for a slot
        }
        if (!serving.tryAcquire()) {
            return HttpResponse.error(503, HttpResponse.Reason.TOO_MANY_CONNECTIONS,
                MAX_SERVING + " requests are being served; retry");
        }
        try {
            return call(handler, query);
        } finally {
            serving.release();
        }
    }

    private static HttpResponse call(Function<String, HttpResponse> handler, String query) {
        try {
            return handler.apply(query);
        } catch (IllegalArgumentException e) {
            return HttpResponse.error(400, HttpResponse.Reason.INVALID_ARGUMENT, oneLine(e.getMessage()));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "management request failed", e);
            return HttpResponse.error(500, HttpResponse.Reason.INTERNAL_ERROR, "internal error (logged by the host)");
        }
    }

    private static String oneLine(String s) {
        return s == null ? "" : s.replaceAll("[\\r\\n\\t]", " ");
    }

    /** The methods routed for {@code path}, as an {@code Allow} header value ("" when none). */
    private String allowed(String path) {
        List<String> methods = new ArrayList<>();
        for (String m : List.of("GET", "POST")) {
            if (routes.containsKey(m + " " + path)) {
                methods.add(m);
            }
        }
        return String.join(", ", methods);
    }

    /** Every routed {@code "METHOD /path"}. */
    public java.util.Set<String> routeKeys() {
        return java.util.Set.copyOf(routes.keySet());
    }

    private boolean authorized(String[] lines) {
        for (int i = 1; i < lines.length; i++) {
            int colon = lines[i].indexOf(':');
            if (colon > 0 && lines[i].substring(0, colon).trim().equalsIgnoreCase("authorization")) {
                String v = lines[i].substring(colon + 1).trim();
                if (v.regionMatches(true, 0, "Bearer ", 0, 7)) {
                    return MessageDigest.isEqual(v.substring(7).trim().getBytes(StandardCharsets.UTF_8),
                        token.getBytes(StandardCharsets.UTF_8));
                }
            }
        }
        return false;
    }

    /**
     * Reads up to the blank line ending the request head; null when it exceeds {@link #MAX_HEAD}. A client
     * that sends nothing for {@link #IDLE_TIMEOUT_MS}, or takes {@link #READ_TIMEOUT_MS} in all, is closed.
     */
    private String readHead(SocketChannel ch, ByteArrayOutputStream rest) throws IOException {
        long started = System.nanoTime();
        var timeout = timeouts.schedule(() -> closeQuietly(ch), IDLE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        try {
            ByteArrayOutputStream head = new ByteArrayOutputStream(512);
            ByteBuffer buf = ByteBuffer.allocate(1024);
            while (head.size() <= MAX_HEAD) {
                buf.clear();
                int n = ch.read(buf);
                if (n < 0) {
                    throw new IOException("connection closed before the request head ended");
                }
                if (head.size() == 0 && n > 0) {
                    timeout.cancel(false);
                    long left = READ_TIMEOUT_MS - (System.nanoTime() - started) / 1_000_000;
                    timeout = timeouts.schedule(() -> closeQuietly(ch), Math.max(1, left), TimeUnit.MILLISECONDS);
                }
                head.write(buf.array(), 0, n);
                String s = head.toString(StandardCharsets.ISO_8859_1);
                int end = s.indexOf("\r\n\r\n");
                if (end >= 0) {
                    byte[] all = head.toByteArray();
                    rest.write(all, end + 4, all.length - end - 4); // the start of a body
                    return s.substring(0, end);
                }
            }
            return null;
        } finally {
            timeout.cancel(false);
        }
    }

    private static void respond(SocketChannel ch, HttpResponse r) {
        StringBuilder extra = new StringBuilder();
        r.headers().forEach((k, v) -> extra.append(k).append(": ").append(v.replaceAll("[\\r\\n]", "")).append("\r\n"));
        String head = "HTTP/1.1 " + r.status() + " " + reason(r.status()) + "\r\n"
            + "Content-Type: " + r.contentType() + "\r\n"
            + "Content-Length: " + r.body().length + "\r\n"
            + extra
            + "Connection: close\r\n\r\n";
        try {
            ByteBuffer[] bufs = {ByteBuffer.wrap(head.getBytes(StandardCharsets.ISO_8859_1)), ByteBuffer.wrap(r.body())};
            while (bufs[0].hasRemaining() || bufs[1].hasRemaining()) { // an empty body still needs its head
                ch.write(bufs);
            }
        } catch (IOException ignored) {
            // the client went away; nothing to tell it
        }
    }

    private static String reason(int status) {
        return switch (status) {
            case 200 -> "OK";
            case 400 -> "Bad Request";
            case 401 -> "Unauthorized";
            case 404 -> "Not Found";
            case 405 -> "Method Not Allowed";
            case 308 -> "Permanent Redirect";
            case 500 -> "Internal Server Error";
            case 431 -> "Request Header Fields Too Large";
            case 503 -> "Service Unavailable";
            default -> "Error";
        };
    }

    private static void closeQuietly(Closeable c) {
        try {
            c.close();
        } catch (IOException ignored) {
            // closing is best effort
        }
    }

    @Override
    public void close() {
        closed = true;
        closeQuietly(server);
        timeouts.shutdownNow();
        if (address.isUnix()) {
            SocketFiles.unlinkIfSocket(address.unixPath()); // a stale socket file is replaced on the next start
        }
    }
}
