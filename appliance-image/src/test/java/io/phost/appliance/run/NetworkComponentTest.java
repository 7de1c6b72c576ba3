package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.appliance.config.NicConfig;
import io.phost.vswitch.MirrorMode;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.VlanMode;
import java.util.List;
import org.junit.jupiter.api.Test;

/** appliance.toml NIC keys reach the switch port's policy (before: mirroring, storm and MAC limits were Java-only). */
class NetworkComponentTest {
    @Test
    void shouldCarryMirroringStormLimitAndMacLimitIntoThePortConfig() {
        NicConfig n = new NicConfig("s", "02:50:48:00:00:07", 10, List.of(), null, true, true, false, 1000, 5, 0, 0,
            9000, NicConfig.Mirroring.SOURCE, 2500, 16);
        PortConfig c = NetworkComponent.portConfig(n);
        assertEquals(MirrorMode.SOURCE, c.mirror());
        assertEquals(2500, c.stormLimitPps());
        assertEquals(16, c.maxMacAddresses());
        assertEquals(8000, c.maxBandwidthBps());
        assertEquals(5, c.minBandwidthWeight());
        assertEquals(VlanMode.ACCESS, c.vlanMode());
        assertEquals(10, c.accessVlan());
        assertEquals(0x02_50_48_00_00_07L, c.mac());
    }
}
