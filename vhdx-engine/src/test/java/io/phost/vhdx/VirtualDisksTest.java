package io.phost.vhdx;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class VirtualDisksTest {
    @TempDir
    Path dir;

    @Test
    void shouldRecogniseFormatsFromContentNotExtension() throws Exception {
        Path vhdx = dir.resolve("looks-raw.img");
        byte[] b = new byte[1 << 16];
        System.arraycopy("vhdxfile".getBytes(StandardCharsets.US_ASCII), 0, b, 0, 8);
        Files.write(vhdx, b);
        assertEquals(DiskFormat.VHDX, VirtualDisks.detect(vhdx));

        Path fixedVhd = dir.resolve("disk.vhdx");
        try (VirtualDisk d = VirtualDisks.create(fixedVhd, CreateOptions.of(DiskFormat.VHD, DiskType.FIXED, 1 << 20))) {
            assertEquals("vhd", d.format());
        }
        assertEquals(DiskFormat.VHD, VirtualDisks.detect(fixedVhd));

        Path dynVhd = dir.resolve("disk.raw");
        VirtualDisks.create(dynVhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4 << 20)).close();
        assertEquals(DiskFormat.VHD, VirtualDisks.detect(dynVhd));
        // The copy at offset 0 alone is enough to recognise a dynamic VHD whose tail was damaged.
        byte[] all = Files.readAllBytes(dynVhd);
        all[all.length - 512] = 'X';
        Files.write(dynVhd, all);
        assertEquals(DiskFormat.VHD, VirtualDisks.detect(dynVhd));

        Path raw = dir.resolve("disk.vhd");
        Files.write(raw, new byte[4096]);
        assertEquals(DiskFormat.RAW, VirtualDisks.detect(raw));
        Path tiny = dir.resolve("tiny");
        Files.write(tiny, new byte[3]);
        assertEquals(DiskFormat.RAW, VirtualDisks.detect(tiny));
    }

    @Test
    void shouldOpenEachFormatThroughTheFacade() throws Exception {
        Path raw = dir.resolve("r");
        VirtualDisks.create(raw, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, 1 << 20)).close();
        try (VirtualDisk d = VirtualDisks.open(raw, false)) {
            assertEquals("raw", d.format());
        }
        Path vhdx = dir.resolve("x");
        VirtualDisks.create(vhdx, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 8 << 20)).close();
        assertEquals(DiskFormat.VHDX, VirtualDisks.detect(vhdx));
        try (VirtualDisk d = VirtualDisks.open(vhdx, false)) {
            assertEquals("vhdx", d.format());
            assertEquals(8 << 20, d.size());
        }
        Path child = dir.resolve("x-child");
        VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHDX, vhdx)).close();
        try (VirtualDisk d = VirtualDisks.open(child, true)) {
            assertEquals("vhdx", d.format());
            assertEquals(8 << 20, d.size());
        }
        Path vhd = dir.resolve("v");
        VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 3 << 20)).close();
        try (VirtualDisk d = VirtualDisks.open(vhd, true)) {
            assertEquals("vhd", d.format());
            assertEquals(3 << 20, d.size());
        }
    }
}
