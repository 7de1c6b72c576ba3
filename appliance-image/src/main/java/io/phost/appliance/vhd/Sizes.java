package io.phost.appliance.vhd;

import io.phost.appliance.UserException;

import java.util.Locale;

/** Parses sizes with K/M/G/T suffixes (binary: 1K = 1024), as qemu-img and Hyper-V's cmdlets accept them. */
public final class Sizes {
    private Sizes() {}

    public static long parse(String text) {
        String s = text.trim().toUpperCase(Locale.ROOT);
        if (s.endsWith("IB")) {
            s = s.substring(0, s.length() - 2);
        } else if (s.endsWith("B") && s.length() > 1 && !Character.isDigit(s.charAt(s.length() - 2))) {
            s = s.substring(0, s.length() - 1);
        }
        int shift = 0;
        if (!s.isEmpty()) {
            switch (s.charAt(s.length() - 1)) {
                case 'K' -> shift = 10;
                case 'M' -> shift = 20;
                case 'G' -> shift = 30;
                case 'T' -> shift = 40;
                default -> shift = -1;
            }
            if (shift >= 0) {
                s = s.substring(0, s.length() - 1);
            } else {
                shift = 0;
            }
        }
        long n;
        try {
            n = Long.parseLong(s.trim());
        } catch (NumberFormatException e) {
            throw new UserException("not a size: \"" + text + "\" (use a number with an optional K, M, G or T suffix)", 2);
        }
        if (n < 0 || (shift > 0 && n > (Long.MAX_VALUE >> shift))) {
            throw new UserException("size out of range: " + text, 2);
        }
        return n << shift;
    }

    /** A size, or one relative to {@code current} with a leading + or - (qemu-img resize's "+1G"). */
    public static long parseRelative(String text, long current) {
        String t = text.trim();
        if (t.startsWith("+") || t.startsWith("-")) {
            long delta = parse(t.substring(1));
            try {
                return t.startsWith("+") ? Math.addExact(current, delta) : Math.subtractExact(current, delta);
            } catch (ArithmeticException e) {
                throw new UserException("size out of range: " + text, 2);
            }
        }
        return parse(t);
    }

    /** 1.5 GiB style, for messages. */
    public static String human(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return u == 0 ? bytes + " B" : String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
