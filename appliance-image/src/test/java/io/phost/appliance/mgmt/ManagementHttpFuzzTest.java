package io.phost.appliance.mgmt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.util.Query;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.jupiter.api.Test;

/**
 * Hostile request heads against the management API's HTTP parser, with a route whose handler parses its query
 * string and validates it exactly as {@code POST /v1/qos/policies} does. Every head gets an HTTP error or success
 * status the API documents: never a 500 (a handler that threw anything but its own IllegalArgumentException),
 * never a hang. Over a real socket, every byte stream gets a well-formed response or a close, and the server
 * still answers afterwards. Seeded; the failing input is printed. Cases: {@code -Dphost.mgmt.fuzzCases=N},
 * 5,000 by default (plus a tenth of that over TCP), 100,000 with {@code -Dphost.soak=true}.
 */
class ManagementHttpFuzzTest {
    private static final int CASES = Integer.getInteger("phost.mgmt.fuzzCases",
        Boolean.getBoolean("phost.soak") ? 100_000 : 5_000);
    private static final String TOKEN = "t0ken";
    private static final Set<Integer> DOCUMENTED = Set.of(200, 308, 400, 401, 404, 405, 409, 431, 503);
    private static final String[] SEEDS = {
        "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET /v1/status HTTP/1.1\r\nAuthorization: Bearer " + TOKEN + "\r\n\r\n",
        "GET /status?x=1 HTTP/1.0\r\nauthorization:   bearer  " + TOKEN + "  \r\n\r\n",
        "POST /v1/qos/policies?name=gold&type=weight&weight=5 HTTP/1.1\r\nAuthorization: Bearer " + TOKEN + "\r\n\r\n",
        "POST /v1/qos/policies?name=cap&type=limit&max_iops=100&max_bandwidth=10MB%2Fs&normalization_size=8KiB HTTP/1.1\r\n"
            + "Authorization: Bearer " + TOKEN + "\r\nContent-Length: 0\r\n\r\n",
    };
    private static final String[] TOKENS = {
        "%", "%z", "%zz", "%0a", "%0d%0a", "%00", "%ff%fe", "%c3%28", "%25", "&", "&&", "=", "==", "?", "??", " ", "  ",
        "\r\n", "\n", "\r", "\t", "\u0000", "\u00ff", "HTTP/1.", "HTTP/2", "/", "//", "/..", "..", "name=", "name=a%0ab",
        "weight=99999999999999999999", "weight=-1", "weight=1.5", "type=", "type=WEIRD", "normalization_size=1EiB",
        "max_bandwidth=99999999999999999999PiB", "Authorization: Bearer ", "Authorization: Basic x", ":", "\r\n\r\n",
        "\"", "\\", "{", "}", "'", "name=x&name=y", "\u00e9",
    };

    @Test
    void shouldAnswerEveryHostileRequestHeadWithADocumentedStatusAndNever500() throws Exception {
        try (ManagementServer s = server()) {
            SplittableRandom random = new SplittableRandom(0x687474L);
            java.util.Map<Integer, Integer> seen = new java.util.TreeMap<>();
            assertTimeoutPreemptively(Duration.ofSeconds(Math.max(60, CASES / 200)), () -> {
                for (int i = 0; i < CASES; i++) {
                    String request = new String(mutate(random), StandardCharsets.ISO_8859_1);
                    int end = request.indexOf("\r\n\r\n");
                    String head = end < 0 ? request : request.substring(0, end); // what readHead hands on
                    HttpResponse r;
                    try {
                        r = s.handle(head);
                    } catch (RuntimeException e) {
                        throw new AssertionError("case " + i + " threw for " + printable(head), e);
                    }
                    if (!DOCUMENTED.contains(r.status())) {
                        fail("case " + i + ": status " + r.status() + " " + new String(r.body(), StandardCharsets.UTF_8)
                            + " for " + printable(head));
                    }
                    seen.merge(r.status(), 1, Integer::sum);
                }
            });
            // the mutants reach the handlers (accepted and refused by the policy checks), not only the request line
            assertTrue(seen.keySet().containsAll(Set.of(200, 400, 401, 404)), "statuses seen: " + seen);
            System.out.println("ManagementHttpFuzzTest: " + CASES + " heads, statuses " + seen);
        }
    }

