package io.phost.vhdx.vhdx;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.UUID;

/** Little-endian field access on byte arrays (every VHDX field is little-endian), and MS GUID encoding. */
final class Le {
    private static final VarHandle U16 = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U32 = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U64 = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U64_BE = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);

    static final UUID ZERO_GUID = new UUID(0, 0);

    private Le() {}

    static int u16(byte[] b, int off) {
        return Short.toUnsignedInt((short) U16.get(b, off));
    }

    static int i32(byte[] b, int off) {
        return (int) U32.get(b, off);
    }

    static long u32(byte[] b, int off) {
        return Integer.toUnsignedLong((int) U32.get(b, off));
    }

    static long i64(byte[] b, int off) {
        return (long) U64.get(b, off);
    }

    static void put16(byte[] b, int off, int v) {
        U16.set(b, off, (short) v);
    }

    static void put32(byte[] b, int off, int v) {
        U32.set(b, off, v);
    }

    static void put64(byte[] b, int off, long v) {
        U64.set(b, off, v);
    }

    /**
     * Reads a Microsoft GUID: Data1 (u32 LE), Data2 (u16 LE), Data3 (u16 LE), Data4 (8 bytes as is);
     * returned as the {@link UUID} whose text form is the usual registry form.
     */
    static UUID guid(byte[] b, int off) {
        long d1 = u32(b, off);
        long d2 = u16(b, off + 4);
        long d3 = u16(b, off + 6);
        long msb = (d1 << 32) | (d2 << 16) | d3;
        long lsb = (long) U64_BE.get(b, off + 8);
        return new UUID(msb, lsb);
    }

    static void putGuid(byte[] b, int off, UUID g) {
        long msb = g.getMostSignificantBits();
        put32(b, off, (int) (msb >>> 32));
        put16(b, off + 4, (int) (msb >>> 16));
        put16(b, off + 6, (int) msb);
        U64_BE.set(b, off + 8, g.getLeastSignificantBits());
    }

    /** Reads an ASCII signature of 4 or 8 bytes as a little-endian number, the way the spec defines them. */
    static long sig8(String s) {
        long v = 0;
        for (int i = s.length() - 1; i >= 0; i--) {
            v = (v << 8) | (s.charAt(i) & 0xff);
        }
        return v;
    }

    static int sig4(String s) {
        return (int) sig8(s);
    }

    static boolean isZero(UUID g) {
        return g.getMostSignificantBits() == 0 && g.getLeastSignificantBits() == 0;
    }

    static String braced(UUID g) {
        return "{" + g.toString().toUpperCase(java.util.Locale.ROOT) + "}";
    }

    /** Parses "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" (braces optional); null when malformed. */
    static UUID parseBraced(String s) {
        String t = s.trim();
        if (t.startsWith("{") && t.endsWith("}")) {
            t = t.substring(1, t.length() - 1);
        }
        if (t.length() != 36) {
            return null;
        }
        try {
            return UUID.fromString(t);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

}
