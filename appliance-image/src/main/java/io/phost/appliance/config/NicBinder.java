package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.PartitionBinder.PartitionDraft;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.zip.CRC32;

import static io.phost.appliance.config.BindSupport.hint;
import static io.phost.appliance.config.BindSupport.path;

/** Binds a partition's NIC tables and gives NICs without a MAC a stable generated one. */
final class NicBinder {
    private static final Pattern MAC = Pattern.compile(
        "\\p{XDigit}{2}([:-])\\p{XDigit}{2}(?:\\1\\p{XDigit}{2}){4}");
    /** Prefix of generated MACs: locally administered (bit 1 of the first octet), unicast, then "PH". */
    private static final String GENERATED_MAC_PREFIX = "02:50:48";
    /** min_bandwidth's ceiling in bytes/s: PortConfig.MAX_WEIGHT Mbit/s. */
    private static final long MAX_RESERVATION = NicConfig.MAX_MIN_BANDWIDTH;
    private NicBinder() {
    }

    /** A NIC before MAC generation. */
    record NicDraft(String partition, int index, NicConfig nic, String[] mac) {
        NicConfig build() {
            NicConfig c = nic;
            return new NicConfig(c.switchName(), mac[0], c.vlanAccess(), c.vlanTrunk(), c.nativeVlan(), c.macSpoofing(),
                c.dhcpGuard(), c.routerGuard(), c.maxBandwidth(), c.minBandwidthWeight(), c.vmqWeight(), c.iovWeight(), c.mtu(),
                c.mirroring(), c.stormLimit(), c.maxMacAddresses(), c.maxBandwidthIn(), c.ipAddresses(), c.acl(),
                c.minBandwidth(), c.queues());
        }
    }

    static NicDraft nic(TomlNode n, String partition, int index, Map<String, Defined<SwitchConfig>> switches,
                         Map<String, String> macOwners) {
        boolean ok = true;
        String switchName = n.string("switch");
        SwitchConfig sw = null;
        if (switchName != null) {
            Defined<SwitchConfig> d = switches.get(switchName);
            if (d == null) {
                n.error("switch", Reason.DANGLING_REFERENCE,
                    "no [[switch]] named '" + switchName + "'" + hint(switchName, switches.keySet()));
                ok = false;
            } else {
                sw = d.value(); // null when the switch itself is invalid: its own errors say why
            }
        } else {
            ok = false;
        }
        String mac = n.string("mac");
        if (mac != null) {
            mac = mac(n, mac);
            if (mac == null) {
                ok = false;
            } else {
                String owner = macOwners.putIfAbsent(mac, n.path());
                if (owner != null) {
                    n.error("mac", Reason.DUPLICATE, "MAC " + mac + " is already used by " + owner);
                    ok = false;
                }
            }
        } else if (n.has("mac")) {
            ok = false;
        }
        Long access = n.integer("vlan_access");
        List<Long> trunk = n.has("vlan_trunk") ? n.integers("vlan_trunk") : List.of();
        Long nativeVlan = n.integer("native_vlan");
        if (n.has("vlan_access") && n.has("vlan_trunk")) {
            n.error("vlan_trunk", Reason.CONFLICT, "set either vlan_access or vlan_trunk, not both");
            ok = false;
        }
        if (n.has("native_vlan") && !n.has("vlan_trunk")) {
            n.error("native_vlan", Reason.CONFLICT, "native_vlan applies to a trunk port; set vlan_trunk too");
            ok = false;
        }
        if (n.has("vlan_trunk") && trunk != null && trunk.isEmpty()) {
            n.error("vlan_trunk", Reason.INVALID_VALUE,
                "an empty trunk carries no VLAN; list at least one or remove the key");
            ok = false;
        }
        Boolean spoofing = n.bool("mac_spoofing");
        Boolean dhcp = n.bool("dhcp_guard");
        Boolean router = n.bool("router_guard");
        Long maxBandwidth = n.bandwidth("max_bandwidth");
        Long maxBandwidthIn = n.bandwidth("max_bandwidth_in");
        List<String> acl = n.strings("acl");
        if (acl != null) {
            for (String rule : acl) {
                try {
                    io.phost.vswitch.PortAcl.parse(rule);
                } catch (IllegalArgumentException e) {
                    n.error("acl", Reason.INVALID_VALUE, e.getMessage());
                    ok = false;
                }
            }
        }
        List<String> ips = n.strings("ip_addresses");
        if (ips != null) {
            for (String ip : ips) {
                if (!ip.equals("dhcp") && !ip.equals("dhcp6") && (ip.indexOf(':') >= 0 ? !NicConfig.isUnicastIpv6(ip) : !NicConfig.isUnicastIpv4(ip))) {
                    n.error("ip_addresses", Reason.INVALID_VALUE,
                        "'" + ip + "' is not a unicast IPv4 address (a.b.c.d), a unicast IPv6 address (fd00::5), \"dhcp\" nor \"dhcp6\"");
                    ok = false;
                }
            }
        }
        Long weight = n.integer("min_bandwidth_weight");
        Long minBandwidth = n.bandwidth("min_bandwidth");
        Long vmq = n.integer("vmq_weight");
        Long iov = n.integer("iov_weight");
        Long mtu = n.has("mtu") ? n.integer("mtu") : null;
        NicConfig.Mirroring mirroring = n.enumValue("port_mirroring", NicConfig.Mirroring.class);
        Long storm = n.integer("storm_limit");
        Long maxMacs = n.integer("max_mac_addresses");
        Long queues = n.integer("queues");
        if (n.has("mtu") && mtu == null) {
            ok = false;
        }
        if (sw != null && mtu != null && mtu > sw.mtu()) {
            n.error("mtu", Reason.CONFLICT, "mtu " + mtu + " is above the mtu " + sw.mtu() + " of switch '" + sw.name() + "'"
                + "; raise the switch's mtu or lower this one");
            ok = false;
        }
        if (sw != null && weight != null && weight > 0 && sw.bandwidthMode() != SwitchConfig.BandwidthMode.WEIGHT) {
            n.error("min_bandwidth_weight", Reason.CONFLICT, "switch '" + sw.name() + "' has bandwidth_mode = \""
                + sw.bandwidthMode().name().toLowerCase(Locale.ROOT) + "\"; weights need \"weight\"");
            ok = false;
        }
        if (sw != null && minBandwidth != null && minBandwidth > 0 && sw.bandwidthMode() != SwitchConfig.BandwidthMode.ABSOLUTE) {
            n.error("min_bandwidth", Reason.CONFLICT, "switch '" + sw.name() + "' has bandwidth_mode = \""
                + sw.bandwidthMode().name().toLowerCase(Locale.ROOT) + "\"; reservations need \"absolute\"");
            ok = false;
        }
        if (minBandwidth != null && minBandwidth > MAX_RESERVATION) {
            n.error("min_bandwidth", Reason.OUT_OF_RANGE, "a reservation is at most 100Gbps (12500000000 bytes/s)");
            ok = false;
        }
        if (sw != null && iov != null && iov > 0 && !sw.enableIov()) {
            n.error("iov_weight", Reason.CONFLICT, "switch '" + sw.name() + "' does not have enable_iov = true");
            ok = false;
        }
        if (!ok || (access == null && n.has("vlan_access")) || (nativeVlan == null && n.has("native_vlan"))
            || trunk == null || spoofing == null || dhcp == null || router == null || maxBandwidth == null
            || maxBandwidthIn == null || minBandwidth == null || ips == null || acl == null || weight == null || vmq == null || iov == null || mirroring == null || storm == null || maxMacs == null
            || queues == null) {
            return null;
        }
        NicConfig nic = new NicConfig(switchName, mac, access == null ? null : access.intValue(),
            trunk.stream().map(Long::intValue).toList(), nativeVlan == null ? null : nativeVlan.intValue(),
            spoofing, dhcp, router, maxBandwidth, weight.intValue(), vmq.intValue(), iov.intValue(),
            mtu != null ? mtu.intValue() : sw != null ? sw.mtu() : 1500, mirroring, storm, maxMacs.intValue(),
            maxBandwidthIn, ips, acl, minBandwidth, queues.intValue());
        return new NicDraft(partition, index, nic, new String[] {mac});
    }

