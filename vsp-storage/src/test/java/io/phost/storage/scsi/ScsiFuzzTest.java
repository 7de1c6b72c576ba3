package io.phost.storage.scsi;

import io.phost.storage.backend.MemoryDisk;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Random CDBs (biased towards real opcodes) never throw, hang or corrupt state: GOOD or CHECK CONDITION with sane sense. */
class ScsiFuzzTest {
    private static final int[] OPCODES = {0x00, 0x03, 0x08, 0x0A, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x42, 0x5A,
        0x88, 0x8A, 0x91, 0x93, 0x9E, 0xA0, 0xA8, 0xAA};

    @Test
    void shouldAnswerEveryRandomCdbWithGoodOrWellFormedCheckCondition() {
        SplittableRandom rnd = new SplittableRandom(0x5C51);
        MemoryDisk disk = MemoryDisk.ram(1 << 20, 512, false);
        ScsiTarget target = new ScsiTarget();
        target.add(0, new ScsiLun("fuzz", disk));
        try (ScsiHarness h = new ScsiHarness(target)) {
            MemorySegment big = h.buffer(64 * 1024);
            for (int i = 0; i < 20_000; i++) {
                byte[] cdb = new byte[1 + rnd.nextInt(16)];
                for (int j = 0; j < cdb.length; j++) {
                    cdb[j] = (byte) rnd.nextInt(256);
                }
                if (rnd.nextInt(4) != 0) {
                    cdb[0] = (byte) OPCODES[rnd.nextInt(OPCODES.length)];
                }
                if (rnd.nextBoolean() && cdb.length >= 10) { // small LBAs/lengths so some commands succeed
                    cdb[2] = cdb[3] = cdb[4] = 0;
                    if (cdb.length >= 16) {
                        for (int j = 2; j < 8; j++) {
                            cdb[j] = 0;
                        }
                        cdb[10] = cdb[11] = cdb[12] = 0;
                    } else {
                        cdb[7] = 0;
                    }
                }
                int len = switch (rnd.nextInt(4)) {
                    case 0 -> 0;
                    case 1 -> 512 * rnd.nextInt(1, 128);
                    case 2 -> rnd.nextInt(1, 1024);
                    default -> 64 * 1024;
                };
                int dir = rnd.nextInt(4);
                ScsiRequest r = h.run(rnd.nextInt(3) == 0 ? rnd.nextInt(70) % 64 : 0, cdb, dir,
                    len == 0 ? null : big.asSlice(0, len));
                assertTrue(r.status() == Scsi.STATUS_GOOD || r.status() == Scsi.STATUS_CHECK_CONDITION);
                assertTrue(r.transferred() >= 0 && r.transferred() <= len, "transferred within buffer");
                if (r.status() == Scsi.STATUS_CHECK_CONDITION) {
                    assertEquals(18, r.senseLength());
                    int code = r.sense().get(ValueLayout.JAVA_BYTE, 0) & 0x7F;
                    assertEquals(0x70, code);
                    int key = r.senseKey();
                    assertTrue(key == Scsi.KEY_ILLEGAL_REQUEST || key == Scsi.KEY_DATA_PROTECT
                        || key == Scsi.KEY_MEDIUM_ERROR, "sense key " + key);
                }
            }
            assertEquals(0, h.queue.outstanding());
        } finally {
            disk.close();
        }
    }
}
