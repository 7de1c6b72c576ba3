package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class QmpJsonTest {
    @Test
    void shouldParseAGreetingAnEventAndAnError() {
        Map<String, Object> g = QmpJson.parseObject("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
            + "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}");
        assertEquals(List.of("oob"), ((Map<?, ?>) g.get("QMP")).get("capabilities"));
        Map<String, Object> e = QmpJson.parseObject("{\"timestamp\": {\"seconds\": 1733460000, \"microseconds\": 5}, "
            + "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}");
        assertEquals(Boolean.TRUE, ((Map<?, ?>) e.get("data")).get("guest"));
        Map<String, Object> err = QmpJson.parseObject("{\"id\": 3, \"error\": {\"class\": \"GenericError\", "
            + "\"desc\": \"quote \\\" and \\u00e9\"}}");
        assertEquals(3L, err.get("id"));
        assertEquals("quote \" and \u00e9", ((Map<?, ?>) err.get("error")).get("desc"));
        assertEquals(1.8446744073709552E19, QmpJson.parse("18446744073709551615"));
    }

    @Test
    void shouldNameTheOffsetOfAParseError() {
        QmpException e = assertThrows(QmpException.class, () -> QmpJson.parse("{\"a\": tru}"));
        assertEquals(QmpException.Reason.MALFORMED, e.reason());
        assertEquals(6, e.offset());
        assertThrows(QmpException.class, () -> QmpJson.parseObject("[1]"));
        assertThrows(QmpException.class, () -> QmpJson.parse("[".repeat(1000)));
    }

    @Test
    void shouldWriteACommandWithEscapedArguments() {
        assertEquals("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"a\\\"b\\n\"},\"id\":7}",
            QmpJson.command("human-monitor-command", Map.of("command-line", "a\"b\n"), 7));
        assertEquals("{\"execute\":\"cont\",\"id\":1}", QmpJson.command("cont", Map.of(), 1));
    }

    @Test
    void shouldEitherParseOrThrowItsOwnExceptionForAnyInput() {
        Random r = new Random(15);
        String[] seeds = {"{\"return\": {}, \"id\": 1}", "{\"event\":\"STOP\",\"data\":{}}", "[1,-2.5e3,null,true]"};
        for (int n = 0; n < 20_000; n++) {
            byte[] b;
            if (n % 2 == 0) {
                b = seeds[n % seeds.length].getBytes(StandardCharsets.UTF_8);
                for (int k = 0; k < 1 + r.nextInt(4); k++) {
                    b[r.nextInt(b.length)] = (byte) r.nextInt(128);
                }
            } else {
                String alphabet = "{}[]\":,-0123456789.eEtruefalsn\\u ";
                b = new byte[r.nextInt(40)];
                for (int k = 0; k < b.length; k++) {
                    b[k] = (byte) alphabet.charAt(r.nextInt(alphabet.length()));
                }
            }
            String s = new String(b, StandardCharsets.UTF_8);
            try {
                QmpJson.parse(s);
            } catch (QmpException e) {
                assertEquals(QmpException.Reason.MALFORMED, e.reason(), s);
            } catch (RuntimeException e) {
                fail("input " + s + " threw " + e);
            }
        }
    }
}
