package io.phost.appliance.util;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import org.junit.jupiter.api.Test;

class HumanTest {
    @Test
    void shouldWriteSizesRatesAndLatenciesForPeople() {
        assertEquals("1.0 GiB", Human.bytes(1L << 30));
        assertEquals("512 B", Human.bytes(512));
        assertEquals("9.6 MiB/s", Human.bytesPerSecond(9.6 * 1024 * 1024));
        assertEquals("4.9k", Human.count(4900));
        assertEquals("950", Human.count(950));
        assertEquals("12 ms", Human.micros(12_000));
        assertEquals("2.5 ms", Human.micros(2_500));
        assertEquals("850 µs", Human.micros(850));
    }

    @Test
    void shouldFormatStatusRowsByTheUnitInTheKey() {
        assertEquals(Map.of("name", "d", "size", "64.0 GiB", "read_iops", "1.6k", "p99_us", "32 µs", "max_bandwidth_bytes_per_sec", "unlimited"),
            Human.row(Map.of("name", "d", "size", 68719476736L, "read_iops", 1596.0, "p99_us", 32L, "max_bandwidth_bytes_per_sec", 0L)));
    }
}
