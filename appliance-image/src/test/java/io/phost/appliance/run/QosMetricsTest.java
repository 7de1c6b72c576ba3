package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ConfigLoader;
import io.phost.qos.QosFlow;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 17: a QoS flow's rates reach /metrics as counters (I/Os, normalized I/Os, bytes, latency sum), so
 * Prometheus' rate() gives IOPS and mean latency over any window; limits stay gauges. promtool lints it clean.
 */
class QosMetricsTest {
    @TempDir
    Path dir;

    @Test
    void shouldExportFlowRatesAsCountersThatPromtoolAccepts() throws Exception {
        Path cfg = Files.writeString(dir.resolve("a.toml"), """
            [host]
            name = "qos-metrics"
            data_dir = "%s"

            [[qos_policy]]
            name = "gold"
            max_iops = 1000
            """.formatted(dir.resolve("data")));
        QosComponent qos = new QosComponent(ConfigLoader.load(cfg));
        try {
            QosFlow flow = qos.service().createFlow("web", "web-os", "gold");
            long now = System.nanoTime();
            for (int i = 0; i < 3; i++) {
                for (long wait; (wait = flow.tryAdmit(16384, now)) > 0; ) {
                    now += wait; // the policy's pace: a 16 KiB I/O is 2 normalized I/Os of 8 KiB
                }
                flow.completed(16384, 2_000_000, now); // 2 ms each
            }
            Metrics m = new Metrics();
            qos.metrics(m);
            String text = m.text();
            String l = "{disk=\"web-os\",partition=\"web\"}";
            assertTrue(text.contains("# TYPE phost_qos_flow_ios_total counter") && text.contains("phost_qos_flow_ios_total" + l + " 3"), text);
            assertTrue(text.contains("# TYPE phost_qos_flow_normalized_ios_total counter")
                && text.contains("phost_qos_flow_normalized_ios_total" + l + " 6"), text);
            assertTrue(text.contains("phost_qos_flow_bytes_total" + l + " 49152"), text);
            assertTrue(text.contains("# TYPE phost_qos_flow_latency_seconds_total counter")
                && text.contains("phost_qos_flow_latency_seconds_total" + l + " 0.006"), text);
            assertTrue(text.contains("# TYPE phost_qos_flow_maximum_iops gauge"), "limits stay gauges:\n" + text);
            assertFalse(text.contains("phost_qos_flow_normalized_iops"), "no rate gauge:\n" + text);
            assertPromtoolClean(text);
        } finally {
            qos.close();
        }
    }

    private static void assertPromtoolClean(String metrics) throws Exception {
        Process p = new ProcessBuilder("/usr/bin/promtool", "check", "metrics").redirectErrorStream(true).start();
        p.getOutputStream().write(metrics.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), out + "\n" + metrics);
        assertEquals("", out.strip(), "promtool findings:\n" + out + "\n" + metrics);
    }
}
