package io.phost.appliance.mgmt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.util.Json;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ManagementServerTest {
    @TempDir
    Path dir;

    @Test
    void shouldServeRoutesOnAUnixSocketWithOwnerOnlyPermissions() throws IOException {
        ManagementAddress a = ManagementAddress.parse("unix:" + dir.resolve("m.sock"));
        try (ManagementServer s = new ManagementServer(a, null)) {
            s.route("/health", q -> HttpResponse.json("{\"status\":\"ok\"}")).start();
            HttpResponse r = new ManagementClient(a, null).get("/health");
            assertEquals(200, r.status());
            assertEquals(Map.of("status", "ok"), Json.parse(r.bodyText()));
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve("m.sock"))));
            assertEquals(404, new ManagementClient(a, null).get("/nope").status());
        }
        assertFalse(Files.exists(dir.resolve("m.sock")), "socket file removed on close");
    }

    @Test
    void shouldSendTheHeadOfAResponseWithAnEmptyBody() throws IOException {
        ManagementAddress a = ManagementAddress.parse("unix:" + dir.resolve("e.sock"));
        try (ManagementServer s = new ManagementServer(a, null)) {
            s.route("/empty", q -> HttpResponse.text(200, "")).start();
            HttpResponse r = new ManagementClient(a, null).get("/empty");
            assertEquals(200, r.status());
            assertEquals(0, r.body().length);
        }
    }

    @Test
    void shouldRequireTheBearerTokenOnTcpExceptForHealth() throws IOException {
        try (ManagementServer s = new ManagementServer(ManagementAddress.parse("tcp://127.0.0.1:0"), "s3cret")) {
            s.route("/health", q -> HttpResponse.json("{}")).route("/status", q -> HttpResponse.json("{\"a\":1}")).start();
            ManagementAddress bound = s.address();
            assertTrue(bound.port() > 0);
            assertEquals(200, new ManagementClient(bound, null).get("/health").status());
            assertEquals(401, new ManagementClient(bound, null).get("/status").status());
            assertEquals(401, new ManagementClient(bound, "wrong").get("/status").status());
            assertEquals(200, new ManagementClient(bound, "s3cret").get("/status").status());
        }
    }

    @Test
    void shouldRefuseTcpWithoutAToken() {
        assertThrows(IllegalArgumentException.class, () -> new ManagementServer(ManagementAddress.parse("tcp://127.0.0.1:0"), null));
    }

    @Test
    void shouldAnswerHostileRequestsWithErrorsAndKeepServing() throws IOException {
        try (ManagementServer s = new ManagementServer(ManagementAddress.parse("tcp://127.0.0.1:0"), "t")) {
            s.route("/health", q -> HttpResponse.json("{}")).start();
            int port = s.address().port();
            assertTrue(rawRequest(port, "POST /health HTTP/1.1\r\n\r\n").startsWith("HTTP/1.1 405"));
            assertTrue(rawRequest(port, "garbage\r\n\r\n").startsWith("HTTP/1.1 400"));
            assertTrue(rawRequest(port, "GET /" + "a".repeat(40_000) + " HTTP/1.1\r\n\r\n").startsWith("HTTP/1.1 431"));
            assertEquals(200, new ManagementClient(s.address(), null).get("/health").status());
        }
    }

    @Test
    void shouldReplaceAStaleSocketFileButRefuseALiveOne() throws IOException {
        Path sock = dir.resolve("s.sock");
        try (var stale = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            stale.bind(java.net.UnixDomainSocketAddress.of(sock)); // closed below: the file stays, nobody answers
        }
        ManagementAddress a = ManagementAddress.parse("unix:" + sock);
        try (ManagementServer s = new ManagementServer(a, null)) {
            s.route("/health", q -> HttpResponse.json("{}")).start();
            IOException e = assertThrows(IOException.class, () -> new ManagementServer(a, null));
            assertTrue(e.getMessage().contains("another phost"));
        }
    }

    @Test
    void shouldRefuseASocketPathThatIsAFileAndKeepTheFile() throws IOException {
        Path disk = dir.resolve("disk.raw");
        Files.writeString(disk, "a disk image");
        IOException e = assertThrows(IOException.class, () -> new ManagementServer(ManagementAddress.parse("unix:" + disk), null));
        assertTrue(e.getMessage().contains("not a socket"), e.getMessage());
        assertEquals("a disk image", Files.readString(disk));
    }

    @Test
    void shouldParseAddressesAndRejectBadOnes() {
        assertEquals(8443, ManagementAddress.parse("tcp://[::1]:8443").port());
        assertEquals("::1", ManagementAddress.parse("tcp://[::1]:8443").host());
        assertThrows(IllegalArgumentException.class, () -> ManagementAddress.parse("http://x"));
        assertThrows(IllegalArgumentException.class, () -> ManagementAddress.parse("tcp://host"));
        assertThrows(IllegalArgumentException.class, () -> ManagementAddress.parse("tcp://h:99999"));
    }

    private static String rawRequest(int port, String request) throws IOException {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port));
            OutputStream out = s.getOutputStream();
            try {
                out.write(request.getBytes(StandardCharsets.ISO_8859_1));
            } catch (IOException ignored) {
                // the server may close early on an oversized head; its answer is still readable
            }
            return new String(s.getInputStream().readAllBytes(), StandardCharsets.ISO_8859_1);
        }
    }
}
