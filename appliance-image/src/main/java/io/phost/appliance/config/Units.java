package io.phost.appliance.config;

import io.phost.core.text.ByteSize;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Sizes and bandwidths written by people: {@code "64GiB"}, {@code "512M"}, {@code "100Mbps"}, {@code "10MB/s"}.
 *
 * <p>Sizes: every unit is a power of 1024, as in qemu-img and Hyper-V's PowerShell ({@code K}, {@code KB} and
 * {@code KiB} all mean 1024 bytes); units are case-insensitive. Bandwidths: bits per second with decimal
 * prefixes ({@code bps kbps Mbps Gbps Tbps}, network convention), or bytes per second with decimal
 * ({@code B/s KB/s MB/s GB/s TB/s}) or binary ({@code KiB/s MiB/s GiB/s TiB/s}) prefixes. A bare integer is bytes
 * (sizes) or bytes per second (bandwidths). Every result is in bytes or bytes per second; bit rates are rounded
 * down to whole bytes.
 */
public final class Units {
    public static final long KIB = ByteSize.KIB;
    public static final long MIB = ByteSize.MIB;
    public static final long GIB = ByteSize.GIB;
    public static final long TIB = ByteSize.TIB;
    public static final long PIB = ByteSize.PIB;

    private static final Pattern BANDWIDTH = Pattern.compile("\\s*(\\d{1,19})\\s*([a-zA-Z]*(?:/s)?)\\s*");

    private Units() {
    }

    /** Why a size or bandwidth string was refused; the message is meant for the user. */
    public static final class UnitException extends Exception {
        UnitException(String message) {
            super(message);
        }
    }

    /** Parses a size string into bytes ({@link ByteSize}: the one size grammar of config, CLI and guest tools). */
    public static long parseSize(String text) throws UnitException {
        try {
            return ByteSize.parse(text);
        } catch (IllegalArgumentException e) {
            throw new UnitException(e.getMessage());
        }
    }

    /** Parses a bandwidth string into bytes per second. */
    public static long parseBandwidth(String text) throws UnitException {
        Matcher m = BANDWIDTH.matcher(text);
        if (!m.matches()) {
            throw new UnitException("'" + text + "' is not a bandwidth (examples: \"100Mbps\", \"10MB/s\", \"1GiB/s\")");
        }
        long n = number(m.group(1), text);
        String unit = m.group(2);
        String lower = unit.toLowerCase(Locale.ROOT);
        if (unit.isEmpty()) {
            return n; // bytes per second, like a bare integer
        }
        try {
            if (unit.endsWith("bps")) { // bits: the lower-case b is what tells bits from bytes
                long bits = Math.multiplyExact(n, decimal(lower.substring(0, lower.length() - 3), unit));
                return bits / 8;
            }
            if (unit.endsWith("B/s")) {
                String prefix = lower.substring(0, lower.length() - 3);
                long scale = switch (prefix) {
                    case "ki" -> KIB;
                    case "mi" -> MIB;
                    case "gi" -> GIB;
                    case "ti" -> TIB;
                    default -> decimal(prefix, unit);
                };
                return Math.multiplyExact(n, scale);
            }
        } catch (ArithmeticException e) {
            throw new UnitException("'" + text + "' is too large");
        }
        throw new UnitException("unknown bandwidth unit '" + unit
            + "' (use bps, kbps, Mbps, Gbps for bits per second or B/s, KB/s, MB/s, GB/s, MiB/s, GiB/s for bytes)");
    }

    private static long decimal(String prefix, String unit) throws UnitException {
        return switch (prefix) {
            case "" -> 1;
            case "k" -> 1_000L;
            case "m" -> 1_000_000L;
            case "g" -> 1_000_000_000L;
            case "t" -> 1_000_000_000_000L;
            default -> throw new UnitException("unknown bandwidth unit '" + unit
                + "' (use bps, kbps, Mbps, Gbps for bits per second or B/s, KB/s, MB/s, GB/s, MiB/s, GiB/s for bytes)");
        };
    }

    private static long number(String digits, String text) throws UnitException {
        try {
            return Long.parseLong(digits);
        } catch (NumberFormatException e) {
            throw new UnitException("'" + text + "' is too large");
        }
    }

    /** Renders bytes with the largest binary unit that divides them exactly: 4096 → "4KiB", 3 → "3". */
    public static String formatSize(long bytes) {
        String[] names = {"PiB", "TiB", "GiB", "MiB", "KiB"};
        long[] scales = {PIB, TIB, GIB, MIB, KIB};
        for (int i = 0; i < scales.length; i++) {
            if (bytes != 0 && bytes % scales[i] == 0) {
                return (bytes / scales[i]) + names[i];
            }
        }
        return Long.toString(bytes);
    }
}
