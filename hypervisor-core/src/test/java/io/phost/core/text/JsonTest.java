package io.phost.core.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class JsonTest {
    @Test
    void shouldRoundTripNestedDocuments() {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("s", "a\"b\\c\n\u0001");
        doc.put("n", 42L);
        doc.put("d", 1.5);
        doc.put("b", true);
        doc.put("z", null);
        doc.put("l", List.of(1L, "x", Map.of("k", 2L)));
        assertEquals(doc, Json.parse(Json.write(doc)));
        assertEquals(doc, Json.parse(Json.pretty(doc)));
    }

    @Test
    void shouldWriteNanAsNull() {
        assertEquals("[null]", Json.write(List.of(Double.NaN)));
    }

    @Test
    void shouldRejectAnyMalformedInputWithItsOwnException() {
        Random r = new Random(7);
        String base = Json.write(Map.of("a", List.of(1L, 2.5, "x", Map.of("b", false))));
        for (int i = 0; i < 20_000; i++) {
            char[] c = base.toCharArray();
            c[r.nextInt(c.length)] = (char) r.nextInt(128);
            try {
                Json.parse(new String(c));
            } catch (IllegalArgumentException expected) {
                // the parser's own error
            }
        }
        assertThrows(IllegalArgumentException.class, () -> Json.parse("[".repeat(1000)));
    }
}
