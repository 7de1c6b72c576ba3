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
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The guest-agent client against a scripted agent behind a Unix socket (QEMU's chardev side): heartbeat
 * states and counts, guest info cleaned and bounded, and hostile agents (silent, endless lines, deep JSON)
 * that cost a bounded wait and never a hang. The real qemu-guest-agent in a TCG guest is RunVmGuestAgentTest.
 */
@Timeout(60)
class GuestAgentTest {
    private static final Duration T = Duration.ofMillis(300);

    @TempDir
    Path dir;

    private ServerSocketChannel server;
    /** How the agent answers one request line (the request's id is substituted for ID); null: silence. */
    private volatile Function<String, String> agent;
    private final CopyOnWriteArrayList<String> events = new CopyOnWriteArrayList<>();

    private Path serve() throws IOException {
        Path sock = dir.resolve("vm.qga");
        server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(sock));
        Thread.ofVirtual().start(() -> {
            while (server.isOpen()) {
                try {
                    SocketChannel c = server.accept();
                    Thread.ofVirtual().start(() -> connection(c));
                } catch (IOException e) {
                    return;
                }
            }
        });
        return sock;
    }

    private void connection(SocketChannel c) {
        try (c) {
            ByteBuffer buf = ByteBuffer.allocate(4096);
            StringBuilder line = new StringBuilder();
            while (c.read(buf.clear()) > 0) {
                line.append(new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8));
                int nl;
                while ((nl = line.indexOf("\n")) >= 0) {
                    String req = line.substring(0, nl);
                    line.delete(0, nl + 1);
                    String r = agent.apply(req);
                    if (r != null) {
                        long id = (Long) QmpJson.parseObject(req).get("id");
                        ByteBuffer b = ByteBuffer.wrap(r.replace("ID", Long.toString(id)).getBytes(StandardCharsets.UTF_8));
                        while (b.hasRemaining()) {
                            c.write(b);
                        }
                    }
                }
            }
        } catch (IOException e) {
            // the client dropped the connection
        }
    }

    @AfterEach
    void close() throws IOException {
        if (server != null) {
            server.close();
        }
    }

    private GuestAgent client(Path sock) {
        return new GuestAgent(sock, "vm1", Duration.ofSeconds(60), T, (hb, text) -> events.add(hb + ": " + text));
    }

    private static String wellBehaved(String req) {
        if (req.contains("guest-get-osinfo")) {
            return "{\"return\": {\"pretty-name\": \"Debian \\u001b[31mGNU\", \"kernel-release\": \"6.1.0\"}, \"id\": ID}\n";
        }
        if (req.contains("guest-get-host-name")) {
            return "{\"return\": {\"host-name\": \"web1\\nFAKE LOG LINE\"}, \"id\": ID}\n";
        }
        if (req.contains("guest-network-get-interfaces")) {
            return "{\"return\": [{\"name\": \"lo\", \"ip-addresses\": [{\"ip-address\": \"127.0.0.1\", \"prefix\": 8}]},"
                + " {\"name\": \"eth0\", \"ip-addresses\": [{\"ip-address\": \"10.0.0.2\", \"prefix\": 24}]}], \"id\": ID}\n";
        }
        if (req.contains("guest-info")) {
            return "{\"return\": {\"version\": \"7.2.22\"}, \"id\": ID}\n";
        }
        if (req.contains("guest-fsfreeze-freeze") || req.contains("guest-fsfreeze-thaw")) {
            return "{\"return\": 2, \"id\": ID}\n";
        }
        return "{\"return\": {}, \"id\": ID}\n";
    }

    @Test
    void shouldShowHeartbeatAndCleanedGuestInfoFromAnAnsweringAgent() throws Exception {
        agent = GuestAgentTest::wellBehaved;
        try (GuestAgent a = client(serve())) {
            a.beat();
            assertEquals(GuestAgent.Heartbeat.OK, a.heartbeat());
            assertTrue(a.describe().startsWith("OK (last beat 0 s ago; missed 0 in a row"), a.describe());
            GuestAgent.GuestInfo info = a.info();
            assertEquals("Debian ?[31mGNU (kernel 6.1.0)", info.os(), "control characters replaced");
            assertEquals("web1?FAKE LOG LINE", info.hostname(), "a guest cannot forge a log line");
            assertEquals(List.of("eth0 10.0.0.2/24"), info.addresses(), "loopback is not shown");
            assertEquals("7.2.22", info.agentVersion());
            assertEquals(2, a.freezeFileSystems());
            assertEquals(2, a.thawFileSystems());
            assertEquals(List.of("OK: guest agent answers"), events);
        }
    }

    @Test
    void shouldCountMissedBeatsAndReportLostCommunicationOnceAfterContact() throws Exception {
        agent = GuestAgentTest::wellBehaved;
        try (GuestAgent a = client(serve())) {
            a.beat();
            agent = req -> null; // the guest hangs
            for (int i = 0; i < GuestAgent.LOST_AFTER + 2; i++) {
                long t0 = System.nanoTime();
                a.beat();
                assertTrue(System.nanoTime() - t0 < Duration.ofSeconds(5).toNanos(), "a silent agent costs one timeout");
            }
            assertEquals(GuestAgent.Heartbeat.LOST_COMMUNICATION, a.heartbeat());
            assertTrue(a.describe().contains("missed " + (GuestAgent.LOST_AFTER + 2) + " in a row"), a.describe());
            assertEquals(2, events.size(), events.toString());
            assertTrue(events.get(1).startsWith("LOST_COMMUNICATION: heartbeat lost: 3 guest-pings unanswered"), events.toString());
            agent = GuestAgentTest::wellBehaved;
            a.beat();
            assertEquals(GuestAgent.Heartbeat.OK, a.heartbeat());
            assertEquals("OK: heartbeat regained", events.get(2));
        }
    }

    @Test
    void shouldNotCountBeatsWhileTheVmIsPaused() throws Exception {
        agent = GuestAgentTest::wellBehaved;
        try (GuestAgent a = client(serve())) {
            a.beat();
            agent = req -> null; // a paused guest cannot answer
            a.paused(true);
            for (int i = 0; i < GuestAgent.LOST_AFTER + 1; i++) {
                a.beat();
            }
            assertEquals(GuestAgent.Heartbeat.OK, a.heartbeat(), "a pause is not a lost heartbeat");
            assertTrue(a.describe().contains("missed 0 in a row, 0 in all"), a.describe());
            assertEquals(1, events.size(), events.toString());
        }
    }

    @Test
    void shouldStayNoContactWithoutAnAgentAndNotShutDownThroughIt() throws Exception {
        agent = req -> null;
        try (GuestAgent a = client(serve())) {
            a.beat();
            a.beat();
            assertEquals(GuestAgent.Heartbeat.NO_CONTACT, a.heartbeat());
            assertTrue(a.describe().startsWith("No contact"), a.describe());
            assertNull(a.info());
            assertNotNull(a.shutdown(), "no agent: the caller falls back to ACPI");
            assertTrue(events.isEmpty(), "a guest without an agent is not an event");
        }
    }

    @Test
    void shouldDropAHostileAgentsEndlessLineOrDeepJsonAndReconnect() throws Exception {
        String endless = "{\"return\": \"" + "x".repeat(GuestAgent.MAX_REPLY + 10) + "\", \"id\": ID}\n";
        String deep = "{\"return\": " + "[".repeat(10_000) + ", \"id\": ID}\n";
        for (String hostile : List.of(endless, deep)) {
            agent = req -> hostile;
            try (GuestAgent a = client(serve())) {
                QmpException e = assertThrows(QmpException.class, () -> a.call("guest-ping", java.util.Map.of(), Duration.ofSeconds(5)));
                assertNotEquals(QmpException.Reason.TIMEOUT, e.reason(), "the bad line ends the call at once: " + e);
                agent = GuestAgentTest::wellBehaved;
                assertTrue(a.ping(Duration.ofSeconds(5)), "the next call reconnects");
            } finally {
                close();
                java.nio.file.Files.deleteIfExists(dir.resolve("vm.qga"));
            }
        }
    }

    @Test
    void shouldRefuseAFreezeCountThatIsNotACount() throws Exception {
        agent = req -> "{\"return\": {\"evil\": true}, \"id\": ID}\n";
        try (GuestAgent a = client(serve())) {
            QmpException e = assertThrows(QmpException.class, a::freezeFileSystems);
            assertEquals(QmpException.Reason.MALFORMED, e.reason());
        }
    }
}
