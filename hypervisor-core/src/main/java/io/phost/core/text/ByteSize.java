package io.phost.core.text;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one parser for sizes written by people, used by the config file, the CLI ({@code phost vhd},
 * {@code phost guest io}) and the guest I/O tool: {@code "4096"}, {@code "4k"}, {@code "512MiB"}, {@code "64G"}.
 *
 * <p>Every unit is a power of 1024, as in qemu-img, fio and Hyper-V's PowerShell: {@code K}, {@code KB} and
 * {@code KiB} all mean 1024 bytes ("10GB" is 10 GiB, as documented in docs/config.md); units are
 * case-insensitive; {@code B} or no unit is bytes. Fractions, signs and results past {@code Long.MAX_VALUE}
 * are refused with a message meant for the user.
 */
public final class ByteSize {
    public static final long KIB = 1024L;
    public static final long MIB = KIB * 1024;
    public static final long GIB = MIB * 1024;
    public static final long TIB = GIB * 1024;
    public static final long PIB = TIB * 1024;

    private static final Pattern SIZE = Pattern.compile("\\s*(\\d+)\\s*([a-zA-Z]*)\\s*");

    private ByteSize() {}

    /** Bytes for {@code text}; IllegalArgumentException (a user-facing message) when it is not a size. */
    public static long parse(String text) {
        Matcher m = SIZE.matcher(text);
        if (!m.matches()) {
            throw new IllegalArgumentException("'" + text + "' is not a size (examples: 4096, \"4KiB\", \"512MiB\", \"64GiB\")");
        }
        long unit = switch (m.group(2).toLowerCase(Locale.ROOT)) {
            case "", "b" -> 1;
            case "k", "kb", "kib" -> KIB;
            case "m", "mb", "mib" -> MIB;
            case "g", "gb", "gib" -> GIB;
            case "t", "tb", "tib" -> TIB;
            case "p", "pb", "pib" -> PIB;
            default -> throw new IllegalArgumentException("unknown size unit '" + m.group(2)
                + "' (use B, KiB, MiB, GiB, TiB or PiB; K/KB, M/MB, ... mean the same powers of 1024)");
        };
        try {
            return Math.multiplyExact(Long.parseLong(m.group(1)), unit);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("'" + text + "' is too large");
        }
    }
}
