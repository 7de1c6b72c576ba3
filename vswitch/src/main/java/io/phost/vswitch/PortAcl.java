package io.phost.vswitch;

import java.util.Locale;
import org.agrona.DirectBuffer;

/**
 * A port ACL rule, as Add-VMNetworkAdapterAcl sets one: allow or deny traffic to or from a remote IPv4 prefix or
 * MAC address, in one direction or both. Directions are the partition's: OUTBOUND is what it sends (checked as
 * the frame enters the switch, remote = destination), INBOUND what it receives (checked as the frame leaves to
 * it, remote = source). Of the rules that match a frame the most specific wins (a MAC rule over any prefix, a
 * longer prefix over a shorter one), DENY over ALLOW at equal specificity; a frame no rule matches is allowed.
 * IPv4 rules look at IPv4 packets and at ARP (sender or target address); other ethertypes match MAC rules only.
 * <pre>
 * text form (config key acl): "ACTION DIRECTION REMOTE"
 *   ACTION     allow | deny
 *   DIRECTION  inbound | outbound | both
 *   REMOTE     a.b.c.d[/len] | xx:xx:xx:xx:xx:xx | any (= 0.0.0.0/0)
 * </pre>
 *
 * @param deny          true for DENY
 * @param inbound       applies to frames towards the port
 * @param outbound      applies to frames from the port
 * @param mac           remote MAC, or -1 for an IPv4 rule
 * @param ip            remote IPv4 network (big-endian int) of an IPv4 rule
 * @param prefixLength  0..32 for an IPv4 rule
 */
public record PortAcl(boolean deny, boolean inbound, boolean outbound, long mac, int ip, int prefixLength) {
    /** Specificity of a MAC rule: above any IPv4 prefix. */
    private static final int MAC_SPECIFICITY = 64;

    public PortAcl {
        if (!inbound && !outbound) {
            throw new IllegalArgumentException("an ACL rule needs a direction");
        }
        if (mac == -1 && (prefixLength < 0 || prefixLength > 32)) {
            throw new IllegalArgumentException("prefix length must be 0..32: " + prefixLength);
        }
        if (mac == -1) {
            ip &= mask(prefixLength);
        }
    }

    /** Parses the text form (see the class comment); the message of the exception says what is wrong. */
    public static PortAcl parse(String text) {
        String[] w = text.trim().toLowerCase(Locale.ROOT).split("\\s+");
        if (w.length != 3) {
            throw new IllegalArgumentException("'" + text + "' is not \"allow|deny inbound|outbound|both REMOTE\"");
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
        String r = w[2];
        if (r.equals("any")) {
            return new PortAcl(deny, in, out, -1, 0, 0);
        }
        if (r.indexOf(':') >= 0) {
            long mac = EthernetDescriptor.parseMac(r);
            return new PortAcl(deny, in, out, mac, 0, 0);
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
        return new PortAcl(deny, in, out, -1, ip, len);
    }

    private static int mask(int len) {
        return len == 0 ? 0 : -1 << (32 - len);
    }

    /**
     * True when {@code acls} let the frame pass. {@code towardsPort}: INBOUND rules (the frame goes to the port;
     * remote = source), else OUTBOUND (remote = destination). {@code l3}..{@code end} is the payload of ethertype
     * {@code type}; {@code remoteMac} the remote side's MAC. Allocates nothing.
     */
    static boolean permits(PortAcl[] acls, boolean towardsPort, long remoteMac, DirectBuffer b, int l3, int end,
                           int type) {
        int remoteIp = 0;
        boolean hasIp = false;
        if (type == EthernetDescriptor.TYPE_IPV4 && end - l3 >= 20) {
            remoteIp = b.getInt(l3 + (towardsPort ? 12 : 16), java.nio.ByteOrder.BIG_ENDIAN);
            hasIp = true;
        } else if (type == EthernetDescriptor.TYPE_ARP && end - l3 >= 28) {
            remoteIp = b.getInt(l3 + (towardsPort ? 14 : 24), java.nio.ByteOrder.BIG_ENDIAN);
            hasIp = true;
        }
        int best = -1;
        boolean deny = false;
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
                if (!hasIp || (remoteIp & mask(a.prefixLength)) != a.ip) {
                    continue;
                }
                specificity = a.prefixLength;
            }
            if (specificity > best) {
                best = specificity;
                deny = a.deny;
            } else if (specificity == best) {
                deny |= a.deny;
            }
        }
        return !deny;
    }

    @Override
    public String toString() {
        String remote = mac != -1 ? EthernetDescriptor.formatMac(mac)
            : prefixLength == 0 ? "any" : ((ip >>> 24) & 0xff) + "." + ((ip >>> 16) & 0xff) + "." + ((ip >>> 8) & 0xff)
                + "." + (ip & 0xff) + "/" + prefixLength;
        return (deny ? "deny " : "allow ") + (inbound && outbound ? "both " : inbound ? "inbound " : "outbound ") + remote;
    }
}
