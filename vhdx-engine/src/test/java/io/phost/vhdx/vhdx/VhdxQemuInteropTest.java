package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import static org.junit.jupiter.api.Assertions.*;

import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Interop with real qemu-img / qemu-io (Debian qemu-utils 7.2). Recipes:
 * <pre>
 *  qemu-made images:  qemu-img create -f vhdx -o subformat=dynamic|fixed,block_size=1M|8M|32M img SIZE
 *                     qemu-io -f vhdx -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 512' ... img
 *                     qemu-img convert -f vhdx -O raw img ref.raw        -> our read of img == ref.raw
 *  our images:        VhdxDisk.create + random writes; qemu-img check -f vhdx img (exit 0);
 *                     our raw export; qemu-img compare -f vhdx -F raw img export.raw (exit 0)
 *  4 KiB sectors:     qemu refuses them, so only our own raw export is compared
 *  patterns:          we write 0x5a, qemu-io -c 'read -P 0x5a off len' verifies; qemu-io writes 0x6b, we read
 *  dirty qemu log:    qemu-img create -f vhdx -o subformat=dynamic,block_size=1M img 16M; save the BAT
 *                     sector at 2 MiB; qemu-io -f vhdx -c 'write -P 0xab 1M 1M' img; then put back the old
 *                     BAT sector and the log entry's LogGuid in both headers = the state of a crash after
 *                     qemu's log entry is durable but before it is applied (qemu-img check then refuses
 *                     the image read-only). We read it read-only (in-memory replay), replay it read-write,
 *                     and compare with qemu-img check -r all + qemu-img convert -O raw of a copy.
 *  killed qemu-io:    qemu-img create -f vhdx -o subformat=dynamic,block_size=1M img 1G;
 *                     qemu-io -f vhdx -c 'write -P N <N MiB> 4k' (x1000) img, SIGKILLed after 50-400 ms,
 *                     repeated until qemu-img check says the log needs replaying; then the same
 *                     comparison with qemu's own replay of a copy.
 * </pre>
 */
class VhdxQemuInteropTest {
    @TempDir
    Path dir;

    @BeforeAll
    static void qemu() {
        Qemu.assumeInstalled();
    }

    static byte[] readAll(VhdxDisk d) throws Exception {
        byte[] b = new byte[(int) d.size()];
        d.read(0, MemorySegment.ofArray(b));
        return b;
    }

