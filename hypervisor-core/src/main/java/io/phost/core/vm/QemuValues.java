package io.phost.core.vm;

import java.nio.file.Path;

/**
 * Values placed inside QEMU options. QEMU splits {@code -opt key=value,key=value} at commas; a literal comma
 * is written twice. Paths must be absolute and free of control characters; names follow the partition name
 * rule. Every value QEMU sees goes through here, so no user string reaches QEMU's option parser unchecked.
 */
final class QemuValues {
    private QemuValues() {}

    /** A value for inside {@code key=value,...}: commas doubled. */
    static String escape(String value) {
        return value.replace(",", ",,");
    }

    static void requirePath(String what, Path p) {
        if (p == null) {
            throw new IllegalArgumentException(what + " path is required");
        }
        if (!p.isAbsolute()) {
            throw new IllegalArgumentException(what + " path must be absolute: " + p);
        }
        String s = p.toString();
        for (int i = 0; i < s.length(); i++) {
            if (s.charAt(i) < 0x20 || s.charAt(i) == 0x7f) {
                throw new IllegalArgumentException(what + " path has a control character at offset " + i);
            }
        }
    }

    static void requireId(String what, String id) {
        if (id == null || !id.matches("[A-Za-z][A-Za-z0-9_-]{0,63}")) {
            throw new IllegalArgumentException(what + " must match [A-Za-z][A-Za-z0-9_-]{0,63}: " + id);
        }
    }
}
