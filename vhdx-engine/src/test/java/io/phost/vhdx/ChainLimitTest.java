package io.phost.vhdx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhd.VhdFooter;
import io.phost.vhdx.vhd.VhdFormatException;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Issue 16, defect 11: VHDX and VHD chains hold the same number of images (64, the child included), and
 * a create that would make a chain one image too long fails without leaving its file behind.
 */
class ChainLimitTest {
    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(value = DiskFormat.class, names = {"VHDX", "VHD"})
    void shouldHoldSixtyFourImagesAndLeaveNoFileWhenTheSixtyFifthIsRefused(DiskFormat format) throws Exception {
        String ext = format.name().toLowerCase();
        Path parent = dir.resolve("base." + ext);
        VirtualDisks.create(parent, CreateOptions.of(format, DiskType.DYNAMIC, 4L << 20)).close();
        for (int i = 1; i < 64; i++) {
            Path child = dir.resolve("c" + i + "." + ext);
            VirtualDisks.create(child, CreateOptions.differencing(format, parent)).close();
            parent = child;
        }
        try (VirtualDisk deepest = VirtualDisks.open(parent, true)) {
            assertEquals(4L << 20, deepest.size(), "a chain of 64 images opens");
        }
        Path tooDeep = dir.resolve("c64." + ext);
        Path last = parent;
        IOException e = assertThrows(IOException.class,
            () -> VirtualDisks.create(tooDeep, CreateOptions.differencing(format, last)).close());
        assertTrue(e.getMessage().contains("longer than 64 images"), e.getMessage());
        assertFalse(Files.exists(tooDeep), "the refused image is not left behind");
    }

    @Test
    void shouldReportAVhdSizeOfTwoToTheSixtyThreeAsItIsNotClamped() throws Exception {
        Path p = dir.resolve("huge.vhd");
        VirtualDisks.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4L << 20)).close();
        try (Arena a = Arena.ofConfined(); RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            byte[] raw = new byte[VhdFooter.LENGTH];
            for (long at : new long[] {0, f.length() - VhdFooter.LENGTH}) {
                f.seek(at);
                f.readFully(raw);
                VhdFooter footer = new VhdFooter(a.allocate(VhdFooter.LENGTH));
                footer.segment().copyFrom(java.lang.foreign.MemorySegment.ofArray(raw));
                footer.creatorApp("win ").currentSize(Long.MIN_VALUE).sealChecksum(); // 2^63 as an unsigned u64; "win " sizes by this field
                f.seek(at);
                f.write(footer.segment().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
        }
        VhdFormatException e = assertThrows(VhdFormatException.class, () -> VhdDisk.open(p, true));
        assertTrue(e.getMessage().contains("9223372036854775808"), e.getMessage());
    }
}
