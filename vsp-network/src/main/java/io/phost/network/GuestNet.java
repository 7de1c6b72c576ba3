package io.phost.network;

import io.phost.core.ic.GuestIntegration;
import io.phost.core.sys.NetSyscalls;
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
    /**
     * @param ping a peer address to ping from inside the namespace every 200 ms while bridging (null: none);
     *             its output goes to the partition's log
     */
    /** Partitions with less memory keep plain MTU-sized sections (the offload buffers take 8 MiB). */
    static final long MIN_RAM_FOR_OFFLOADS = 32L << 20;

    public record Options(String netns, String tap, String address, int nic, String ping) {
        public Options(String netns, String tap, String address, int nic) {
            this(netns, tap, address, nic, null);
        }
    }

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

    /** Runs with its own VMBus attach and integration services until the parent stops the partition. */
    public static void run(Options o) throws Exception {
        VmbusClient bus = VmbusClient.attachFromEnvironment();
        TapBridge[] bridge = new TapBridge[1];
        GuestIntegration ic = new GuestIntegration(bus, reason -> {
            if (bridge[0] != null) {
                bridge[0].close();
            }
        });
        try {
            run(bus, ic, o, bridge);
        } finally {
            ic.close();
            bus.close();
        }
    }

    /**
     * Bridges on an existing attach until {@code bridge[0]} is closed (the caller closes it on shutdown) or the
     * parent disconnects. {@code bridge} is where the running bridge is published for that.
     */
    public static void run(VmbusClient bus, GuestIntegration ic, Options o, TapBridge[] bridge) throws Exception {
        // Offloads (per-frame header, 64 KiB sections, 8 MiB of buffers) unless the partition's memory is small.
        NetVsc vsc = TapBridge.openNic(bus, o.nic(), bus.ram().size() >= MIN_RAM_FOR_OFFLOADS, Duration.ofSeconds(30));
        int tapOffloads = vsc.offloadHeader() ? TapBridge.TAP_OFFLOADS : 0;
        boolean createdNetns = false;
        Process ping = null;
        if (o.netns() != null && NetnsLeases.exists(o.netns()) && NetnsLeases.isStale(NetnsLeases.DEFAULT_DIR, o.netns())) {
            // Left by a previous run of this guest that was killed: reclaim it rather than reuse its state.
            NetnsLeases.release(NetnsLeases.DEFAULT_DIR, o.netns());
        }
        if (o.netns() != null && !NetnsLeases.exists(o.netns())) {
            must("ip", "netns", "add", o.netns());
            NetnsLeases.claim(NetnsLeases.DEFAULT_DIR, o.netns());
            createdNetns = true;
        }
        try (TapDevice tap = o.netns() == null ? TapDevice.open(o.tap(), vsc.offloadHeader(), tapOffloads)
            : openInNamespace(o.netns(), o.tap(), vsc.offloadHeader(), tapOffloads)) {
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
            if (o.ping() != null) {
                List<String> cmd = new ArrayList<>(o.netns() == null ? List.of() : List.of("ip", "netns", "exec", o.netns()));
                cmd.addAll(List.of("ping", "-i", "0.2", "-W", "1", o.ping()));
                ping = new ProcessBuilder(cmd).inheritIO().start();
            }
            bridge[0].run();
        } finally {
            if (ping != null) {
                ping.destroy();
            }
            vsc.close();
            if (createdNetns) {
                // A namespace this guest made is its own: leave nothing behind on the host. If this process is
                // killed instead, its lease lets the next start or the appliance's sweep remove it.
                NetnsLeases.release(NetnsLeases.DEFAULT_DIR, o.netns());
            }
        }
    }

    /**
     * Creates TAP {@code name} directly inside {@code netns}: the TAP never exists in the root namespace, so
     * partitions using the same name (the default {@code phost0}) in their own namespaces cannot collide (they
     * used to race for the name in the root namespace and fail with EBUSY). setns(2) changes only the calling
     * thread's namespace, so this runs on a short-lived platform thread; the fd works from any thread after.
     */
    static TapDevice openInNamespace(String netns, String name, boolean vnetHeader, int offloads)
        throws InterruptedException {
        TapDevice[] result = new TapDevice[1];
        RuntimeException[] failure = new RuntimeException[1];
        Thread t = Thread.ofPlatform().name("tap-in-" + netns).start(() -> {
            try {
                int fd = NetSyscalls.open("/var/run/netns/" + netns, NetSyscalls.O_CLOEXEC);
                try {
                    NetSyscalls.setns(fd, NetSyscalls.CLONE_NEWNET);
                } finally {
                    NetSyscalls.close(fd);
                }
                result[0] = TapDevice.open(name, vnetHeader, offloads);
            } catch (RuntimeException e) {
                failure[0] = e;
            }
            // This thread ends here, still inside netns: no other code ever runs in its namespace.
        });
        t.join();
        if (failure[0] != null) {
            throw new IllegalStateException("creating TAP " + name + " inside network namespace " + netns
                + " failed: " + failure[0].getMessage(), failure[0]);
        }
        if (result[0] == null) {
            throw new IllegalStateException("could not enter network namespace " + netns + " to create TAP " + name);
        }
        return result[0];
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
