package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserFrontend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

/**
 * The virtio-scsi twin of {@link VhostBlkLoad}: {@code qd} READ(16) or WRITE(16) commands of {@code bs} bytes to
 * target 0 LUN 0 at random aligned offsets, kept in flight for a fixed time on one request queue, laid out as Linux's
 * virtio_scsi lays them out (request header with the CDB, then data-out, then the response; or request, response,
 * data-in), kicking only when the back-end asks.
 */
final class VhostScsiLoad {
    /** virtio_scsi_cmd_req: lun[8], id 8, task_attr, prio, crn, cdb[32]. */
    private static final int REQ_LENGTH = 51;
    private static final int REQ_CDB_OFFSET = 19;
    /** virtio_scsi_cmd_resp: sense_len 4, resid 4, status_qualifier 2, status, response, sense[96]. */
    private static final int RESP_LENGTH = 108;
    private static final int RESP_STATUS_OFFSET = 10;
    private static final int RESP_RESPONSE_OFFSET = 11;
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private VhostScsiLoad() {}

    /**
     * Sends single READ(16)s until one answers GOOD (a first command may meet a unit attention, as a guest's SCSI
     * midlayer's first commands do); fails after 8.
     */
    static void settle(VhostUserFrontend f, VhostUserFrontend.Queue q, int lba) {
        for (int i = 0; i < 8; i++) {
            try {
                run(f, q, false, 4096, lba, 1, 1L << 20, 0, i);
                return;
            } catch (IllegalStateException e) {
                if (!e.getMessage().startsWith("virtio-scsi")) {
                    throw e;
                }
            }
        }
        throw new IllegalStateException("virtio-scsi: no GOOD status in 8 commands");
    }

    /** Runs for {@code seconds}; returns completed commands per second. Fails on any response other than OK / GOOD. */
    static double run(VhostUserFrontend f, VhostUserFrontend.Queue q, boolean write, int bs, int qd, long diskSize,
                      double seconds, long seed) {
        return run(f, q, write, bs, 512, qd, diskSize, seconds, seed);
    }

    /** As above on a LUN of {@code lba}-byte logical blocks. */
    static double run(VhostUserFrontend f, VhostUserFrontend.Queue q, boolean write, int bs, int lba, int qd, long diskSize,
                      double seconds, long seed) {
        int[] slotOfHead = new int[q.size];
        SplittableRandom rnd = new SplittableRandom(seed);
        long blocks = diskSize / bs;
        long[] req = new long[qd];
        long[] data = new long[qd];
        long[] resp = new long[qd];
        for (int s = 0; s < qd; s++) {
            req[s] = f.alloc(REQ_LENGTH, 8);
            data[s] = f.alloc(bs, 4096);
            resp[s] = f.alloc(RESP_LENGTH, 8);
            f.at(data[s], bs).fill((byte) 0x6B);
        }
        for (int s = 0; s < qd; s++) {
            submit(f, q, s, write, bs, lba, rnd.nextLong(blocks), req, data, resp, slotOfHead);
        }
        q.kickIfNeeded();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long done = 0;
        long start = System.nanoTime();
        int inFlight = qd;
        while (inFlight > 0) {
            int[] used = q.awaitUsed(10_000);
            if (used == null) {
                throw new IllegalStateException("no completion in 10 s");
            }
            inFlight--;
            int s = slotOfHead[used[0]];
            MemorySegment r = f.at(resp[s], RESP_LENGTH);
            byte response = r.get(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET);
            byte status = r.get(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET);
            if (response != 0 || status != 0) {
                drain(q, inFlight);
                throw new IllegalStateException("virtio-scsi response " + response + " status " + status);
            }
            done++;
            if (System.nanoTime() - end < 0) {
                submit(f, q, s, write, bs, lba, rnd.nextLong(blocks), req, data, resp, slotOfHead);
                inFlight++;
                q.kickIfNeeded();
            }
        }
        return done / ((System.nanoTime() - start) / 1e9);
    }

    private static void drain(VhostUserFrontend.Queue q, int inFlight) {
        for (int left = inFlight; left > 0; left--) {
            if (q.awaitUsed(10_000) == null) {
                throw new IllegalStateException("in-flight command never completed");
            }
        }
    }

    private static void submit(VhostUserFrontend f, VhostUserFrontend.Queue q, int s, boolean write, int bs, int lba, long block,
                               long[] req, long[] data, long[] resp, int[] slotOfHead) {
        MemorySegment r = f.at(req[s], REQ_LENGTH);
        r.fill((byte) 0);
        r.set(ValueLayout.JAVA_BYTE, 0, (byte) 1); // lun[0] = 1, lun[1] = target 0, lun[2..3] = LUN 0 (flat space)
        r.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x40);
        r.set(ValueLayout.JAVA_LONG_UNALIGNED, 8, s);
        r.set(ValueLayout.JAVA_BYTE, REQ_CDB_OFFSET, (byte) (write ? 0x8A : 0x88));
        r.set(BE64, REQ_CDB_OFFSET + 2, block * (bs / lba));
        r.set(BE32, REQ_CDB_OFFSET + 10, bs / lba);
        f.at(resp[s], RESP_LENGTH).set(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET, (byte) 0x7F);
        int head = write
            ? q.add(new long[] {req[s], data[s], resp[s]}, new int[] {REQ_LENGTH, bs, RESP_LENGTH}, new boolean[] {false, false, true})
            : q.add(new long[] {req[s], resp[s], data[s]}, new int[] {REQ_LENGTH, RESP_LENGTH, bs}, new boolean[] {false, true, true});
        if (head < 0) {
            throw new IllegalStateException("ring full");
        }
        slotOfHead[head] = s;
    }
}
