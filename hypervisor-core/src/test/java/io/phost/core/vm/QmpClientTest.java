package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The QMP client against a scripted peer: replies by id, events, errors, and peers that are not QEMU. */
class QmpClientTest {
    @TempDir
    Path dir;

    /** Serves one connection: sends the greeting, then answers each line with {@code reply} (or nothing). */
    private Thread peer(Path sock, String greeting, java.util.function.Function<String, String> reply) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(sock));
        return Thread.ofVirtual().start(() -> {
            try (server; SocketChannel c = server.accept()) {
                write(c, greeting);
                ByteBuffer buf = ByteBuffer.allocate(4096);
                StringBuilder line = new StringBuilder();
                while (c.read(buf.clear()) > 0) {
                    line.append(new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8));
                    int nl;
                    while ((nl = line.indexOf("\n")) >= 0) {
                        String r = reply.apply(line.substring(0, nl));
                        line.delete(0, nl + 1);
                        if (r != null) {
                            write(c, r);
                        }
                    }
                }
            } catch (IOException e) {
                // the client went away
            }
        });
    }

    private static void write(SocketChannel c, String s) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
        while (b.hasRemaining()) {
            c.write(b);
        }
    }

    private static long id(String command) {
        return (Long) QmpJson.parseObject(command).get("id");
    }

    @Test
    void shouldMatchRepliesByIdDeliverEventsAndReportCommandErrors() throws Exception {
        Path sock = dir.resolve("q.sock");
        CopyOnWriteArrayList<Map<String, Object>> events = new CopyOnWriteArrayList<>();
        peer(sock, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n", cmd -> {
            long id = id(cmd);
            if (cmd.contains("\"bogus\"")) {
                return "{\"id\": " + id + ", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command bogus has not been found\"}}\r\n";
            }
            String status = cmd.contains("query-status") ? "{\"status\": \"running\", \"running\": true}" : "{}";
            return "{\"event\": \"RESUME\", \"data\": {}}\r\n{\"return\": " + status + ", \"id\": " + id + "}\r\n";
        });
        Consumer<Map<String, Object>> sink = events::add;
        try (QmpClient q = QmpClient.connect(sock, Duration.ofSeconds(5), () -> true, sink, "t")) {
            assertEquals(Map.of("status", "running", "running", true), q.execute("query-status", Duration.ofSeconds(5)));
            QmpException e = assertThrows(QmpException.class, () -> q.execute("bogus", Duration.ofSeconds(5)));
            assertEquals(QmpException.Reason.COMMAND_FAILED, e.reason());
            assertTrue(e.getMessage().contains("CommandNotFound"), e.getMessage());
            assertTrue(events.stream().anyMatch(m -> "RESUME".equals(m.get("event"))), events.toString());
        }
    }

    @Test
    void shouldRefuseAPeerWhoseGreetingIsNotQmp() throws Exception {
        Path sock = dir.resolve("n.sock");
        peer(sock, "SSH-2.0-OpenSSH_9.2\r\n", cmd -> null);
        QmpException e = assertThrows(QmpException.class,
            () -> QmpClient.connect(sock, Duration.ofSeconds(3), () -> true, m -> { }, "t"));
        assertTrue(e.reason() == QmpException.Reason.MALFORMED || e.reason() == QmpException.Reason.DISCONNECTED, e.toString());
    }

    @Test
    void shouldTimeOutACommandThePeerNeverAnswers() throws Exception {
        Path sock = dir.resolve("s.sock");
        peer(sock, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n",
            cmd -> cmd.contains("qmp_capabilities") ? "{\"return\": {}, \"id\": " + id(cmd) + "}\n" : null);
        try (QmpClient q = QmpClient.connect(sock, Duration.ofSeconds(5), () -> true, m -> { }, "t")) {
            QmpException e = assertThrows(QmpException.class, () -> q.execute("cont", Duration.ofMillis(300)));
            assertEquals(QmpException.Reason.TIMEOUT, e.reason());
        }
    }

    @Test
    void shouldGiveUpWhenQemuExitsBeforeItsSocketAppears() {
        QmpException e = assertThrows(QmpException.class,
            () -> QmpClient.connect(dir.resolve("never.sock"), Duration.ofSeconds(5), () -> false, m -> { }, "t"));
        assertEquals(QmpException.Reason.DISCONNECTED, e.reason());
        assertTrue(e.getMessage().contains("QEMU exited"), e.getMessage());
    }
}
