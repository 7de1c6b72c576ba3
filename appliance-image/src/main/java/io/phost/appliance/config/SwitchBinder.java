package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import java.util.List;
import java.util.Locale;

/** Binds [[switch]] tables: type, uplinks, host vNIC address and NAT. */
final class SwitchBinder {
    private SwitchBinder() {
    }

    static SwitchConfig switchConfig(TomlNode n) {
        String name = n.string("name");
        SwitchConfig.Type type = n.enumValue("type", SwitchConfig.Type.class);
        String uplink = n.string("uplink");
        Boolean management = n.bool("allow_management_os");
        Boolean iov = n.bool("enable_iov");
        SwitchConfig.BandwidthMode mode = n.enumValue("bandwidth_mode", SwitchConfig.BandwidthMode.class);
        Long mtu = n.integer("mtu");
        Long vmqWorkers = n.integer("vmq_workers");
        Long uplinkBandwidth = n.bandwidth("uplink_bandwidth");
        String hostAddress = n.string("host_address");
        Boolean nat = n.bool("nat");
        String natPrefix = n.string("nat_prefix");
        List<String> uplinks = n.strings("uplinks");
        boolean ok = true;
        if (Boolean.TRUE.equals(nat) || natPrefix != null) {
            String why = natProblem(type, hostAddress, Boolean.TRUE.equals(nat), natPrefix);
            if (why != null) {
                n.error(natPrefix != null && why.startsWith("nat_prefix") ? "nat_prefix" : "nat",
                    Reason.CONFLICT, why);
                ok = false;
            } else if (natPrefix == null) {
                natPrefix = subnetOf(hostAddress);
            }
        }
        if (uplinks != null && !uplinks.isEmpty()) {
            if (n.has("uplink")) {
                n.error("uplinks", Reason.CONFLICT, "give either uplink (one interface) or uplinks (a team), not both");
                ok = false;
            } else if (uplinks.size() < 2 || uplinks.size() > 8) {
                n.error("uplinks", Reason.OUT_OF_RANGE, "a team has 2..8 interfaces, not " + uplinks.size()
                    + (uplinks.size() == 1 ? " (use uplink = \"" + uplinks.getFirst() + "\")" : ""));
                ok = false;
            } else if (uplinks.stream().distinct().count() != uplinks.size()) {
                n.error("uplinks", Reason.DUPLICATE, "an interface is listed twice: " + uplinks);
                ok = false;
            } else if (type != null && type != SwitchConfig.Type.EXTERNAL) {
                n.error("uplinks", Reason.CONFLICT, "only an external switch has uplinks; this one is "
                    + type.name().toLowerCase(Locale.ROOT));
                ok = false;
            } else {
                for (String u : uplinks) {
                    if (!isInterfaceName(u)) {
                        n.error("uplinks", Reason.INVALID_VALUE,
                            "'" + u + "' is not a Linux interface name (1-15 characters, no '/' or spaces)");
                        ok = false;
                    }
                }
            }
        }
        if (hostAddress != null) {
            String why = hostAddressProblem(hostAddress);
            if (why != null) {
                n.error("host_address", Reason.INVALID_VALUE, why);
                ok = false;
            } else if (type != null && type != SwitchConfig.Type.INTERNAL) {
                n.error("host_address", Reason.CONFLICT, "only an internal switch has a host vNIC to address; this one is "
                    + type.name().toLowerCase(Locale.ROOT));
                ok = false;
            }
        }
        if (type == SwitchConfig.Type.PRIVATE && uplinkBandwidth != null && uplinkBandwidth > 0) {
            n.error("uplink_bandwidth", Reason.CONFLICT, "a private switch has neither an uplink nor a host TAP to cap");
            ok = false;
        }
        if (uplink != null && !isInterfaceName(uplink)) {
            n.error("uplink", Reason.INVALID_VALUE,
                "'" + uplink + "' is not a Linux interface name (1-15 characters, no '/' or spaces)");
            ok = false;
        }
        if (type == SwitchConfig.Type.EXTERNAL && !n.has("uplink") && (uplinks == null || uplinks.isEmpty())) {
            n.errorHere(Reason.CONFLICT, "an external switch needs uplink = \"<host interface>\" (or uplinks = [...] for a team)");
            ok = false;
        }
        if (type != null && type != SwitchConfig.Type.EXTERNAL) {
            String t = type.name().toLowerCase(Locale.ROOT);
            if (n.has("uplink")) {
                n.error("uplink", Reason.CONFLICT, "only an external switch has an uplink; this one is " + t);
                ok = false;
            }
            if (Boolean.TRUE.equals(management)) {
                n.error("allow_management_os", Reason.CONFLICT, "only applies to an external switch; this one is " + t);
                ok = false;
            }
            if (Boolean.TRUE.equals(iov)) {
                n.error("enable_iov", Reason.CONFLICT,
                    "SR-IOV needs a physical uplink: external switches only; this one is " + t);
                ok = false;
            }
        }
        if (!ok || name == null || type == null || management == null || iov == null || mode == null || mtu == null
            || vmqWorkers == null || uplinkBandwidth == null) {
            return null;
        }
        return new SwitchConfig(name, type, uplink, management, iov, mode, mtu.intValue(), vmqWorkers.intValue(),
            uplinkBandwidth, hostAddress, natPrefix, uplinks);
    }

