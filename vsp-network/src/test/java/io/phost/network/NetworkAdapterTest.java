package io.phost.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.vswitch.BandwidthMode;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;
import io.phost.vswitch.SwitchType;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Adapters on an external switch whose uplink is a veth described by a simulated sysfs tree as an SR-IOV PF
 * (no SR-IOV hardware was available): an adapter with iov_weight > 0 gets a VF, one with 0 does not, and a
 * switch without IOV says why.
 */
class NetworkAdapterTest {
    @TempDir
    Path sys;

    @Test
    void shouldGiveAVfToAdaptersThatAskAndKeepTheSyntheticNicAsFailover() throws Exception {
        Assumptions.assumeTrue(SyntheticNicTrafficTest.run(5, "ip", "link", "show", "lo") == 0, "needs iproute2");
        String tag = Long.toString(ProcessHandle.current().pid() % 10000);
        String pf = "phpf" + tag;
        SyntheticNicTrafficTest.run(5, "ip", "link", "del", pf);
        SyntheticNicTrafficTest.must("ip", "link", "add", pf, "type", "veth", "peer", "name", "phpg" + tag);
        try {
            SyntheticNicTrafficTest.must("ip", "link", "set", pf, "up");
            Path dev = Files.createDirectories(sys.resolve("class/net").resolve(pf).resolve("device"));
            Files.writeString(dev.resolve("sriov_totalvfs"), "4");
            Files.writeString(dev.resolve("sriov_numvfs"), "2");
            Files.createDirectories(dev.resolve("virtfn0/net/vfnet0"));
            Files.createDirectories(dev.resolve("virtfn1"));
            try (ManagedSwitch sw = ManagedSwitch.create(new SwitchSpec("ext", SwitchType.EXTERNAL, pf, false, true,
                BandwidthMode.WEIGHT, 0, null, sys))) {
                assertTrue(sw.iovStatus().startsWith("SR-IOV available"), sw.iovStatus());
                NetworkAdapter fast = NetworkAdapter.attach(sw, "p1", "eth0",
                    PortConfig.vnic(0x02_74_00_00_00_01L).withOffloadWeights(100, 50), 1500);
                NetworkAdapter plain = NetworkAdapter.attach(sw, "p2", "eth0", PortConfig.vnic(0x02_74_00_00_00_02L), 1500);
                NetworkAdapter vfio = NetworkAdapter.attach(sw, "p3", "eth0",
                    PortConfig.vnic(0x02_74_00_00_00_03L).withOffloadWeights(100, 10), 1500);
                assertEquals("vfnet0", fast.vf().netdev());
                assertTrue(fast.vfStatus().contains("errno 95"), "veth PF refuses VF settings: " + fast.vfStatus());
                assertEquals("synthetic", fast.dataPath(), "until the guest switches the data path");
                assertNull(plain.vf());
                assertNull(vfio.vf().netdev());
                assertTrue(vfio.vfStatus().contains("for VFIO"), vfio.vfStatus());
                assertEquals(4, sw.vswitch().ports().size(), "uplink + three synthetic NICs");
            }
        } finally {
            SyntheticNicTrafficTest.run(5, "ip", "link", "del", pf);
        }
    }
}
