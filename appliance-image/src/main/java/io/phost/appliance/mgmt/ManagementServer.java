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
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * The management endpoint: a deliberately small HTTP/1.1 server (GET, and POST with query arguments; one
 * request per connection)
 * on a Unix socket or a TCP address. The JDK's HttpServer cannot listen on a Unix socket, and the API is
 * a handful of GETs, so a hundred lines here beat a web framework in the appliance image.
 *
 * <p>Security: the Unix socket is created mode 0600 (root only). On TCP every path except {@code /health}
 * requires {@code Authorization: Bearer TOKEN}, compared in constant time. Requests are bounded (16 KiB of
 * head, 10 s to send it, 64 connections at once) so a hostile client cannot exhaust the host.
 */
public final class ManagementServer implements Closeable {
    private static final int MAX_HEAD = 16 * 1024;
    private static final int MAX_CONNECTIONS = 64;
    private static final long READ_TIMEOUT_MS = 10_000;

    private final ManagementAddress address;
    private final ServerSocketChannel server;
    private final String token;
    private final Map<String, Function<String, HttpResponse>> routes = new ConcurrentHashMap<>();
    private final Semaphore slots = new Semaphore(MAX_CONNECTIONS);
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
        routes.put(path, handler);
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
            if (!slots.tryAcquire()) {
                respond(ch, HttpResponse.text(503, "too many connections\n"));
                closeQuietly(ch);
                continue;
            }
            Thread.ofVirtual().name("mgmt-conn").start(() -> {
                try {
                    serve(ch);
                } finally {
                    slots.release();
                    closeQuietly(ch);
                }
            });
        }
    }

    private void serve(SocketChannel ch) {
        var timeout = timeouts.schedule(() -> closeQuietly(ch), READ_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        String head;
        try {
            head = readHead(ch);
        } catch (IOException e) {
            return;
        } finally {
            timeout.cancel(false);
        }
        if (head == null) {
            respond(ch, HttpResponse.text(431, "request head too large\n"));
            lingeringClose(ch);
            return;
        }
        respond(ch, handle(head));
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

    HttpResponse handle(String head) {
        String[] lines = head.split("\r\n");
        String[] requestLine = lines[0].split(" ");
        if (requestLine.length != 3 || !requestLine[2].startsWith("HTTP/1.")) {
            return HttpResponse.text(400, "bad request line\n");
        }
        boolean post = requestLine[0].equals("POST");
        if (!requestLine[0].equals("GET") && !post) {
            return HttpResponse.text(405, "only GET and POST are supported\n");
        }
        String target = requestLine[1];
        int q = target.indexOf('?');
        String path = q < 0 ? target : target.substring(0, q);
        String query = q < 0 ? "" : target.substring(q + 1);
        if (!address.isUnix() && !path.equals("/health") && !authorized(lines)) {
            return HttpResponse.text(401, "missing or wrong bearer token\n");
        }
        Function<String, HttpResponse> handler = routes.get(post ? "POST " + path : path);
        if (handler == null && routes.containsKey(post ? path : "POST " + path)) {
            return HttpResponse.text(405, (post ? "GET " : "POST ") + path + " only\n");
        }
        if (handler == null) {
            return HttpResponse.text(404, "no such resource: " + path + " (try /health, /status, /metrics)\n");
        }
        try {
            return handler.apply(query);
        } catch (RuntimeException e) {
            return HttpResponse.text(500, "internal error: " + e + "\n");
        }
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

    /** Reads up to the blank line ending the request head; null when it exceeds {@link #MAX_HEAD}. */
    private static String readHead(SocketChannel ch) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream(512);
        ByteBuffer buf = ByteBuffer.allocate(1024);
        while (head.size() <= MAX_HEAD) {
            buf.clear();
            int n = ch.read(buf);
            if (n < 0) {
                throw new IOException("connection closed before the request head ended");
            }
            head.write(buf.array(), 0, n);
            String s = head.toString(StandardCharsets.ISO_8859_1);
            int end = s.indexOf("\r\n\r\n");
            if (end >= 0) {
                return s.substring(0, end);
            }
        }
        return null;
    }

    private static void respond(SocketChannel ch, HttpResponse r) {
        String head = "HTTP/1.1 " + r.status() + " " + reason(r.status()) + "\r\n"
            + "Content-Type: " + r.contentType() + "\r\n"
            + "Content-Length: " + r.body().length + "\r\n"
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