    private static boolean isInterfaceName(String s) {
        return !s.isEmpty() && s.length() <= 15 && !s.contains("/") && s.chars().noneMatch(Character::isWhitespace);
    }

    /** Why NAT cannot be set up as asked (the message starts with the key at fault), or null. */
    static String natProblem(SwitchConfig.Type type, String hostAddress, boolean nat, String natPrefix) {
        if (!nat) {
            return "nat_prefix needs nat = true";
        }
        if (type != null && type != SwitchConfig.Type.INTERNAL) {
            return "nat: only an internal switch is NATed (its partitions reach the outside through the host); this one is "
                + type.name().toLowerCase(Locale.ROOT);
        }
        if (hostAddress == null || hostAddressProblem(hostAddress) != null) {
            return "nat needs host_address = \"A.B.C.D/N\": the partitions' gateway on the switch";
        }
        if (natPrefix == null) {
            return null;
        }
        int slash = natPrefix.indexOf('/');
        Integer net = slash < 0 ? null : NicConfig.ipv4(natPrefix.substring(0, slash));
        String len = slash < 0 ? "" : natPrefix.substring(slash + 1);
        if (net == null || len.isEmpty() || len.length() > 2 || !len.chars().allMatch(Character::isDigit)
            || Integer.parseInt(len) < 1 || Integer.parseInt(len) > 30) {
            return "nat_prefix: '" + natPrefix + "' is not an IPv4 prefix with a length 1..30 (e.g. \"10.91.0.0/24\")";
        }
        int bits = Integer.parseInt(len);
        int mask = (int) (0xffff_ffffL << (32 - bits));
        if ((net & ~mask) != 0) {
            return "nat_prefix: '" + natPrefix + "' has host bits set; the prefix is " + subnetOf(natPrefix);
        }
        int host = NicConfig.ipv4(hostAddress.substring(0, hostAddress.indexOf('/')));
        if ((host & mask) != net) {
            return "nat_prefix: " + natPrefix + " does not contain host_address " + hostAddress;
        }
        return null;
    }

    /** The network of an IPv4 CIDR: {@code 10.91.0.1/24} → {@code 10.91.0.0/24}. */
    static String subnetOf(String cidr) {
        int slash = cidr.indexOf('/');
        int bits = Integer.parseInt(cidr.substring(slash + 1));
        int net = NicConfig.ipv4(cidr.substring(0, slash)) & (int) (0xffff_ffffL << (32 - bits));
        return (net >>> 24) + "." + (net >>> 16 & 0xff) + "." + (net >>> 8 & 0xff) + "." + (net & 0xff) + "/" + bits;
    }

    /**
     * Why {@code text} is not a host address for an internal switch's TAP: an IPv4 unicast address with a prefix
     * length 1..30 that is neither the subnet's network nor its broadcast address; null when it is one.
     */
    static String hostAddressProblem(String text) {
        int slash = text.indexOf('/');
        String suffix = slash < 0 ? "" : text.substring(slash + 1);
        Integer ip = slash < 0 ? null : NicConfig.ipv4(text.substring(0, slash));
        if (ip == null || suffix.isEmpty() || suffix.length() > 2 || !suffix.chars().allMatch(Character::isDigit)) {
            return "'" + text + "' is not an IPv4 address with a prefix length (e.g. \"10.91.0.1/24\")";
        }
        int prefix = Integer.parseInt(suffix);
        if (prefix < 1 || prefix > 30) {
            return "prefix length /" + prefix + " is out of range (1..30)";
        }
        if (!NicConfig.isUnicastIpv4(text.substring(0, slash)) || (ip >>> 24) == 127) {
            return "'" + text.substring(0, slash) + "' is not a unicast address (not 0.0.0.0, loopback, multicast, broadcast)";
        }
        int host = ip & (int) ((1L << (32 - prefix)) - 1);
        if (host == 0 || host == (int) ((1L << (32 - prefix)) - 1)) {
            return "'" + text + "' is the subnet's " + (host == 0 ? "network" : "broadcast") + " address, not a host's";
        }
        return null;
    }
}
