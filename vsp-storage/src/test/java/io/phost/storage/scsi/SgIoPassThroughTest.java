package io.phost.storage.scsi;

import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.SgIo;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.Field;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * SG_IO pass-through without a SCSI device: this kernel has no SCSI subsystem (no /dev/sg*, no scsi_debug),
 * so the tests check what can be checked here: the sg_io_hdr the encoder builds (read back from its header
 * buffer after an ioctl on a regular file fails with ENOTTY), the decoder's offsets, those offsets against
 * the C header (scsi/sg.h compiled with gcc, when present), and the fallback: a loop device rejects SG_IO,
 * so its LUN translates every command. Recipe for the last: {@code truncate -s 16M f; losetup -f --show f}.
 */
class SgIoPassThroughTest {
    // struct sg_io_hdr on LP64 (x86-64, arm64), from scsi/sg.h; checked against gcc below.
    private static final Map<String, Integer> OFFSETS = Map.ofEntries(
        Map.entry("interface_id", 0), Map.entry("dxfer_direction", 4), Map.entry("cmd_len", 8),
        Map.entry("mx_sb_len", 9), Map.entry("iovec_count", 10), Map.entry("dxfer_len", 12),
        Map.entry("dxferp", 16), Map.entry("cmdp", 24), Map.entry("sbp", 32), Map.entry("timeout", 40),
        Map.entry("flags", 44), Map.entry("pack_id", 48), Map.entry("usr_ptr", 56), Map.entry("status", 64),
        Map.entry("masked_status", 65), Map.entry("msg_status", 66), Map.entry("sb_len_wr", 67),
        Map.entry("host_status", 68), Map.entry("driver_status", 70), Map.entry("resid", 72),
        Map.entry("duration", 76), Map.entry("info", 80), Map.entry("sizeof", 88));
    private static final int ENOTTY = 25;

    @TempDir
    Path dir;

