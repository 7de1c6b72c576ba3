package io.phost.vhdx.vhdx;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Random;

/**
 * Child process of {@link VhdxCrashTest}: opens an image read-write and writes stamped 4 KiB slots in a
 * loop, flushing every few writes and printing {@code ACK n} once a flush covering writes 0..n-1 returned.
 * Args: image, seed, round.
 */
public final class CrashWriterMain {
    static final int SLOT = 4096;

    private CrashWriterMain() {}

    public static void main(String[] args) throws Exception {
        Path img = Path.of(args[0]);
        long seed = Long.parseLong(args[1]);
        int round = Integer.parseInt(args[2]);
        WriteSequence seq = new WriteSequence(seed);
        try (VhdxDisk d = VhdxDisk.open(img, false); Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(SLOT, 4096);
            Random flushEvery = new Random(seed ^ 0x5DEECE66DL);
            System.out.println("READY");
            System.out.flush();
            int sinceFlush = 0;
            int limit = 1 + flushEvery.nextInt(8);
            for (int i = 0; ; i++) {
                int slot = seq.slot(i);
                WriteSequence.fill(buf, slot, WriteSequence.stamp(round, i));
                d.write((long) slot * SLOT, buf);
                if (++sinceFlush == limit) {
                    d.flush();
                    System.out.println("ACK " + (i + 1));
                    System.out.flush();
                    sinceFlush = 0;
                    limit = 1 + flushEvery.nextInt(8);
                }
            }
        }
    }

    /** The deterministic write sequence both processes derive from the seed. */
    static final class WriteSequence {
        static final int SLOTS = 1 << 19; // 2 GiB of 4 KiB slots over 1 MiB blocks
        private final Random r;
        private int[] slots = new int[1024];
        private int generated;

        WriteSequence(long seed) {
            this.r = new Random(seed);
        }

        int slot(int i) {
            while (generated <= i) {
                if (generated == slots.length) {
                    slots = java.util.Arrays.copyOf(slots, slots.length * 2);
                }
                // Mostly a small hot set (rewrites of allocated blocks), sometimes anywhere (allocations).
                slots[generated++] = r.nextInt(4) == 0 ? r.nextInt(SLOTS) : r.nextInt(2048);
            }
            return slots[i];
        }

        static long stamp(int round, int i) {
            return ((long) round << 32) | i;
        }

        /** Every 512-byte sector: slot (u32), stamp (u64), then bytes derived from both. */
        static void fill(MemorySegment buf, int slot, long stamp) {
            for (int s = 0; s < SLOT / 512; s++) {
                long base = s * 512L;
                buf.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED, base, slot);
                buf.set(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, base + 4, stamp);
                long x = stamp * 0x9E3779B97F4A7C15L + slot * 31L + s;
                for (long o = 12; o < 512; o++) {
                    x ^= x << 13;
                    x ^= x >>> 7;
                    x ^= x << 17;
                    buf.set(java.lang.foreign.ValueLayout.JAVA_BYTE, base + o, (byte) x);
                }
            }
        }
    }
}