    @Test
    void shouldAnswerOrCloseEveryHostileByteStreamOverTcpAndKeepServing() throws Exception {
        try (ManagementServer s = server()) {
            int port = s.address().port();
            SplittableRandom random = new SplittableRandom(0x746370L);
            int cases = Math.max(100, CASES / 10);
            ConcurrentLinkedQueue<String> problems = new ConcurrentLinkedQueue<>();
            for (int batch = 0; batch < cases; batch += 16) {
                List<Thread> clients = new ArrayList<>();
                for (int i = batch; i < Math.min(cases, batch + 16); i++) {
                    byte[] bytes = mutate(random);
                    int n = i;
                    clients.add(Thread.ofVirtual().start(() -> {
                        String p = exchange(port, bytes);
                        if (p != null) {
                            problems.add("case " + n + ": " + p + " for " + printable(new String(bytes, StandardCharsets.ISO_8859_1)));
                        }
                    }));
                }
                for (Thread t : clients) {
                    t.join(30_000);
                    assertTrue(!t.isAlive(), "a client got neither an answer nor a close in 30 s");
                }
                assertTrue(problems.isEmpty(), problems.toString());
            }
            assertEquals(200, new ManagementClient(s.address(), null).get("/v1/health").status());
            assertEquals(200, new ManagementClient(s.address(), TOKEN).get("/v1/status").status());
            System.out.println("ManagementHttpFuzzTest: " + cases + " TCP byte streams answered or closed");
        }
    }

    private static ManagementServer server() throws IOException {
        ManagementServer s = new ManagementServer(ManagementAddress.parse("tcp://127.0.0.1:0"), TOKEN);
        s.route("/v1/health", q -> HttpResponse.json("{\"status\":\"ok\"}"))
            .route("/v1/status", q -> HttpResponse.json("{\"query\":" + Query.parse(q).size() + "}"))
            .routePost("/v1/qos/policies", q -> HttpResponse.json("{\"name\":\"" + ConfigLoader.parseQosPolicy(Query.parse(q)).name().length() + "\"}"))
            .start();
        return s;
    }

    /** Sends {@code bytes}, half-closes, reads to the end: null when the answer is well-formed or empty. */
    private static String exchange(int port, byte[] bytes) {
        try (Socket c = new Socket()) {
            c.connect(new InetSocketAddress("127.0.0.1", port), 5_000);
            c.setSoTimeout(20_000);
            try {
                c.getOutputStream().write(bytes);
                c.shutdownOutput();
            } catch (IOException e) {
                // closed early (oversized head): the answer may still be readable
            }
            ByteArrayOutputStream in = new ByteArrayOutputStream();
            try {
                c.getInputStream().transferTo(in);
            } catch (java.net.SocketException e) {
                // reset after an early answer
            }
            String answer = in.toString(StandardCharsets.ISO_8859_1);
            if (answer.isEmpty()) {
                return null; // closed before a complete head: nothing to answer
            }
            int end = answer.indexOf("\r\n\r\n");
            if (!answer.startsWith("HTTP/1.1 ") || end < 0) {
                return "malformed answer " + printable(answer);
            }
            int status = Integer.parseInt(answer.substring(9, 12));
            if (!DOCUMENTED.contains(status)) {
                return "status " + status + ": " + printable(answer);
            }
            int len = -1;
            for (String line : answer.substring(0, end).split("\r\n")) {
                if (line.startsWith("Content-Length: ")) {
                    len = Integer.parseInt(line.substring(16));
                }
            }
            int body = answer.length() - end - 4;
            return len == body ? null : "Content-Length " + len + " but " + body + " body bytes";
        } catch (IOException e) {
            return e.toString();
        }
    }

    private static byte[] mutate(SplittableRandom r) {
        String s = SEEDS[r.nextInt(SEEDS.length)];
        if (r.nextInt(20) == 0) { // raw random bytes
            byte[] b = new byte[r.nextInt(300)];
            for (int i = 0; i < b.length; i++) {
                b[i] = (byte) r.nextInt(256);
            }
            return b;
        }
        StringBuilder b = new StringBuilder(s);
        for (int edits = 1 + r.nextInt(4); edits > 0; edits--) {
            int at = r.nextInt(b.length() + 1);
            switch (r.nextInt(5)) {
                case 0 -> b.insert(at, TOKENS[r.nextInt(TOKENS.length)]);
                case 1 -> b.delete(at, Math.min(b.length(), at + 1 + r.nextInt(12)));
                case 2 -> {
                    if (at < b.length()) {
                        b.setCharAt(at, (char) r.nextInt(256));
                    }
                }
                case 3 -> b.insert(at, "x".repeat(r.nextInt(8) == 0 ? 17_000 : r.nextInt(200)));
                default -> b.insert(at, TOKENS[r.nextInt(TOKENS.length)] + TOKENS[r.nextInt(TOKENS.length)]);
            }
        }
        return b.toString().getBytes(StandardCharsets.ISO_8859_1);
    }

    private static String printable(String s) {
        String t = s.length() > 300 ? s.substring(0, 300) + "...(" + s.length() + " chars)" : s;
        return "\"" + t.replace("\r", "\\r").replace("\n", "\\n").replace("\u0000", "\\0") + "\"";
    }
}
