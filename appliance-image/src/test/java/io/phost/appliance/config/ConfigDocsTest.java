package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** docs/config.md lists exactly the keys of {@link ConfigSchema}, with the same types, defaults and ranges. */
class ConfigDocsTest {
    /** One documented key: the cells of a row of a key table. */
    record Row(String key, String type, String defaultValue, String range, String meaning) {
    }

    static Map<String, List<Row>> parseDocs(List<String> lines) {
        Map<String, List<Row>> sections = new LinkedHashMap<>();
        List<Row> current = null;
        for (String line : lines) {
            if (line.startsWith("## `") && line.endsWith("`")) {
                current = new ArrayList<>();
                sections.put(line.substring(4, line.length() - 1), current);
            } else if (line.startsWith("## ")) {
                current = null;
            } else if (current != null && line.startsWith("| `")) {
                String[] cells = line.substring(1, line.length() - 1).split("(?<!\\\\)\\|", -1);
                assertEquals(5, cells.length, () -> "a key row has 5 cells: " + line);
                current.add(new Row(unquote(cells[0]), cells[1].strip(), unquote(cells[2]), cells[3].strip(),
                    cells[4].strip()));
            }
        }
        return sections;
    }

    private static String unquote(String cell) {
        String s = cell.strip();
        return s.startsWith("`") && s.endsWith("`") && s.length() >= 2 ? s.substring(1, s.length() - 1) : s;
    }

    @Test
    void shouldDocumentEveryKeyWithTheTypeDefaultAndRangeTheLoaderEnforces() throws IOException {
        Map<String, List<Row>> docs = parseDocs(Files.readAllLines(ConfigLoaderTest.repoFile("docs/config.md")));
        List<String> schemaTitles = ConfigSchema.sections().stream().map(ConfigSchema.Section::docTitle).toList();
        assertEquals(schemaTitles, List.copyOf(docs.keySet()), "documented sections, in schema order");
        for (ConfigSchema.Section section : ConfigSchema.sections()) {
            List<Row> rows = docs.get(section.docTitle());
            List<Row> expected = new ArrayList<>();
            for (ConfigSchema.Key k : section.keys().values()) {
                Row doc = rows.stream().filter(r -> r.key().equals(k.name())).findFirst().orElse(null);
                expected.add(new Row(k.name(), k.kind().docName, k.docDefault(), k.docRange(),
                    doc == null ? "" : doc.meaning()));
            }
            for (int i = 0; i < Math.min(expected.size(), rows.size()); i++) {
                assertEquals(expected.get(i), rows.get(i), "row " + (i + 1) + " of " + section.docTitle()
                    + " in docs/config.md (expected from ConfigSchema)");
            }
            assertEquals(expected.stream().map(Row::key).toList(), rows.stream().map(Row::key).toList(),
                "keys of " + section.docTitle() + " in docs/config.md");
            for (Row r : rows) {
                assertFalse(r.meaning().isEmpty(), "meaning of " + section.docTitle() + " " + r.key());
            }
        }
    }

    @Test
    void shouldNoticeAKeyMissingFromTheDocs() {
        // The check above must fail for a reference that lacks a key; guard the parser against silently passing.
        Map<String, List<Row>> docs = parseDocs(List.of("## `[host]`", "| key | type | default | range | meaning |",
            "|---|---|---|---|---|", "| `name` | name | `phost` |  | Host name. |"));
        assertEquals(List.of(new Row("name", "name", "phost", "", "Host name.")), docs.get("[host]"));
        assertTrue(ConfigSchema.section("host").keys().size() > docs.get("[host]").size());
    }

    @Test
    void shouldParseEveryDocumentedDefaultWithTheLoadersOwnParsers() throws Exception {
        for (ConfigSchema.Section section : ConfigSchema.sections()) {
            for (ConfigSchema.Key k : section.keys().values()) {
                if (k.defaultText() == null || k.computed()) {
                    continue;
                }
                switch (k.kind()) {
                    case SIZE -> Units.parseSize(k.defaultText());
                    case BANDWIDTH -> Units.parseBandwidth(k.defaultText());
                    case INTEGER -> Long.parseLong(k.defaultText());
                    case BOOLEAN -> assertTrue(k.defaultText().equals("true") || k.defaultText().equals("false"));
                    case ENUM -> assertTrue(k.allowed().contains(k.defaultText()), k.name());
                    case NAME -> assertTrue(TomlNode.validName(k.defaultText()));
                    case STRING_ARRAY, INTEGER_ARRAY, TABLE_ARRAY -> assertEquals("[]", k.defaultText());
                    default -> { }
                }
            }
        }
    }
}