    @Test
    void shouldEncodeEveryFieldOfTheSgIoHeaderAtTheKernelsOffsets() throws Exception {
        Path file = dir.resolve("plain.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (RawDisk f = RawDisk.openFile(file, false, false); Arena a = Arena.ofConfined()) {
            SgIo sg = new SgIo();
            MemorySegment cdb = a.allocate(16);
            cdb.set(ValueLayout.JAVA_BYTE, 3, (byte) 0x12); // INQUIRY at offset 3 of the source
            cdb.set(ValueLayout.JAVA_BYTE, 7, (byte) 96);
            MemorySegment buf = a.allocate(96, 8);
            int r = sg.execute(f.fd(), cdb, 3, 6, SgIo.DXFER_FROM_DEV, buf.address(), 96, 0, 7_000);
            assertEquals(-ENOTTY, r, "a regular file has no SG_IO: -ENOTTY, not an exception");
            MemorySegment h = header(sg);
            assertEquals(OFFSETS.get("sizeof"), (int) h.byteSize());
            assertEquals('S', h.get(ValueLayout.JAVA_INT, OFFSETS.get("interface_id")));
            assertEquals(SgIo.DXFER_FROM_DEV, h.get(ValueLayout.JAVA_INT, OFFSETS.get("dxfer_direction")));
            assertEquals(6, h.get(ValueLayout.JAVA_BYTE, OFFSETS.get("cmd_len")));
            assertEquals(sg.sense().byteSize(), h.get(ValueLayout.JAVA_BYTE, OFFSETS.get("mx_sb_len")) & 0xFF);
            assertEquals(0, h.get(ValueLayout.JAVA_SHORT, OFFSETS.get("iovec_count")));
            assertEquals(96, h.get(ValueLayout.JAVA_INT, OFFSETS.get("dxfer_len")));
            assertEquals(buf.address(), h.get(ValueLayout.JAVA_LONG, OFFSETS.get("dxferp")));
            assertEquals(sg.sense().address(), h.get(ValueLayout.JAVA_LONG, OFFSETS.get("sbp")));
            assertEquals(7_000, h.get(ValueLayout.JAVA_INT, OFFSETS.get("timeout")));
            assertEquals(0, h.get(ValueLayout.JAVA_INT, OFFSETS.get("flags")), "default (indirect) I/O");
            // cmdp points at a private copy of the CDB, zero-padded to 16 bytes.
            MemorySegment cmd = MemorySegment.ofAddress(h.get(ValueLayout.JAVA_LONG, OFFSETS.get("cmdp"))).reinterpret(16);
            assertEquals(0x12, cmd.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(96, cmd.get(ValueLayout.JAVA_BYTE, 4));
            assertEquals(0, cmd.get(ValueLayout.JAVA_BYTE, 6));

            // A zero-length command goes as DXFER_NONE whatever the caller says; an iovec count is passed on.
            sg.execute(f.fd(), cdb, 3, 6, SgIo.DXFER_FROM_DEV, 0, 0, 3, 1);
            assertEquals(SgIo.DXFER_NONE, h.get(ValueLayout.JAVA_INT, OFFSETS.get("dxfer_direction")));
            assertEquals(3, h.get(ValueLayout.JAVA_SHORT, OFFSETS.get("iovec_count")));
            assertEquals(0, h.get(ValueLayout.JAVA_INT, OFFSETS.get("dxfer_len")));
            assertFalse(SgIo.supported(f.fd()), "the probe says no for a regular file");
        }
    }

    @Test
    void shouldDecodeStatusSenseLengthHostDriverStatusAndResidFromTheKernelsOffsets() throws Exception {
        SgIo sg = new SgIo();
        MemorySegment h = header(sg);
        h.set(ValueLayout.JAVA_BYTE, OFFSETS.get("sb_len_wr"), (byte) 18);
        h.set(ValueLayout.JAVA_SHORT, OFFSETS.get("host_status"), (short) 0x0003);   // DID_TIME_OUT
        h.set(ValueLayout.JAVA_SHORT, OFFSETS.get("driver_status"), (short) 0x0008); // DRIVER_SENSE
        h.set(ValueLayout.JAVA_INT, OFFSETS.get("resid"), 60);
        assertEquals(18, sg.senseLength());
        assertEquals(3, sg.hostStatus());
        assertEquals(8, sg.driverStatus());
        assertEquals(60, sg.resid());
        h.set(ValueLayout.JAVA_BYTE, OFFSETS.get("sb_len_wr"), (byte) 0xFC);
        assertEquals(252, sg.senseLength(), "sb_len_wr is unsigned");
    }

    @Test
    void shouldAgreeWithTheOffsetsOfTheCHeader() throws Exception {
        assumeTrue(Proc.exists("gcc") && Files.exists(Path.of("/usr/include/scsi/sg.h")),
            "gcc and the libc scsi/sg.h header are needed to compile the layout probe");
        StringBuilder c = new StringBuilder("#include <stdio.h>\n#include <stddef.h>\n#include <scsi/sg.h>\nint main(void){\n");
        for (String f : OFFSETS.keySet()) {
            c.append(f.equals("sizeof")
                ? "printf(\"sizeof %zu\\n\", sizeof(sg_io_hdr_t));\n"
                : "printf(\"" + f + " %zu\\n\", offsetof(sg_io_hdr_t, " + f + "));\n");
        }
        c.append("return 0;}\n");
        Path src = Files.writeString(dir.resolve("sgprobe.c"), c);
        Path exe = dir.resolve("sgprobe");
        Proc.ok(60, "gcc", "-o", exe.toString(), src.toString());
        Map<String, Integer> actual = new HashMap<>();
        for (String line : Proc.ok(30, exe.toString()).split("\n")) {
            String[] kv = line.trim().split(" ");
            actual.put(kv[0], Integer.parseInt(kv[1]));
        }
        assertEquals(OFFSETS, actual);
    }

    @Test
    void shouldTranslateEveryCommandOnALoopDeviceBecauseItRejectsSgIo() throws Exception {
        assumeTrue(Proc.exists("losetup"), "losetup (util-linux) not installed");
        assumeTrue("root".equals(System.getProperty("user.name")), "loop devices need root");
        Path backing = dir.resolve("backing.img");
        RawDisk.createSparse(backing, 16L << 20);
        Proc.Result attached = Proc.run(30, "losetup", "-f", "--show", backing.toString());
        assumeTrue(attached.exit() == 0, "losetup failed: " + attached.out());
        String loop = attached.out().trim();
        ScsiTarget target = new ScsiTarget();
        int bs;
        try (RawDisk dev = RawDisk.openDevice(Path.of(loop), false)) {
            assertFalse(SgIo.supported(dev.fd()), "loop devices answer SG_IO with ENOTTY/EINVAL");
            ScsiLun lun = new ScsiLun("loop", dev);
            assertFalse(lun.sgIoPassThrough());
            target.add(0, lun);
            bs = lun.blockSize();
            try (ScsiHarness h = new ScsiHarness(target)) {
                MemorySegment inq = h.buffer(96);
                ScsiRequest r = h.run(0, ScsiHarness.cdb(0x12, 0, 0, 0, 96, 0), ScsiRequest.DIR_IN, inq);
                assertEquals(Scsi.STATUS_GOOD, r.status());
                assertEquals("PHOST   ", new String(inq.asSlice(8, 8).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.US_ASCII),
                    "our INQUIRY, not the device's");
                MemorySegment cap = h.buffer(8);
                h.run(0, ScsiHarness.cdb(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), ScsiRequest.DIR_IN, cap);
                long lastLba = cap.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0) & 0xFFFFFFFFL;
                assertEquals(bs, cap.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 4));
                assertEquals(16L << 20, (lastLba + 1) * bs);
                MemorySegment w = h.buffer(4096);
                w.fill((byte) 0x6B);
                assertEquals(Scsi.STATUS_GOOD, h.run(0, ScsiHarness.rw10(0x2A, 8, 4096 / bs), ScsiRequest.DIR_OUT, w).status());
                MemorySegment back = h.buffer(4096);
                assertEquals(Scsi.STATUS_GOOD, h.run(0, ScsiHarness.rw10(0x28, 8, 4096 / bs), ScsiRequest.DIR_IN, back).status());
                assertEquals(-1, back.mismatch(w));
            }
            target.remove(0);
        } finally {
            Proc.run(30, "losetup", "-d", loop);
        }
        byte[] bytes = Files.readAllBytes(backing);
        assertEquals(0x6B, bytes[8 * bs], "the write reached the backing file");
    }

    /** The encoder's header buffer (private: the test reads back exactly what the ioctl would get). */
    private static MemorySegment header(SgIo sg) throws ReflectiveOperationException {
        Field f = SgIo.class.getDeclaredField("hdr");
        f.setAccessible(true);
        return (MemorySegment) f.get(sg);
    }
}
