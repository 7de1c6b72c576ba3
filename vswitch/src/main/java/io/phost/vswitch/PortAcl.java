package io.phost.vswitch;

import java.util.Locale;
import org.agrona.DirectBuffer;

/**
 * A port ACL rule, as Add-VMNetworkAdapterAcl sets one (remote IPv4 prefix or MAC, one direction or both) and as
 * Add-VMNetworkAdapterExtendedAcl extends it (an IP protocol, a remote port, stateful). Directions are the
 * partition's: OUTBOUND is what it sends (checked as the frame enters the switch, remote = destination), INBOUND
 * what it receives (checked as the frame leaves to it, remote = source). Of the rules that match a frame the most
 * specific wins (a MAC rule over any IP rule; then the longer prefix; then a rule naming a remote port, then one
 * naming a protocol), DENY over ALLOW at equal specificity; a frame no rule matches is allowed. IPv4 rules without
 * a protocol look at IPv4 packets and at ARP (sender or target address); rules with a protocol only at IPv4 packets
 * of that protocol (ports: first fragments of TCP/UDP); IPv6 rules at IPv6 packets (the protocol after the extension
 * headers; {@code icmp} is ICMPv6 there); {@code any} at all three; other ethertypes match MAC rules only.
 * <p>A <b>stateful</b> ALLOW rule (TCP/UDP) that lets a packet through records its flow in the port's
 * {@link AclFlowTable}; packets of a recorded flow pass both ways before any rule is looked at, so
 * {@code "allow outbound any tcp stateful"} next to {@code "deny inbound any tcp"} lets the partition's own
 * connections and their replies through while unsolicited inbound TCP stays out.
 * <pre>
 * text form (config key acl): "ACTION DIRECTION REMOTE [PROTOCOL[:PORT]] [stateful]"
 *   ACTION     allow | deny
 *   DIRECTION  inbound | outbound | both
 *   REMOTE     a.b.c.d[/len] | IPv6[/len] (fd00::/64) | xx:xx:xx:xx:xx:xx | any (IPv4 and IPv6)
 *   PROTOCOL   tcp | udp | icmp, optionally with the remote port (1..65535, tcp and udp)
 *   stateful   allow + tcp or udp only: replies of a flow this rule let through pass the other way
 * </pre>
 *
 * @param deny          true for DENY
 * @param inbound       applies to frames towards the port
 * @param outbound      applies to frames from the port
 * @param mac           remote MAC, or -1 for an IPv4 rule
 * @param ip            remote IPv4 network (big-endian int) of an IPv4 rule
 * @param prefixLength  0..32 for an IPv4 rule
 * @param protocol      IP protocol number (6 TCP, 17 UDP, 1 ICMP), 0 = any (and ARP)
 * @param remotePort    remote TCP/UDP port, 0 = any
 * @param stateful      record the flows this ALLOW rule admits
 * @param family        4 or 6 for an IP rule of that family, 0 for {@code any} (and MAC rules)
 * @param ip6Hi         remote IPv6 network, high 64 bits (family 6)
 * @param ip6Lo         remote IPv6 network, low 64 bits (family 6)
 */
