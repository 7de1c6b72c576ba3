package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.NicText;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A {@code POST /v1/switches/port} bandwidth change as it is saved in applied.toml: bytes/s stay integers, "30Mbps"
 * becomes the string the config reads, and the saved text loads with the reservation as the NIC's weight. Before:
 * min_bandwidth was not saved and "10MB/s" would have been written unquoted (not TOML).
 */
class PortChangeValuesTest {
    @Test
    void shouldSaveBandwidthChangesAsTheConfigWritesThem() throws Exception {
        Map<String, String> q = new LinkedHashMap<>();
        q.put("min_bandwidth", "30Mbps");
        q.put("max_bandwidth", "1000000");
        q.put("max_bandwidth_in", "10MB/s");
        Map<String, String> values = ConfigComponent.nicValues(q);
        assertEquals(Map.of("min_bandwidth", "\"30Mbps\"", "max_bandwidth", "1000000", "max_bandwidth_in", "\"10MB/s\""),
            values);
        String text = """
            [host]
            name = "h"
            data_dir = "/tmp"
            [[switch]]
            name = "s"
            type = "private"
            bandwidth_mode = "absolute"
            [[partition]]
            name = "p"
            nic = [{ switch = "s" }]
            """;
        ApplianceConfig saved = ConfigLoader.parse("applied.toml", NicText.set(text, 0, 0, values));
        var nic = saved.partitions().getFirst().nics().getFirst();
        assertEquals(30, nic.portWeight());
        assertEquals(1_000_000, nic.maxBandwidth());
        assertEquals(10_000_000, nic.maxBandwidthIn());
    }
}
