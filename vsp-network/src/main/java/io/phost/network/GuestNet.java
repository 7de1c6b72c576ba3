package io.phost.network;

import io.phost.core.ic.GuestIntegration;
import io.phost.core.sys.TapDevice;
import io.phost.core.vmbus.VmbusClient;
import io.phost.vswitch.EthernetDescriptor;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The child-partition program behind {@code phost guest net}: attaches to the parent with the PHOST_*
 * environment, answers the integration services, opens synthetic NIC {@code --nic}, creates TAP {@code --tap},
 * moves it into network namespace {@code --netns} (created if missing) with the NIC's MAC and MTU and
 * {@code --address}, and bridges until the parent stops the partition.
 */
public final class GuestNet {
    /** Parsed options. */
    public record Options(String netns, String tap, String address, int nic) {}

    private GuestNet() {}

    public static void main(String[] args) throws Exception {
        String netns = null;
        String tap = "phost0";
        String address = null;
        int nic = 0;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--netns" -> netns = args[i + 1];
                case "--tap" -> tap = args[i + 1];
                case "--address" -> address = args[i + 1];
                case "--nic" -> nic = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        run(new Options(netns, tap, address, nic));
    }

    /** Runs until the parent disconnects or asks the partition to shut down. */
    public static void run(Options o) throws Exception {
        VmbusClient bus = VmbusClient.attachFromEnvironment();
        TapBridge[] bridge = new TapBridge[1];
        GuestIntegration ic = new GuestIntegration(bus, reason -> {
            if (bridge[0] != null) {
                bridge[0].close();
            }
        });
        NetVsc vsc = NetVsc.open(bus, o.nic(), Duration.ofSeconds(30));
        try (TapDevice tap = TapDevice.open(o.tap(), false, 0)) {
            if (o.netns() != null) {
                if (ip("netns", "list").contains(o.netns()) == false) {
                    must("ip", "netns", "add", o.netns());
                }
                must("ip", "link", "set", tap.name(), "netns", o.netns());
            }
            List<String> prefix = o.netns() == null ? List.of("ip") : List.of("ip", "-n", o.netns());
            must(concat(prefix, "link", "set", tap.name(), "address", EthernetDescriptor.formatMac(vsc.mac())));
            must(concat(prefix, "link", "set", tap.name(), "mtu", Integer.toString(vsc.mtu())));
            if (o.address() != null) {
                must(concat(prefix, "addr", "add", o.address(), "dev", tap.name()));
            }
            must(concat(prefix, "link", "set", tap.name(), "up"));
            must(concat(prefix, "link", "set", "lo", "up"));
            ic.publish("net." + o.nic() + ".mac", EthernetDescriptor.formatMac(vsc.mac()));
            ic.publish("net." + o.nic() + ".ready", "yes");
            bridge[0] = new TapBridge(vsc, tap);
            bus.disconnected().thenRun(bridge[0]::close);
            bridge[0].run();
        } finally {
            vsc.close();
            ic.close();
            bus.close();
        }
    }

    private static String[] concat(List<String> prefix, String... rest) {
        List<String> l = new ArrayList<>(prefix);
        l.addAll(List.of(rest));
        return l.toArray(new String[0]);
    }

    private static String ip(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of("ip"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        p.waitFor(10, TimeUnit.SECONDS);
        return out;
    }

    private static void must(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed: " + out);
        }
    }
}
