package io.phost.core.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The one size grammar (issue 13): what config, `phost vhd` and the guest I/O tool all accept. */
class ByteSizeTest {
    @Test
    void shouldReadEveryUnitAsAPowerOf1024AsDocumented() {
        assertEquals(4096, ByteSize.parse("4096"));
        assertEquals(4096, ByteSize.parse("4k"));
        assertEquals(4096, ByteSize.parse("4KiB"), "the guest tool used to refuse 4KiB");
        assertEquals(4096, ByteSize.parse("4KB"));
        assertEquals(10L << 30, ByteSize.parse("10GB"), "GB is GiB, as docs/config.md says");
        assertEquals(10L << 30, ByteSize.parse(" 10 gib "));
        assertEquals(3L << 50, ByteSize.parse("3P"));
        assertEquals(7, ByteSize.parse("7B"));
    }

    @Test
    void shouldRefuseFractionsSignsUnknownUnitsAndOverflowWithAMessage() {
        for (String bad : new String[] {"1.5G", "-1", "+1G", "GB", "", "12 parsecs", "4KiX"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ByteSize.parse(bad), bad);
            assertTrue(e.getMessage().contains("size"), e.getMessage());
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ByteSize.parse("9223372036854775807KiB"))
            .getMessage().contains("too large"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ByteSize.parse("99999999999999999999"))
            .getMessage().contains("too large"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> ByteSize.parse("8388608T"))
            .getMessage().contains("too large"));
    }
}
