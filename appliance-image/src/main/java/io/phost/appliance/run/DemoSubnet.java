package io.phost.appliance.run;

import io.phost.appliance.config.ConfigLoader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The embedded demo's /24 on its internal switch: {@code 10.213.0.0/24} unless the machine already routes
 * something that overlaps it (a LAN, a VPN, another demo's host vNIC), then the first free {@code 10.213.N.0/24}.
 * Read from {@code /proc/net/route}; the default route (0.0.0.0/0) overlaps everything and is not counted.
 */
public final class DemoSubnet {
    private DemoSubnet() {
    }

    /** An IPv4 route: destination and netmask as big-endian ints. */
    record Route(int destination, int mask) {
        boolean overlaps(int net, int netMask) {
            int common = mask & netMask;
            return (destination & common) == (net & common);
        }
    }

    /** The prefix ("10.213.N.") of the first free demo /24, or null when all 256 are taken. */
    public static String pick() {
        List<Route> routes;
        try {
            routes = parse(Files.readString(Path.of("/proc/net/route")));
        } catch (IOException | RuntimeException e) {
            routes = List.of(); // no IPv4 routing table to read: nothing to collide with that we could see
        }
        return pick(routes);
    }

    static String pick(List<Route> routes) {
        for (int n = 0; n < 256; n++) {
            int net = (10 << 24) | (213 << 16) | (n << 8);
            if (routes.stream().noneMatch(r -> r.mask() != 0 && r.overlaps(net, 0xffffff00))) {
                return ConfigLoader.DEMO_SUBNET_PREFIX.replace(".0.", "." + n + ".");
            }
        }
        return null;
    }

    /**
     * {@code /proc/net/route}: a header line, then {@code Iface Destination Gateway Flags RefCnt Use Metric Mask ...}
     * with Destination and Mask as hex of the address in host (little-endian on x86/arm64) byte order.
     */
    static List<Route> parse(String table) {
        List<Route> out = new ArrayList<>();
        for (String line : table.lines().skip(1).toList()) {
            String[] f = line.trim().split("\\s+");
            if (f.length < 8) {
                continue;
            }
            out.add(new Route(hostOrder(Integer.parseUnsignedInt(f[1], 16)), hostOrder(Integer.parseUnsignedInt(f[7], 16))));
        }
        return out;
    }

    /** The kernel prints the address's bytes as one native-order u32: back to big-endian. */
    private static int hostOrder(int v) {
        return java.nio.ByteOrder.nativeOrder() == java.nio.ByteOrder.LITTLE_ENDIAN ? Integer.reverseBytes(v) : v;
    }
}