    /** Normalizes a MAC to lower-case colon form, or reports why it is unusable. */
    private static String mac(TomlNode n, String text) {
        if (!MAC.matcher(text).matches()) {
            n.error("mac", Reason.INVALID_VALUE, "'" + text + "' is not a MAC address like \"02:50:48:00:00:01\"");
            return null;
        }
        String mac = text.toLowerCase(Locale.ROOT).replace('-', ':');
        int first = Integer.parseInt(mac.substring(0, 2), 16);
        if ((first & 1) != 0) {
            n.error("mac", Reason.INVALID_VALUE,
                mac + " is a multicast address; a NIC needs a unicast MAC (first octet even)");
            return null;
        }
        if (mac.equals("00:00:00:00:00:00")) {
            n.error("mac", Reason.INVALID_VALUE, "the all-zero MAC is not a valid NIC address");
            return null;
        }
        return mac;
    }

    /** Stable MACs for NICs without one: from (host, partition, index), skipping any already taken. */
    static void assignMacs(HostConfig host, List<PartitionDraft> partitions, Map<String, String> taken) {
        for (NicDraft d : partitions.stream().flatMap(p -> p.nics.stream()).toList()) {
            if (d.mac()[0] != null) {
                continue;
            }
            CRC32 crc = new CRC32();
            crc.update((host.name() + "/" + d.partition() + "/" + d.index()).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            int suffix = (int) crc.getValue() & 0xFFFFFF;
            String mac;
            do {
                mac = String.format(Locale.ROOT, "%s:%02x:%02x:%02x", GENERATED_MAC_PREFIX,
                    suffix >>> 16 & 0xFF, suffix >>> 8 & 0xFF, suffix & 0xFF);
                suffix = (suffix + 1) & 0xFFFFFF;
            } while (taken.containsKey(mac));
            taken.put(mac, d.partition() + ".nic[" + d.index() + "]");
            d.mac()[0] = mac;
        }
    }
}
