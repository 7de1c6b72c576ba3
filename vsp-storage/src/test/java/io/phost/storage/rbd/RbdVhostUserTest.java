package io.phost.storage.rbd;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.storage.vhost.VhostUserBlkExport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * An RBD disk behind vhost-user-blk, where the queue worker sleeps through the librbd engine with the kick fd
 * (the DeviceWait hand-off): requests kicked one by one while earlier ones are in flight wake the worker, every
 * one completes with its data, and {@code rbd export} holds what the front-end wrote.
 */
@Timeout(180)
class RbdVhostUserTest {
    private static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final int T_IN = 0;
    private static final int T_OUT = 1;
    private static final int QD = 8;
    private static final int UNIT = 16 << 10;
    private static final int ROUNDS = 8;
    private static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    private static byte value(int unit, int i) {
        return (byte) (unit * 37 + i / 512 + 1);
    }

    @Test
    void shouldCompleteRequestsKickedWhileOthersAreInFlight() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        try (RbdDisk disk = RbdDisk.open(ceph.options("vhost", SIZE, false, false));
             VhostUserBlkExport e = VhostUserBlkExport.start("rbd", disk, dir.resolve("rbd.sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 16 << 20)) {
            f.negotiate(~0L);
            VhostUserFrontend.Queue q = f.startQueue(0, 64);
            long[] hdr = new long[QD];
            long[] data = new long[QD];
            long[] status = new long[QD];
            for (int s = 0; s < QD; s++) {
                hdr[s] = f.alloc(16, 16);
                data[s] = f.alloc(UNIT, 4096);
                status[s] = f.alloc(1, 1);
            }
            for (int type : new int[] {T_OUT, T_IN}) {
                for (int round = 0; round < ROUNDS; round++) {
                    int[] slotOfHead = new int[q.size];
                    for (int s = 0; s < QD; s++) {
                        int unit = round * QD + s;
                        MemorySegment buf = f.at(data[s], UNIT);
                        for (int i = 0; i < UNIT; i++) {
                            buf.set(ValueLayout.JAVA_BYTE, i, type == T_OUT ? value(unit, i) : 0);
                        }
                        MemorySegment h = f.at(hdr[s], 16);
                        h.set(LE32, 0, type);
                        h.set(LE32, 4, 0);
                        h.set(LE64, 8, (long) unit * UNIT / 512);
                        f.at(status[s], 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                        int head = q.add(new long[] {hdr[s], data[s], status[s]}, new int[] {16, UNIT, 1},
                            new boolean[] {false, type == T_IN, true});
                        slotOfHead[head] = s;
                        q.kick(); // one kick per request: the later ones arrive while the first are at the OSD
                    }
                    for (int k = 0; k < QD; k++) {
                        int[] used = q.awaitUsed(30_000);
                        assertNotNull(used, "request " + k + " of round " + round + " completed");
                        int s = slotOfHead[used[0]];
                        assertEquals(0, f.at(status[s], 1).get(ValueLayout.JAVA_BYTE, 0), "virtio-blk status of slot " + s);
                    }
                    if (type == T_IN) {
                        for (int s = 0; s < QD; s++) {
                            int unit = round * QD + s;
                            MemorySegment buf = f.at(data[s], UNIT);
                            for (int i = 0; i < UNIT; i += 512) {
                                assertEquals(value(unit, i), buf.get(ValueLayout.JAVA_BYTE, i), "unit " + unit + " byte " + i);
                            }
                        }
                    }
                }
            }
        }
        Path out = dir.resolve("vhost.raw");
        ceph.run("rbd", "export", "rbd/vhost", out.toString());
        byte[] img = Files.readAllBytes(out);
        for (int unit = 0; unit < QD * ROUNDS; unit++) {
            byte[] want = new byte[UNIT];
            for (int i = 0; i < UNIT; i++) {
                want[i] = value(unit, i);
            }
            assertArrayEquals(want, Arrays.copyOfRange(img, unit * UNIT, (unit + 1) * UNIT), "unit " + unit + " in rbd export");
        }
    }
}