    @ParameterizedTest(name = "{0} block_size={1}")
    @CsvSource({"dynamic,1M,64M", "dynamic,8M,64M", "dynamic,32M,96M", "fixed,8M,40M"})
    void shouldReadQemuCreatedImagesByteIdenticalToQemuRawExport(String subformat, String blockSize, String size) throws Exception {
        Path img = dir.resolve("q.vhdx");
        Path raw = dir.resolve("q.raw");
        Qemu.ok("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=" + subformat + ",block_size=" + blockSize, img.toString(), size);
        long sz = Long.parseLong(size.replace("M", "")) << 20;
        Qemu.ok("qemu-io", "-f", "vhdx",
            "-c", "write -P 0x11 0 64k",
            "-c", "write -P 0x22 1M 512",
            "-c", "write -P 0x33 7M 2M",
            "-c", "write -P 0x44 " + (sz - 4096) + " 4k",
            "-c", "write -z 7M 64k",
            "-c", "discard 8M 1M",
            img.toString());
        Qemu.ok("qemu-img", "convert", "-f", "vhdx", "-O", "raw", img.toString(), raw.toString());
        byte[] ref = Files.readAllBytes(raw);
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            assertEquals(sz, d.size());
            assertArrayEquals(ref, readAll(d));
        }
        // And read-write: our open, a write, close; qemu still reads it and sees both.
        try (VhdxDisk d = VhdxDisk.open(img, false)) {
            d.write(3 << 20, MemorySegment.ofArray(filled(0x55, 8192)));
        }
        Qemu.ok("qemu-img", "check", "-f", "vhdx", img.toString());
        Qemu.ok("qemu-io", "-f", "vhdx", "-c", "read -P 0x55 3M 8k", "-c", "read -P 0x33 " + ((7 << 20) + 65536) + " 64k", img.toString());
    }

    @Test
    void shouldReplayTheLogOfAKilledQemuIoLikeQemuDoes() throws Exception {
        Path img = dir.resolve("killed.vhdx");
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of("qemu-io", "-f", "vhdx"));
        for (int b = 0; b < 1000; b++) {
            cmd.add("-c");
            cmd.add("write -P " + (b % 250 + 1) + " " + ((long) b << 20) + " 4k");
        }
        cmd.add(img.toString());
        Random r = new Random(3);
        int dirty = 0;
        int attempt = 0;
        for (; attempt < 40 && dirty < 2; attempt++) {
            Files.deleteIfExists(img);
            Qemu.ok("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", img.toString(), "1G");
            Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectErrorStream(true).start();
            Thread.sleep(50 + r.nextInt(350));
            p.destroyForcibly();
            p.waitFor();
            Qemu.Result check = Qemu.run("qemu-img", "check", "-f", "vhdx", img.toString());
            if (check.exit() == 0 || !check.output().contains("replay")) {
                continue;
            }
            dirty++;
            Path copy = dir.resolve("killed-qemu.vhdx");
            Files.copy(img, copy, StandardCopyOption.REPLACE_EXISTING);
            Qemu.ok("qemu-img", "check", "-r", "all", "-f", "vhdx", copy.toString());
            Path raw = dir.resolve("killed-qemu.raw");
            Files.deleteIfExists(raw);
            Qemu.ok("qemu-img", "convert", "-f", "vhdx", "-O", "raw", copy.toString(), raw.toString());
            // Sample every written 4 KiB and its unwritten neighbour (reading 1 GiB twice per attempt is slow).
            byte[] theirs = new byte[8192];
            byte[] ours = new byte[8192];
            try (RandomAccessFile q = new RandomAccessFile(raw.toFile(), "r"); VhdxDisk d = VhdxDisk.open(img, true)) {
                assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
                for (long b = 0; b < 1000; b++) {
                    q.seek(b << 20);
                    q.readFully(theirs);
                    d.read(b << 20, MemorySegment.ofArray(ours));
                    final long blk = b;
                    assertArrayEquals(theirs, ours, () -> "in-memory replay differs from qemu's at block " + blk);
                }
            }
            try (VhdxDisk d = VhdxDisk.open(img, false)) {
                assertEquals(VhdxDisk.LogState.REPLAYED, d.logState());
            }
            Qemu.ok("qemu-img", "check", "-f", "vhdx", img.toString());
            Qemu.ok("qemu-img", "compare", "-f", "vhdx", "-F", "raw", img.toString(), raw.toString());
            // Both replays leave the same BAT (qemu's BAT region: 2 MiB, 1 MiB long).
            try (RandomAccessFile a = new RandomAccessFile(img.toFile(), "r");
                 RandomAccessFile b = new RandomAccessFile(copy.toFile(), "r")) {
                byte[] x = new byte[1 << 20];
                byte[] y = new byte[1 << 20];
                a.seek(2 << 20);
                a.readFully(x);
                b.seek(2 << 20);
                b.readFully(y);
                assertArrayEquals(y, x, "our replay and qemu's wrote different BATs");
            }
        }
        assertTrue(dirty > 0, "no kill left a dirty qemu log in 40 attempts");
        System.out.println("killed qemu-io: " + dirty + " dirty logs in " + attempt + " kills, replayed like qemu");
    }

    /**
     * Puts a qemu-written image back into the state of a crash between "log entry durable" and "BAT
     * applied": the header names the log entry's LogGuid again and the BAT sector holds its old bytes.
     * The log entry itself is qemu's, untouched.
     */
    static void redirty(Path img, long batSector, byte[] batBefore) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            byte[] log = new byte[1 << 20];
            f.seek(1 << 20);
            f.readFully(log);
            int at = -1;
            for (int p = 0; p < log.length; p += 4096) {
                if (Le.i32(log, p) == LogDescriptor.ENTRY_SIGNATURE) {
                    at = p;
                }
            }
            assertTrue(at >= 0, "qemu wrote a log entry");
            java.util.UUID logGuid = Le.guid(log, at + LogDescriptor.LOG_GUID_OFFSET);
            f.seek(batSector);
            f.write(batBefore);
            for (long h : new long[] {VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET, VhdxHeaderDescriptor.HEADER_2_FILE_OFFSET}) {
                byte[] hb = new byte[4096];
                f.seek(h);
                f.readFully(hb);
                Le.putGuid(hb, VhdxHeaderDescriptor.LOG_GUID_OFFSET, logGuid);
                Le.put32(hb, 4, io.phost.vhdx.Crc32c.compute(hb, 0, 4096, 4));
                f.seek(h);
                f.write(hb);
            }
        }
    }

    static byte[] filled(int v, int n) {
        byte[] b = new byte[n];
        Arrays.fill(b, (byte) v);
        return b;
    }

    @ParameterizedTest(name = "{0} block={1} logical={2}")
    @CsvSource({"DYNAMIC,1,512", "DYNAMIC,32,512", "FIXED,8,512", "DYNAMIC,1,4096", "FIXED,2,4096"})
    void shouldPassQemuCheckAndCompareForImagesWeCreate(DiskType type, int blockMiB, int logical) throws Exception {
        Path img = dir.resolve("ours.vhdx");
        Path raw = dir.resolve("ours.raw");
        long size = 48L << 20;
        byte[] expect = new byte[(int) size];
        Random r = new Random(blockMiB * 31L + logical);
        VhdxCreateOptions o = (type == DiskType.FIXED ? VhdxCreateOptions.fixed(size) : VhdxCreateOptions.dynamic(size))
            .withBlockSize(blockMiB << 20).withLogicalSectorSize(logical);
        try (VhdxDisk d = VhdxDisk.create(img, o)) {
            for (int i = 0; i < 60; i++) {
                int len = (1 + r.nextInt(64)) * logical;
                long off = (long) r.nextInt((int) ((size - len) / logical)) * logical;
                byte[] b = new byte[len];
                r.nextBytes(b);
                d.write(off, MemorySegment.ofArray(b));
                System.arraycopy(b, 0, expect, (int) off, len);
                if (i % 20 == 19) {
                    d.flush();
                }
            }
            d.unmap(16L << 20, 4L << 20);
            Arrays.fill(expect, 16 << 20, 20 << 20, (byte) 0);
        }
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            byte[] got = readAll(d);
            assertArrayEquals(expect, got);
            Files.write(raw, got);
        }
        if (logical == 512) {
            Qemu.ok("qemu-img", "check", "-f", "vhdx", img.toString());
            Qemu.ok("qemu-img", "compare", "-f", "vhdx", "-F", "raw", img.toString(), raw.toString());
        } else {
            Qemu.Result res = Qemu.run("qemu-img", "check", "-f", "vhdx", img.toString());
            assertNotEquals(0, res.exit(), "qemu 7.2 refuses 4K-sector VHDX; if it stops refusing, compare with it too");
        }
    }

    @Test
    void shouldExchangePatternsWithQemuIo() throws Exception {
        Path img = dir.resolve("p.vhdx");
        try (VhdxDisk d = VhdxDisk.create(img, VhdxCreateOptions.dynamic(64L << 20).withBlockSize(8 << 20))) {
            d.write(0, MemorySegment.ofArray(filled(0x5a, 1 << 20)));
            d.write(20L << 20, MemorySegment.ofArray(filled(0x5b, 4096)));
        }
        Qemu.ok("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 0 1M", "-c", "read -P 0x5b 20M 4k",
            "-c", "read -P 0 1M 1M", img.toString());
        Qemu.ok("qemu-io", "-f", "vhdx", "-c", "write -P 0x6b 40M 12k", "-c", "write -P 0x6c 512 512", img.toString());
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            byte[] all = readAll(d);
            assertArrayEquals(filled(0x6b, 12288), Arrays.copyOfRange(all, 40 << 20, (40 << 20) + 12288));
            assertArrayEquals(filled(0x6c, 512), Arrays.copyOfRange(all, 512, 1024));
            assertArrayEquals(filled(0x5a, 512), Arrays.copyOfRange(all, 0, 512));
            assertArrayEquals(filled(0x5b, 4096), Arrays.copyOfRange(all, 20 << 20, (20 << 20) + 4096));
        }
    }

    @Test
    void shouldReplayTheDirtyLogQemuLeavesLikeQemuDoes() throws Exception {
        Path img = dir.resolve("dirty.vhdx");
        Qemu.ok("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", img.toString(), "16M");
        long batSector = 2L << 20; // qemu puts the BAT region at 2 MiB
        byte[] batBefore = new byte[4096];
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "r")) {
            f.seek(batSector);
            f.readFully(batBefore);
        }
        Qemu.ok("qemu-io", "-f", "vhdx", "-c", "write -P 0xab 1M 1M", img.toString());
        redirty(img, batSector, batBefore);
        Qemu.Result dirty = Qemu.run("qemu-img", "check", "-f", "vhdx", img.toString());
        assertNotEquals(0, dirty.exit(), "qemu must see a dirty log it refuses read-only: " + dirty.output());
        assertTrue(dirty.output().contains("log"), dirty.output());

        byte[] before = Files.readAllBytes(img);
        byte[] expect = new byte[16 << 20];
        Arrays.fill(expect, 1 << 20, 2 << 20, (byte) 0xab);
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
            assertArrayEquals(expect, readAll(d));
        }
        assertArrayEquals(before, Files.readAllBytes(img), "a read-only open must not touch the file");

        Path qemuCopy = dir.resolve("qemu-replayed.vhdx");
        Files.copy(img, qemuCopy, StandardCopyOption.REPLACE_EXISTING);
        Qemu.ok("qemu-img", "check", "-r", "all", "-f", "vhdx", qemuCopy.toString());
        Path qemuRaw = dir.resolve("qemu.raw");
        Qemu.ok("qemu-img", "convert", "-f", "vhdx", "-O", "raw", qemuCopy.toString(), qemuRaw.toString());

        try (VhdxDisk d = VhdxDisk.open(img, false)) {
            assertEquals(VhdxDisk.LogState.REPLAYED, d.logState());
            assertArrayEquals(Files.readAllBytes(qemuRaw), readAll(d));
        }
        Qemu.ok("qemu-img", "check", "-f", "vhdx", img.toString());
        Qemu.ok("qemu-img", "compare", "-f", "vhdx", "-F", "raw", img.toString(), qemuRaw.toString());
        // Both replays wrote the same BAT.
        try (RandomAccessFile a = new RandomAccessFile(img.toFile(), "r");
             RandomAccessFile b = new RandomAccessFile(qemuCopy.toFile(), "r")) {
            byte[] x = new byte[4096];
            byte[] y = new byte[4096];
            a.seek(2 << 20);
            a.readFully(x);
            b.seek(2 << 20);
            b.readFully(y);
            assertArrayEquals(y, x);
        }
    }
}
