package io.phost.core.vm;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * A QEMU Machine Protocol client on a Unix socket ({@code docs/interop/qmp-spec.rst}).
 * <pre>
 *   QEMU ─▶ {"QMP": {"version": ..., "capabilities": [...]}}            greeting
 *   phost ─▶ {"execute": "qmp_capabilities", "id": 1}  ◀─ {"return": {}, "id": 1}
 *   phost ─▶ {"execute": "cont", "id": 2}              ◀─ {"return": {}, "id": 2}
 *   QEMU ─▶ {"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {...}}
 * </pre>
 * One reader thread takes lines off the socket: replies complete the waiting command (matched by id),
 * events go to the listener. Commands may be sent from any thread. A message longer than
 * {@link #MAX_MESSAGE} closes the connection (QEMU never sends one; a peer that does is not QEMU).
 * <p>
 * The guest agent speaks the same protocol without the greeting ({@link #open}); it runs inside the guest,
 * so its peer is hostile: every line is bounded (the caller's limit), nesting is bounded by {@code Json}'s
 * depth limit, and any malformed message closes the connection (the caller reconnects).
 */
public final class QmpClient implements AutoCloseable {
    static final int MAX_MESSAGE = 1 << 20;

    private final SocketChannel channel;
    private final int maxMessage;
    private final Consumer<Map<String, Object>> events;
    private final Map<Long, CompletableFuture<Map<String, Object>>> pending = new ConcurrentHashMap<>();
    private final AtomicLong ids = new AtomicLong();
    private final CompletableFuture<Map<String, Object>> greeting = new CompletableFuture<>();
    private final Thread reader;
    private volatile String closedWhy;

    private QmpClient(SocketChannel channel, int maxMessage, Consumer<Map<String, Object>> events, String threadName) {
        this.channel = channel;
        this.maxMessage = maxMessage;
        this.events = events;
        this.reader = Thread.ofPlatform().daemon().name(threadName).unstarted(this::readLoop);
    }

    /**
     * One connection attempt to a peer that sends no greeting (qemu-guest-agent behind QEMU's chardev socket);
     * lines longer than {@code maxMessage} bytes close it.
     */
    public static QmpClient open(Path socket, int maxMessage, Consumer<Map<String, Object>> events, String threadName) {
        SocketChannel ch = null;
        try {
            ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            ch.connect(UnixDomainSocketAddress.of(socket));
            QmpClient c = new QmpClient(ch, maxMessage, events, threadName);
            c.reader.start();
            return c;
        } catch (IOException e) {
            closeQuietly(ch);
            throw new QmpException(QmpException.Reason.DISCONNECTED, "cannot connect to " + socket + ": " + e.getMessage());
        }
    }

    /**
     * Connects to {@code socket}, retrying until {@code timeout} while {@code alive} holds (QEMU creates the
     * socket shortly after it starts), reads the greeting and leaves capability negotiation.
     */
    public static QmpClient connect(Path socket, Duration timeout, java.util.function.BooleanSupplier alive,
                                    Consumer<Map<String, Object>> events, String name) {
        long deadline = System.nanoTime() + timeout.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline && alive.getAsBoolean()) {
            SocketChannel ch = null;
            try {
                ch = SocketChannel.open(StandardProtocolFamily.UNIX);
                ch.connect(UnixDomainSocketAddress.of(socket));
                QmpClient c = new QmpClient(ch, MAX_MESSAGE, events, "qmp-" + name);
                c.reader.start();
                c.handshake(Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
                return c;
            } catch (IOException e) {
                last = e;
                closeQuietly(ch);
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        throw new QmpException(QmpException.Reason.DISCONNECTED, "no QMP on " + socket + " within " + timeout
            + (alive.getAsBoolean() ? "" : " (QEMU exited)") + (last == null ? "" : ": " + last.getMessage()));
    }

    private void handshake(Duration timeout) {
        try {
            Map<String, Object> g = greeting.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
            if (!(g.get("QMP") instanceof Map<?, ?>)) {
                throw new QmpException(QmpException.Reason.MALFORMED, "greeting without a QMP member: " + g);
            }
        } catch (TimeoutException e) {
            close();
            throw new QmpException(QmpException.Reason.TIMEOUT, "no QMP greeting within " + timeout);
        } catch (ExecutionException e) {
            close();
            throw e.getCause() instanceof QmpException q ? q
                : new QmpException(QmpException.Reason.DISCONNECTED, String.valueOf(e.getCause()));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new QmpException(QmpException.Reason.DISCONNECTED, "interrupted");
        }
        execute("qmp_capabilities", Map.of(), timeout);
    }

    /** Runs {@code command} and returns its "return" member (an object, or whatever QEMU returned). */
    public Object execute(String command, Map<String, ?> arguments, Duration timeout) {
        long id = ids.incrementAndGet();
        CompletableFuture<Map<String, Object>> f = new CompletableFuture<>();
        pending.put(id, f);
        try {
            if (closedWhy != null) {
                throw new QmpException(QmpException.Reason.DISCONNECTED, closedWhy);
            }
            send(QmpJson.command(command, arguments, id) + "\n");
            Map<String, Object> reply = f.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
            if (reply.get("error") instanceof Map<?, ?> err) {
                throw new QmpException(QmpException.Reason.COMMAND_FAILED,
                    command + ": " + err.get("class") + ": " + err.get("desc"));
            }
            return reply.get("return");
        } catch (TimeoutException e) {
            throw new QmpException(QmpException.Reason.TIMEOUT, command + " unanswered after " + timeout);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof QmpException q ? q
                : new QmpException(QmpException.Reason.DISCONNECTED, String.valueOf(e.getCause()));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new QmpException(QmpException.Reason.DISCONNECTED, "interrupted");
        } finally {
            pending.remove(id);
        }
    }

    public Object execute(String command, Duration timeout) {
        return execute(command, Map.of(), timeout);
    }

    private synchronized void send(String line) {
        ByteBuffer b = ByteBuffer.wrap(line.getBytes(StandardCharsets.UTF_8));
        try {
            while (b.hasRemaining()) {
                channel.write(b);
            }
        } catch (IOException e) {
            throw new QmpException(QmpException.Reason.DISCONNECTED, "write: " + e.getMessage());
        }
    }

    private void readLoop() {
        ByteBuffer buf = ByteBuffer.allocate(8192);
        ByteArrayOutputStream line = new ByteArrayOutputStream(256);
        String why = "QMP connection closed";
        try {
            while (channel.read(buf.clear()) >= 0) {
                for (int k = 0; k < buf.position(); k++) {
                    byte b = buf.get(k);
                    if (b == '\n') {
                        dispatch(line.toString(StandardCharsets.UTF_8).strip());
                        line.reset();
                    } else if (line.size() >= maxMessage) {
                        throw new QmpException(QmpException.Reason.TOO_LONG, "a message over " + maxMessage + " bytes");
                    } else {
                        line.write(b);
                    }
                }
            }
        } catch (IOException e) {
            why = "QMP read: " + e.getMessage();
        } catch (QmpException e) {
            why = e.getMessage();
        }
        fail(why);
    }

    private void dispatch(String text) {
        if (text.isEmpty()) {
            return;
        }
        Map<String, Object> m = QmpJson.parseObject(text);
        if (m.containsKey("QMP")) {
            greeting.complete(m);
        } else if (m.containsKey("event")) {
            try {
                events.accept(m);
            } catch (RuntimeException e) {
                // a listener's bug must not end the connection
            }
        } else if (m.get("id") instanceof Long id) {
            CompletableFuture<Map<String, Object>> f = pending.get(id);
            if (f != null) {
                f.complete(m);
            }
        }
    }

    private void fail(String why) {
        closedWhy = why;
        QmpException e = new QmpException(QmpException.Reason.DISCONNECTED, why);
        greeting.completeExceptionally(e);
        pending.values().forEach(f -> f.completeExceptionally(e));
        closeQuietly(channel);
    }

    public boolean isOpen() {
        return closedWhy == null;
    }

    @Override
    public void close() {
        closeQuietly(channel);
        if (closedWhy == null) {
            closedWhy = "closed by phost";
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // nothing left to release
            }
        }
    }
}
