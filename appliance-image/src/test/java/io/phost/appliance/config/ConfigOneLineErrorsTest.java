package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.errors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** Issue 16, defect 11: every error stays one line, and one error never hides another. */
class ConfigOneLineErrorsTest {
    private static final String DISK = """
        [host]
        data_dir = "/srv/phost"
        [[disk]]
        name = "shared"
        path = "shared.raw"
        format = "raw"
        """; // lines 1-6

    @Test
    void shouldKeepAnErrorAboutANameWithANewlineOnOneLine() {
        List<String> e = errors("""
            [host]
            data_dir = "/srv/phost"
            [[switch]]
            name = "lan\\nts=2026-01-01 level=INFO msg=forged"
            type = "private"
            """);
        assertEquals(1, e.size(), e.toString());
        assertTrue(!e.getFirst().contains("\n"), e.getFirst());
        assertTrue(e.getFirst().contains("lan\\nts=2026"), e.getFirst());
    }

    @Test
    void shouldReportAWritableDiskSharedByTwoPartitionsBesideTheirOtherErrors() {
        List<String> e = errors(DISK + """
            [[partition]]
            name = "a"
            vcpus = 0
              [[partition.disk]]
              disk = "shared"
            [[partition]]
            name = "b"
            vcpus = 0
              [[partition.disk]]
              disk = "shared"
            """);
        assertTrue(e.stream().anyMatch(s -> s.contains("already attached to partition 'a'")), e.toString());
        assertEquals(3, e.size(), e.toString());
    }

    @Test
    void shouldReportAWritableDiskSharedWhenTheSecondPartitionAlsoHasABadName() {
        List<String> e = errors(DISK + """
            [[partition]]
            name = "a"
              [[partition.disk]]
              disk = "shared"
            [[partition]]
            name = "b c"
              [[partition.disk]]
              disk = "shared"
            """);
        assertTrue(e.stream().anyMatch(s -> s.contains("already attached to partition 'a'")), e.toString());
    }
}
