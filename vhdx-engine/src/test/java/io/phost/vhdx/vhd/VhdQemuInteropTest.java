package io.phost.vhdx.vhd;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * VHD interop with real qemu (Debian qemu-utils). Recipes:
 * <pre>
 *   qemu-img create -f vpc [-o subformat=fixed|-o force_size=on] a.vhd 24M
 *   qemu-io -f vpc -c 'write -P 0xab 1M 64k' -c 'write -P 0x5c 5M 3M' a.vhd
 *   qemu-img convert -f vpc -O raw a.vhd a.raw        # we must read a.vhd byte-identical to a.raw
 *   (ours) VhdDisk.create + writes; our raw export b.raw
 *   qemu-img compare -f vpc -F raw b.vhd b.raw        # exit 0: identical (qemu-img check has no vpc support)
 *   qemu-io -f vpc -c 'read -P 0x77 2M 8k' b.vhd       # qemu reads our pattern
 * </pre>
 */
class VhdQemuInteropTest {
    @TempDir
    Path dir;

    @BeforeAll
    static void tools() {
        Tools.assumeTool("qemu-img");
        Tools.assumeTool("qemu-io");
    }

    @ParameterizedTest
    @ValueSource(strings = {"dynamic", "fixed", "force_size"})
    void shouldReadQemuImagesByteIdenticalToQemuRawExport(String kind) throws Exception {
        Path vhd = dir.resolve("q.vhd");
        Path raw = dir.resolve("q.raw");
        String opts = switch (kind) {
            case "fixed" -> "subformat=fixed";
            case "force_size" -> "force_size=on";
            default -> "subformat=dynamic";
        };
        runOk("qemu-img", "create", "-q", "-f", "vpc", "-o", opts, vhd.toString(), "24M");
        runOk("qemu-io", "-f", "vpc", "-c", "write -P 0xab 1M 64k", "-c", "write -P 0x5c 5M 3M",
            "-c", "write -P 0x01 0 512", "-c", "write -P 0xee 20M 1M", vhd.toString());
        runOk("qemu-img", "convert", "-f", "vpc", "-O", "raw", vhd.toString(), raw.toString());
        byte[] expected = Files.readAllBytes(raw);
        try (VirtualDisk d = VirtualDisks.open(vhd, true)) {
            assertEquals("vhd", d.format());
            assertEquals(expected.length, d.size(), "virtual size as qemu sees it");
            assertArrayEquals(expected, Tools.readAll(d));
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {512L << 10, 2L << 20, 16L << 20})
    void shouldWriteDynamicImagesThatQemuReadsIdentically(long blockSize) throws Exception {
        Path vhd = dir.resolve("o.vhd");
        Path raw = dir.resolve("o.raw");
        long size = 40L << 20;
        try (VirtualDisk d = VirtualDisks.create(vhd,
            CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size).withBlockSize(blockSize))) {
            byte[] buf = new byte[1 << 20];
            for (long off : new long[] {0, 3L << 20, 17L << 20, size - (1 << 20)}) {
                Tools.pattern(MemorySegment.ofArray(buf), off, 3);
                d.write(off, MemorySegment.ofArray(buf));
            }
            byte[] s = new byte[8192];
            java.util.Arrays.fill(s, (byte) 0x77);
            d.write(2L << 20, MemorySegment.ofArray(s));
        }
        exportRaw(vhd, raw);
        runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
        String out = runOk("qemu-io", "-f", "vpc", "-r", "-c", "read -P 0x77 2M 8k", vhd.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
        assertTrue(runOk("qemu-img", "info", "-f", "vpc", vhd.toString()).contains("(" + size + " bytes)"));
    }

    @Test
    void shouldWriteFixedImagesThatQemuReadsIdentically() throws Exception {
        Path vhd = dir.resolve("f.vhd");
        Path raw = dir.resolve("f.raw");
        try (VirtualDisk d = VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.FIXED, 9L << 20))) {
            byte[] buf = new byte[1 << 20];
            Tools.pattern(MemorySegment.ofArray(buf), 5, 5);
            d.write(4L << 20, MemorySegment.ofArray(buf));
        }
        exportRaw(vhd, raw);
        runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
    }

    @Test
    void shouldLetQemuWriteIntoOurImageAndReadTheResult() throws Exception {
        Path vhd = dir.resolve("m.vhd");
        Path raw = dir.resolve("m.raw");
        try (VirtualDisk d = VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20))) {
            byte[] buf = new byte[4096];
            java.util.Arrays.fill(buf, (byte) 0x42);
            d.write(0, MemorySegment.ofArray(buf));
        }
        // qemu allocates blocks in our file (appending after our aligned blocks) and rewrites our footer.
        runOk("qemu-io", "-f", "vpc", "-c", "write -P 0x99 6M 1M", "-c", "write -P 0x98 4k 4k", vhd.toString());
        runOk("qemu-img", "convert", "-f", "vpc", "-O", "raw", vhd.toString(), raw.toString());
        try (VirtualDisk d = VirtualDisks.open(vhd, false)) {
            assertArrayEquals(Files.readAllBytes(raw), Tools.readAll(d));
            byte[] buf = new byte[4096];
            java.util.Arrays.fill(buf, (byte) 0x13);
            d.write(12L << 20, MemorySegment.ofArray(buf));
        }
        String out = runOk("qemu-io", "-f", "vpc", "-r", "-c", "read -P 0x13 12M 4k", "-c", "read -P 0x99 6M 1M",
            vhd.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
    }

    private static void exportRaw(Path image, Path raw) throws Exception {
        try (VirtualDisk d = VirtualDisks.open(image, true)) {
            Files.write(raw, Tools.readAll(d));
        }
    }
}
