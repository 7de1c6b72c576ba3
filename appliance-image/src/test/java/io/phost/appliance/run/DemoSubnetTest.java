package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.SwitchConfig;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Issue 12: the demo's internal switch gets a /24 the machine does not route yet. */
class DemoSubnetTest {
    private static final String HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    @Test
    void shouldReadProcNetRouteInHostByteOrder() {
        // 10.213.0.0/24 on phost-demo-net, as a little-endian kernel prints it; and the default route
        List<DemoSubnet.Route> r = DemoSubnet.parse(HEADER
            + "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
            + "phost-demo-net\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assertEquals(new DemoSubnet.Route(0, 0), r.get(0));
        assertEquals(new DemoSubnet.Route(0x0ad50000, 0xffffff00), r.get(1));
    }

    @Test
    void shouldPickTheDefaultUnlessItIsRoutedThenTheFirstFreeAndNoneWhenAllAreTaken() {
        DemoSubnet.Route defaultRoute = new DemoSubnet.Route(0, 0);
        assertEquals("10.213.0.", DemoSubnet.pick(List.of(defaultRoute)), "the default route does not count");
        assertEquals("10.213.2.", DemoSubnet.pick(List.of(defaultRoute, new DemoSubnet.Route(0x0ad50000, 0xffffff00),
            new DemoSubnet.Route(0x0ad50100, 0xffffff80))), "10.213.0.0/24 routed, 10.213.1.0/25 overlaps .1.0/24");
        assertNull(DemoSubnet.pick(List.of(new DemoSubnet.Route(0x0a000000, 0xff000000))), "10.0.0.0/8 covers them all");
    }

    @Test
    void shouldGiveTheDemoAnInternalSwitchWithAHostAddressInThePickedSubnet() {
        var demo = ConfigLoader.loadDemo(Path.of("/tmp/x"), "", "10.213.7.");
        SwitchConfig sw = demo.switchConfig("demo-net").orElseThrow();
        assertEquals(SwitchConfig.Type.INTERNAL, sw.type());
        assertEquals("10.213.7.254/24", sw.hostAddress());
        String args = String.join(" ", demo.partition("net-worker").orElseThrow().workload().args());
        assertEquals(true, args.contains("10.213.7.2/24") && args.contains("--ping 10.213.7.1"), args);
        var without = demo.withoutHostVnics().switchConfig("demo-net").orElseThrow();
        assertEquals(SwitchConfig.Type.PRIVATE, without.type(), "no CAP_NET_ADMIN: no host vNIC");
        assertNull(without.hostAddress());
    }
}