public record PortAcl(boolean deny, boolean inbound, boolean outbound, long mac, int ip, int prefixLength,
                      int protocol, int remotePort, boolean stateful, int family, long ip6Hi, long ip6Lo) {
    /** {@link #decide}: the frame is denied. */
    static final int DENY = 0;
    /** {@link #decide}: the frame is allowed. */
    static final int ALLOW = 1;
    /** {@link #decide}: allowed by a stateful rule: record its flow. */
    static final int ALLOW_STATEFUL = 2;
    /** Specificity of a MAC rule: above any IP rule. */
    private static final int MAC_SPECIFICITY = 1000;

    public PortAcl {
        if (!inbound && !outbound) {
            throw new IllegalArgumentException("an ACL rule needs a direction");
        }
        int maxPrefix = family == 6 ? 128 : family == 4 ? 32 : 0;
        if (mac == -1 && (prefixLength < 0 || prefixLength > maxPrefix)) {
            throw new IllegalArgumentException("prefix length must be 0.." + maxPrefix + ": " + prefixLength);
        }
        if (protocol != 0 && protocol != 1 && protocol != 6 && protocol != 17) {
            throw new IllegalArgumentException("protocol must be tcp (6), udp (17) or icmp (1): " + protocol);
        }
        if (remotePort < 0 || remotePort > 65535 || (remotePort != 0 && protocol != 6 && protocol != 17)) {
            throw new IllegalArgumentException("a remote port (1..65535) needs tcp or udp: " + remotePort);
        }
        if (stateful && (deny || (protocol != 6 && protocol != 17))) {
            throw new IllegalArgumentException("stateful needs an allow rule for tcp or udp");
        }
        if (mac != -1 && protocol != 0) {
            throw new IllegalArgumentException("a MAC rule takes no protocol");
        }
        if (mac == -1 && family == 4) {
            ip &= mask(prefixLength);
        }
        if (mac == -1 && family == 6) {
            ip6Hi &= mask64(Math.min(64, prefixLength));
            ip6Lo &= mask64(Math.max(0, prefixLength - 64));
        }
    }

    /** An IPv4 rule (or MAC rule, {@code mac} != -1). */
    public PortAcl(boolean deny, boolean inbound, boolean outbound, long mac, int ip, int prefixLength,
                   int protocol, int remotePort, boolean stateful) {
        this(deny, inbound, outbound, mac, ip, prefixLength, protocol, remotePort, stateful, mac == -1 ? 4 : 0, 0, 0);
    }

    /** A basic rule (Add-VMNetworkAdapterAcl): any protocol, not stateful. */
    public PortAcl(boolean deny, boolean inbound, boolean outbound, long mac, int ip, int prefixLength) {
        this(deny, inbound, outbound, mac, ip, prefixLength, 0, 0, false);
    }

    /** Parses the text form (see the class comment); the message of the exception says what is wrong. */
    public static PortAcl parse(String text) {
        String[] w = text.trim().toLowerCase(Locale.ROOT).split("\\s+");
        if (w.length < 3 || w.length > 5) {
            throw new IllegalArgumentException("'" + text
                + "' is not \"allow|deny inbound|outbound|both REMOTE [tcp|udp|icmp[:PORT]] [stateful]\"");
        }
        boolean deny = switch (w[0]) {
            case "allow" -> false;
            case "deny" -> true;
            default -> throw new IllegalArgumentException("'" + w[0] + "' is not allow or deny");
        };
        boolean in = w[1].equals("inbound") || w[1].equals("both");
        boolean out = w[1].equals("outbound") || w[1].equals("both");
        if (!in && !out) {
            throw new IllegalArgumentException("'" + w[1] + "' is not inbound, outbound or both");
        }
        boolean stateful = w.length > 3 && w[w.length - 1].equals("stateful");
        int protocolWords = w.length - 3 - (stateful ? 1 : 0);
        int protocol = 0;
        int port = 0;
        if (protocolWords > 1) {
            throw new IllegalArgumentException("'" + w[w.length - 1] + "' is not stateful");
        }
        if (protocolWords == 1) {
            String[] pp = w[3].split(":", -1);
            protocol = switch (pp[0]) {
                case "tcp" -> 6;
                case "udp" -> 17;
                case "icmp" -> 1;
                default -> throw new IllegalArgumentException("'" + w[3] + "' is not tcp, udp or icmp (with :PORT)");
            };
            if (pp.length > 2 || (pp.length == 2 && !pp[1].matches("[0-9]{1,5}"))) {
                throw new IllegalArgumentException("'" + w[3] + "' has no port 1..65535 after ':'");
            }
            port = pp.length == 2 ? Integer.parseInt(pp[1]) : 0;
            if (pp.length == 2 && (port < 1 || port > 65535)) {
                throw new IllegalArgumentException("'" + w[3] + "' has no port 1..65535 after ':'");
            }
        }
        if (stateful && (deny || (protocol != 6 && protocol != 17))) {
            throw new IllegalArgumentException("'" + text + "': stateful needs an allow rule for tcp or udp");
        }
        String r = w[2];
        if (r.equals("any")) {
            return new PortAcl(deny, in, out, -1, 0, 0, protocol, port, stateful, 0, 0, 0);
        }
        if (r.indexOf(':') >= 0 && !r.matches("([0-9a-f]{2}:){5}[0-9a-f]{2}")) {
            int slash6 = r.indexOf('/');
            int len6 = 128;
            if (slash6 >= 0) {
                String l = r.substring(slash6 + 1);
                if (!l.matches("[0-9]{1,3}") || Integer.parseInt(l) > 128) {
                    throw new IllegalArgumentException("'" + w[2] + "' has no prefix length 0..128 after '/'");
                }
                len6 = Integer.parseInt(l);
                r = r.substring(0, slash6);
            }
            long[] a;
            try {
                a = PortConfig.ipv6(r);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("'" + w[2] + "' is not an IPv4 or IPv6 address or prefix, a MAC or any");
            }
            return new PortAcl(deny, in, out, -1, 0, len6, protocol, port, stateful, 6, a[0], a[1]);
        }
        if (r.indexOf(':') >= 0) {
            if (protocol != 0) {
                throw new IllegalArgumentException("'" + text + "': a MAC rule takes no protocol");
            }
            return new PortAcl(deny, in, out, EthernetDescriptor.parseMac(r), 0, 0);
        }
        int slash = r.indexOf('/');
        int len = 32;
        if (slash >= 0) {
            try {
                len = Integer.parseInt(r.substring(slash + 1));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + r + "' has no prefix length after '/'");
            }
            r = r.substring(0, slash);
        }
        String[] q = r.split("\\.", -1);
        if (q.length != 4) {
            throw new IllegalArgumentException("'" + w[2] + "' is not an IPv4 address or prefix, a MAC or any");
        }
        int ip = 0;
        for (String s : q) {
            if (s.isEmpty() || s.length() > 3 || !s.chars().allMatch(Character::isDigit) || Integer.parseInt(s) > 255) {
                throw new IllegalArgumentException("'" + w[2] + "' is not an IPv4 address or prefix, a MAC or any");
            }
            ip = (ip << 8) | Integer.parseInt(s);
        }
        return new PortAcl(deny, in, out, -1, ip, len, protocol, port, stateful);
    }

    private static int mask(int len) {
        return len == 0 ? 0 : -1 << (32 - len);
    }

    private static long mask64(int len) {
        return len == 0 ? 0 : -1L << (64 - len);
    }

    /**
     * DENY, ALLOW or ALLOW_STATEFUL for a frame. {@code towardsPort}: INBOUND rules (the frame goes to the port;
     * remote = source), else OUTBOUND (remote = destination). {@code l3}..{@code end} is the payload of ethertype
     * {@code type}; {@code remoteMac} the remote side's MAC. Allocates nothing.
     */
    static int decide(PortAcl[] acls, boolean towardsPort, long remoteMac, DirectBuffer b, int l3, int end, int type) {
        int remoteIp = 0;
        long remoteHi = 0;
        long remoteLo = 0;
        int family = 0; // of the packet: 4 (IPv4, ARP), 6, or 0 (no IP: MAC rules only)
        boolean hasIp = false;
        int proto = -1; // -1: not an IPv4 packet (ARP matches IP rules without a protocol only)
        int remotePort = -1;
        if (type == EthernetDescriptor.TYPE_IPV4 && end - l3 >= 20) {
            remoteIp = b.getInt(l3 + (towardsPort ? 12 : 16), java.nio.ByteOrder.BIG_ENDIAN);
            hasIp = true;
            family = 4;
            proto = b.getByte(l3 + 9) & 0xff;
            int l4 = l3 + (b.getByte(l3) & 0x0f) * 4;
            boolean first = (EthernetDescriptor.u16(b, l3 + 6) & 0x1fff) == 0;
            if ((proto == 6 || proto == 17) && first && end - l4 >= 4) {
                remotePort = EthernetDescriptor.u16(b, l4 + (towardsPort ? 0 : 2));
            }
        } else if (type == EthernetDescriptor.TYPE_ARP && end - l3 >= 28) {
            remoteIp = b.getInt(l3 + (towardsPort ? 14 : 24), java.nio.ByteOrder.BIG_ENDIAN);
            hasIp = true;
            family = 4;
        } else if (type == EthernetDescriptor.TYPE_IPV6 && end - l3 >= 40) {
            end = Guards.end6(b, l3, end);
            remoteHi = b.getLong(l3 + (towardsPort ? 8 : 24), java.nio.ByteOrder.BIG_ENDIAN);
            remoteLo = b.getLong(l3 + (towardsPort ? 16 : 32), java.nio.ByteOrder.BIG_ENDIAN);
            hasIp = true;
            family = 6;
            long u = Guards.upperLayer6(b, l3, end);
            if (u != Guards.HIDDEN && u != Guards.LATER_FRAGMENT) {
                proto = (int) (u >>> 32);
                proto = proto == 58 ? 1 : proto; // "icmp" is ICMPv6 in IPv6
                int l4 = (int) u;
                if ((proto == 6 || proto == 17) && end - l4 >= 4) {
                    remotePort = EthernetDescriptor.u16(b, l4 + (towardsPort ? 0 : 2));
                }
            }
        }
        int best = -1;
        boolean deny = false;
        boolean stateful = false;
        for (PortAcl a : acls) {
            if (towardsPort ? !a.inbound : !a.outbound) {
                continue;
            }
            int specificity;
            if (a.mac != -1) {
                if (a.mac != remoteMac) {
                    continue;
                }
                specificity = MAC_SPECIFICITY;
            } else {
                if (!hasIp || (a.family != 0 && a.family != family)
                    || (a.family == 4 && (remoteIp & mask(a.prefixLength)) != a.ip)
                    || (a.family == 6 && ((remoteHi & mask64(Math.min(64, a.prefixLength))) != a.ip6Hi
                        || (remoteLo & mask64(Math.max(0, a.prefixLength - 64))) != a.ip6Lo))
                    || (a.protocol != 0 && a.protocol != proto) || (a.remotePort != 0 && a.remotePort != remotePort)) {
                    continue;
                }
                specificity = a.prefixLength * 4 + (a.remotePort != 0 ? 2 : 0) + (a.protocol != 0 ? 1 : 0);
            }
            if (specificity > best) {
                best = specificity;
                deny = a.deny;
                stateful = a.stateful;
            } else if (specificity == best) {
                deny |= a.deny;
                stateful |= a.stateful;
            }
        }
        return deny ? DENY : stateful ? ALLOW_STATEFUL : ALLOW;
    }

    /** True when {@code acls} let the frame pass (see {@link #decide}). */
    static boolean permits(PortAcl[] acls, boolean towardsPort, long remoteMac, DirectBuffer b, int l3, int end,
                           int type) {
        return decide(acls, towardsPort, remoteMac, b, l3, end, type) != DENY;
    }

    @Override
    public String toString() {
        String remote = mac != -1 ? EthernetDescriptor.formatMac(mac)
            : family == 0 ? "any"
            : family == 6 ? ipv6Text(ip6Hi, ip6Lo) + "/" + prefixLength
            : prefixLength == 0 ? "0.0.0.0/0" : ((ip >>> 24) & 0xff) + "." + ((ip >>> 16) & 0xff) + "." + ((ip >>> 8) & 0xff)
                + "." + (ip & 0xff) + "/" + prefixLength;
        String proto = protocol == 0 ? "" : " " + (protocol == 6 ? "tcp" : protocol == 17 ? "udp" : "icmp")
            + (remotePort == 0 ? "" : ":" + remotePort);
        return (deny ? "deny " : "allow ") + (inbound && outbound ? "both " : inbound ? "inbound " : "outbound ") + remote
            + proto + (stateful ? " stateful" : "");
    }

    private static String ipv6Text(long hi, long lo) {
        byte[] b = java.nio.ByteBuffer.allocate(16).putLong(hi).putLong(lo).array();
        try {
            return java.net.InetAddress.getByAddress(b).getHostAddress().replaceFirst("(^|:)0(:0)+(:|$)", "::")
                .replaceFirst(":::", "::");
        } catch (java.net.UnknownHostException e) {
            throw new IllegalStateException(e); // 16 bytes is always an address
        }
    }
}
