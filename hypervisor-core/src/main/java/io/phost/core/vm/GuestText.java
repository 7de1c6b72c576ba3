package io.phost.core.vm;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Turns what a guest agent says into text phost shows: every string the guest chose is cut to a bound and
 * stripped of control characters (a hostile guest must not forge log lines or flood the status), and lists
 * are cut to {@link #MAX_ADDRESSES}.
 */
final class GuestText {
    static final int MAX_ADDRESSES = 16;

    private GuestText() {}

    static String clean(String s, int max) {
        StringBuilder b = new StringBuilder(Math.min(s.length(), max));
        for (int i = 0; i < s.length() && b.length() < max; i++) {
            char c = s.charAt(i);
            b.append(Character.isISOControl(c) || Character.isSurrogate(c) ? '?' : c);
        }
        return s.length() > max ? b + "…" : b.toString();
    }

    static String field(Map<?, ?> m, String key, int max) {
        return m.get(key) instanceof String s ? clean(s, max) : "";
    }

    /** guest-get-osinfo: "PRETTY-NAME (kernel RELEASE)" (unless the name shows the release), or the name and version when there is no pretty name. */
    static String os(Map<?, ?> m) {
        String pretty = field(m, "pretty-name", 128);
        String base = !pretty.isEmpty() ? pretty : (field(m, "name", 64) + " " + field(m, "version", 64)).strip();
        String kernel = field(m, "kernel-release", 64);
        return kernel.isEmpty() || base.contains(kernel) ? base : base + " (kernel " + kernel + ")";
    }

    /** guest-network-get-interfaces: "IFNAME ADDRESS/PREFIX" for every address but loopback's. */
    static List<String> addresses(Object reply) {
        List<String> out = new ArrayList<>();
        if (!(reply instanceof List<?> ifaces)) {
            return out;
        }
        for (Object o : ifaces) {
            if (!(o instanceof Map<?, ?> iface) || !(iface.get("ip-addresses") instanceof List<?> addrs)) {
                continue;
            }
            String ifname = field(iface, "name", 16);
            for (Object a : addrs) {
                if (out.size() >= MAX_ADDRESSES) {
                    return out;
                }
                if (a instanceof Map<?, ?> am && !"lo".equals(ifname)) {
                    String ip = field(am, "ip-address", 64);
                    String prefix = am.get("prefix") instanceof Long p ? "/" + p : "";
                    out.add(ifname + " " + ip + prefix);
                }
            }
        }
        return out;
    }
}
