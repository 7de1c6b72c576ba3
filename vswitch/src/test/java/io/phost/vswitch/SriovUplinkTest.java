package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.RtNetlink;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * SR-IOV against a simulated sysfs tree (same files as a real PF: sriov_totalvfs, sriov_numvfs, virtfnN
 * links, virtfnN/net/NAME) with a veth standing in for the VF's netdev, and rtnetlink against the real
 * kernel (which refuses VF settings on a veth "PF" with EOPNOTSUPP — proof the request parsed). No SR-IOV
 * hardware was available on the machines this was built and tested on.
 */
class SriovUplinkTest {
    @TempDir
    Path sys;

    private Path pf(String name, int total) throws Exception {
        Path dev = Files.createDirectories(sys.resolve("class/net").resolve(name).resolve("device"));
        Files.writeString(dev.resolve("sriov_totalvfs"), total + "\n");
        Files.writeString(dev.resolve("sriov_numvfs"), "0\n");
        return dev;
    }

    @Test
    void shouldSayWhyTheVfPathIsUnusedWithoutSriovHardware() throws Exception {
        Files.createDirectories(sys.resolve("class/net/eth9/device"));
        String why = SriovUplink.whyUnused(sys, "eth9");
        assertTrue(why.contains("not an SR-IOV capable device"), why);
        assertTrue(SriovUplink.whyUnused(sys, "nosuch").contains("does not exist"));
        pf("pf0", 4);
        assertNull(SriovUplink.whyUnused(sys, "pf0"));
    }

    @Test
    void shouldEnableVfsThroughZeroAndAllocateThemInOrder() throws Exception {
        Path dev = pf("pf0", 4);
        SriovUplink up = SriovUplink.probe(sys, "pf0");
        up.enableVfs(2);
        assertEquals("2", Files.readString(dev.resolve("sriov_numvfs")));
        for (int i = 0; i < 2; i++) {
            Path target = Files.createDirectories(sys.resolve("devices/pci0000:00/0000:00:02." + (i + 1)));
            Files.createSymbolicLink(dev.resolve("virtfn" + i), target);
        }
        Files.createDirectories(dev.resolve("virtfn0/net/vf0net"));
        SriovUplink.VfAssignment a = up.allocate(0x02_00_00_00_00_01L, 10, true, false);
        assertEquals(0, a.vf());
        assertEquals("vf0net", a.netdev());
        assertEquals("0000:00:02.1", a.pciAddress());
        SriovUplink.VfAssignment b = up.allocate(0x02_00_00_00_00_02L, 0, true, false);
        assertEquals(1, b.vf());
        assertNull(b.netdev(), "no host driver: named for a VFIO consumer by PCI address");
        assertThrows(IllegalStateException.class, () -> up.allocate(3, 0, true, false));
        assertThrows(IllegalArgumentException.class, () -> up.enableVfs(5));
    }

    @Test
    void shouldEncodeVfSettingsAsIpLinkDoes() {
        MemorySegment m = Arena.ofAuto().allocate(256, 8);
        int len = RtNetlink.encode(m, 7, 3, new RtNetlink.VfSettings(1, 0x02_11_22_33_44_55L, 100, true, false));
        // 16 nlmsghdr + 16 ifinfomsg + 4 list + 4 info + (4+36) mac + (4+12) vlan + (4+8) spoofchk + (4+8) trust
        assertEquals(16 + 16 + 4 + 4 + 40 + 16 + 12 + 12, len);
        assertEquals(len, m.get(ValueLayout.JAVA_INT, 0));
        assertEquals(RtNetlink.RTM_SETLINK, m.get(ValueLayout.JAVA_SHORT, 4));
        assertEquals(3, m.get(ValueLayout.JAVA_INT, 20));
        assertEquals(RtNetlink.IFLA_VFINFO_LIST, m.get(ValueLayout.JAVA_SHORT, 34));
        assertEquals(RtNetlink.IFLA_VF_MAC, m.get(ValueLayout.JAVA_SHORT, 42));
        assertEquals(1, m.get(ValueLayout.JAVA_INT, 44));
        assertEquals((byte) 0x55, m.get(ValueLayout.JAVA_BYTE, 48 + 5));
        assertEquals(RtNetlink.IFLA_VF_VLAN, m.get(ValueLayout.JAVA_SHORT, 82));
        assertEquals(100, m.get(ValueLayout.JAVA_INT, 88));
    }

    @Test
    void shouldHandTheVfToThePartitionNamespaceAndReportTheKernelsAnswerForVfSettings() throws Exception {
        Assumptions.assumeTrue(Netns.available(), "needs root and ip netns");
        try (Netns net = new Netns()) {
            // The "PF" is a real kernel interface without SR-IOV; the "VF" a veth whose peer is the wire.
            String pfName = net.ifname("pf");
            String vf = net.ifname("vf");
            String wirePeer = net.ifname("wp");
            net.veth(pfName, net.ifname("pq"));
            net.veth(vf, wirePeer);
            Path dev = pf(pfName, 2);
            Files.writeString(dev.resolve("sriov_numvfs"), "1");
            Files.createDirectories(dev.resolve("virtfn0/net").resolve(vf));
            SriovUplink up = SriovUplink.probe(sys, pfName);
            SriovUplink.VfAssignment a = up.allocate(0x02_72_00_00_00_01L, 0, true, false);
            assertEquals(vf, a.netdev());
            assertTrue(a.settingsResult().contains("errno 95"), "veth has no VFs: " + a.settingsResult());
            String part = net.ns("part");
            String wire = net.ns("wire");
            net.place(vf, part, "10.83.0.1/24");
            net.place(wirePeer, wire, "10.83.0.2/24");
            assertTrue(Netns.ping(part, "10.83.0.2", 2), "partition reaches the wire through its VF, bypassing the switch");
        }
    }
}
