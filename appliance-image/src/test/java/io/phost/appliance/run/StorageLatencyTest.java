package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.storage.DiskStats;
import org.junit.jupiter.api.Test;

/** /v1/status p99_us is the 99th percentile (it was the 0.99th: ~8 us beside QoS latencies of ms). */
class StorageLatencyTest {
    @Test
    void shouldReportTheNinetyNinthPercentileNotTheFirst() {
        DiskStats s = new DiskStats();
        for (int i = 0; i < 98; i++) {
            s.recordRead(4096, 10_000); // 10 us
        }
        s.recordRead(4096, 5_000_000); // 5 ms
        s.recordRead(4096, 5_000_000);
        assertEquals(8192, StorageComponent.p99Micros(s), "the 99th of 100 samples is a 5 ms one (bucket up to 8192 us)");
    }
}
