package io.phost.appliance.util;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class MiniYamlTest {
    @Test
    void shouldReadTheBlockSubsetIntoJsonValues() {
        Object v = MiniYaml.parse("""
            # a comment
            a: 1
            b: "x: #not a comment"
            c: the host's name # a comment
            d:
              - one
              - k: v
                n: 2.5
              - [a, "b, c", 3]
            e: {}
            f: []
            '200': true
            g: ~
            """);
        Map<String, Object> expected = new java.util.LinkedHashMap<>();
        expected.put("a", 1L);
        expected.put("b", "x: #not a comment");
        expected.put("c", "the host's name");
        expected.put("d", List.of("one", Map.of("k", "v", "n", 2.5), List.of("a", "b, c", 3L)));
        expected.put("e", Map.of());
        expected.put("f", List.of());
        expected.put("200", true);
        expected.put("g", null);
        assertEquals(expected, v);
    }

    @Test
    void shouldNameTheLineOfAnythingOutsideTheSubset() {
        assertEquals("openapi.yaml:2: a tab (indent with spaces)",
            assertThrows(IllegalArgumentException.class, () -> MiniYaml.parse("a:\n\tb: 1\n")).getMessage());
        assertEquals("openapi.yaml:2: duplicate key 'a'",
            assertThrows(IllegalArgumentException.class, () -> MiniYaml.parse("a: 1\na: 2\n")).getMessage());
        assertEquals("openapi.yaml:1: '&' is outside the YAML subset this file uses",
            assertThrows(IllegalArgumentException.class, () -> MiniYaml.parse("a: &x 1\n")).getMessage());
        assertEquals("openapi.yaml:1: an empty value (write \"\", [] or {})",
            assertThrows(IllegalArgumentException.class, () -> MiniYaml.parse("a:\nb: 1\n")).getMessage());
        assertThrows(IllegalArgumentException.class, () -> MiniYaml.parse("a: 1\n   b: 2\n"));
    }
}
