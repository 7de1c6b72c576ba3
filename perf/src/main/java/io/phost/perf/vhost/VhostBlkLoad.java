package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserFrontend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

/**
 * A virtio-blk load generator on one vhost-user queue, standing in for a guest driver: {@code qd} requests
 * of {@code bs} bytes at random aligned offsets kept in flight for a fixed time; the same code drives phost
 * and qemu-storage-daemon, so the ratio measures the back-ends. Like a guest's virtio driver it kicks only when
 * the back-end asks for kicks (EVENT_IDX avail_event, VRING_USED_F_NO_NOTIFY, a packed ring's device event).
 */
public final class VhostBlkLoad {
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;

    /** {@code PHOST_BENCH_KICK_ALWAYS=1}: kick after every request whatever the back-end asked (the driver before issue 14's tenth session). */
    private static final boolean KICK_ALWAYS = System.getenv("PHOST_BENCH_KICK_ALWAYS") != null;

    private VhostBlkLoad() {}

    private static void kick(VhostUserFrontend.Queue q) {
        if (KICK_ALWAYS) {
            q.kick();
        } else {
            q.kickIfNeeded();
        }
    }

    /** Runs for {@code seconds}; returns completed requests per second. Fails on any non-OK status. */
    public static double run(VhostUserFrontend f, VhostUserFrontend.Queue q, boolean write, int bs, int qd, long diskSize,
                      double seconds, long seed) {
        long[] hdr = new long[q.size];
        long[] data = new long[q.size];
        long[] status = new long[q.size];
        int[] slotOfHead = new int[q.size];
        SplittableRandom rnd = new SplittableRandom(seed);
        long blocks = diskSize / bs;
        long[] slotHdr = new long[qd];
        long[] slotData = new long[qd];
        long[] slotStatus = new long[qd];
        for (int s = 0; s < qd; s++) {
            slotHdr[s] = f.alloc(16, 16);
            slotData[s] = f.alloc(bs, 4096);
            slotStatus[s] = f.alloc(1, 1);
            f.at(slotData[s], bs).fill((byte) 0x6B);
        }
        for (int s = 0; s < qd; s++) {
            submit(f, q, s, write, bs, rnd.nextLong(blocks), slotHdr, slotData, slotStatus, slotOfHead);
        }
        kick(q);
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long done = 0;
        long start = System.nanoTime();
        while (true) {
            int[] used = q.awaitUsed(10_000);
            if (used == null) {
                throw new IllegalStateException("no completion in 10 s");
            }
            int s = slotOfHead[used[0]];
            byte st = f.at(slotStatus[s], 1).get(ValueLayout.JAVA_BYTE, 0);
            if (st != 0) {
                throw new IllegalStateException("virtio-blk status " + st);
            }
            done++;
            if (System.nanoTime() - end >= 0) {
                break;
            }
            submit(f, q, s, write, bs, rnd.nextLong(blocks), slotHdr, slotData, slotStatus, slotOfHead);
            kick(q); // as a guest's driver: no kick while the back-end polls with kicks off
        }
        double rate = done / ((System.nanoTime() - start) / 1e9);
        for (int left = qd - 1; left > 0; left--) { // drain
            if (q.awaitUsed(10_000) == null) {
                throw new IllegalStateException("in-flight request never completed");
            }
        }
        return rate;
    }

    private static void submit(VhostUserFrontend f, VhostUserFrontend.Queue q, int s, boolean write, int bs, long block,
                               long[] hdr, long[] data, long[] status, int[] slotOfHead) {
        MemorySegment h = f.at(hdr[s], 16);
        h.set(LE32, 0, write ? 1 : 0);
        h.set(LE32, 4, 0);
        h.set(LE64, 8, block * (bs / 512));
        f.at(status[s], 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
        int head = q.add(new long[] {hdr[s], data[s], status[s]}, new int[] {16, bs, 1}, new boolean[] {false, !write, true});
        if (head < 0) {
            throw new IllegalStateException("ring full");
        }
        slotOfHead[head] = s;
    }
}
