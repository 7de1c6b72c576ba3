package io.phost.appliance.vhd;

import io.phost.core.text.ByteSize;

import io.phost.appliance.UserException;

import java.util.Locale;

/** Sizes on the command line: {@link ByteSize} (binary K/M/G/T/P, as qemu-img and Hyper-V's cmdlets), plus relative "+1G". */
public final class Sizes {
    private Sizes() {}

    public static long parse(String text) {
        try {
            return ByteSize.parse(text);
        } catch (IllegalArgumentException e) {
            throw new UserException(e.getMessage(), 2);
        }
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
