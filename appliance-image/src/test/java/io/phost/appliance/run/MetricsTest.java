package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.prometheus.metrics.model.snapshots.Unit;
import java.util.List;
import org.junit.jupiter.api.Test;

class MetricsTest {
    @Test
    void shouldGroupSamplesOfOneFamilyEvenWhenComponentsInterleaveThem() {
        Metrics m = new Metrics();
        for (String disk : List.of("a", "b")) {
            m.counter("phost_storage_reads", "reads", 3, "disk", disk);
            m.counter("phost_storage_read_bytes", "bytes", Unit.BYTES, 4096, "disk", disk);
        }
        String text = m.text();
        assertEquals("""
            # HELP phost_storage_read_bytes_total bytes
            # TYPE phost_storage_read_bytes_total counter
            phost_storage_read_bytes_total{disk="a"} 4096.0
            phost_storage_read_bytes_total{disk="b"} 4096.0
            # HELP phost_storage_reads_total reads
            # TYPE phost_storage_reads_total counter
            phost_storage_reads_total{disk="a"} 3.0
            phost_storage_reads_total{disk="b"} 3.0
            """, text.replace("# UNIT phost_storage_read_bytes bytes\n", ""));
    }

    @Test
    void shouldWriteHistogramsCumulativeWithInfAndStateSetsAsOneSamplePerState() {
        Metrics m = new Metrics();
        m.histogram("phost_storage_latency_seconds", "latency", Unit.SECONDS, new double[] {0.001, Double.POSITIVE_INFINITY},
            new long[] {2, 1}, 0.5, "disk", "a");
        m.state("phost_partition_state", "state", List.of("RUNNING", "STOPPED"), "RUNNING", "partition", "p");
        String text = m.text();
        assertTrue(text.contains("phost_storage_latency_seconds_bucket{disk=\"a\",le=\"0.001\"} 2"), text);
        assertTrue(text.contains("phost_storage_latency_seconds_bucket{disk=\"a\",le=\"+Inf\"} 3"), text);
        assertTrue(text.contains("phost_storage_latency_seconds_count{disk=\"a\"} 3"), text);
        assertTrue(text.contains("phost_partition_state{partition=\"p\",phost_partition_state=\"RUNNING\"} 1"), text);
        assertTrue(text.contains("phost_partition_state{partition=\"p\",phost_partition_state=\"STOPPED\"} 0"), text);
    }

    @Test
    void shouldRefuseTheSameLabelsTwiceAndAFamilyOfTwoTypes() {
        Metrics twice = new Metrics().gauge("phost_x", "x", 1, "disk", "a").gauge("phost_x", "x", 2, "disk", "a");
        assertThrows(IllegalArgumentException.class, twice::text);
        Metrics m = new Metrics().gauge("phost_y", "y", 1);
        assertThrows(IllegalArgumentException.class, () -> m.counter("phost_y", "y", 1));
    }
}
