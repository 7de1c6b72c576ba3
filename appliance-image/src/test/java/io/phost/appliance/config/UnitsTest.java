package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class UnitsTest {
    @Test
    void shouldReadSizesInPowersOf1024() throws Units.UnitException {
        assertEquals(4096, Units.parseSize("4096"));
        assertEquals(4096, Units.parseSize("4KiB"));
        assertEquals(4096, Units.parseSize("4k"));
        assertEquals(512L << 20, Units.parseSize("512MiB"));
        assertEquals(512L << 20, Units.parseSize(" 512 MB "));
        assertEquals(1L << 30, Units.parseSize("1G"));
        assertEquals(64L << 30, Units.parseSize("64GiB"));
        assertEquals(64L << 40, Units.parseSize("64TiB"));
        assertEquals(3, Units.parseSize("3B"));
    }

    @Test
    void shouldRejectMalformedOrOverflowingSizes() {
        assertThrows(Units.UnitException.class, () -> Units.parseSize("1.5GiB"));
        assertThrows(Units.UnitException.class, () -> Units.parseSize("-1"));
        assertThrows(Units.UnitException.class, () -> Units.parseSize("12 parsecs"));
        assertThrows(Units.UnitException.class, () -> Units.parseSize("9223372036854775807KiB"));
        assertThrows(Units.UnitException.class, () -> Units.parseSize("99999999999999999999"));
        assertThrows(Units.UnitException.class, () -> Units.parseSize(""));
    }

    @Test
    void shouldReadBitAndByteRates() throws Units.UnitException {
        assertEquals(12_500_000, Units.parseBandwidth("100Mbps"));
        assertEquals(125_000_000, Units.parseBandwidth("1Gbps"));
        assertEquals(125, Units.parseBandwidth("1kbps"));
        assertEquals(0, Units.parseBandwidth("7bps"));
        assertEquals(10_000_000, Units.parseBandwidth("10MB/s"));
        assertEquals(10L << 20, Units.parseBandwidth("10MiB/s"));
        assertEquals(1L << 30, Units.parseBandwidth("1GiB/s"));
        assertEquals(5, Units.parseBandwidth("5B/s"));
        assertEquals(5, Units.parseBandwidth("5"));
    }

    @Test
    void shouldRejectUnknownRateUnits() {
        assertThrows(Units.UnitException.class, () -> Units.parseBandwidth("10MB"));
        assertThrows(Units.UnitException.class, () -> Units.parseBandwidth("10 Xbps"));
        assertThrows(Units.UnitException.class, () -> Units.parseBandwidth("9223372036854775807Tbps"));
        assertThrows(Units.UnitException.class, () -> Units.parseBandwidth("fast"));
    }

    @Test
    void shouldFormatWithTheLargestExactUnit() {
        assertEquals("4KiB", Units.formatSize(4096));
        assertEquals("1536KiB", Units.formatSize(1536 * 1024));
        assertEquals("64TiB", Units.formatSize(64L << 40));
        assertEquals("3", Units.formatSize(3));
        assertEquals("0", Units.formatSize(0));
    }
}
