package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static io.phost.vhdx.Tools.run;
import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code measure}, {@code rebase} and the {@code convert -n/-B/-S/--target-is-zero} variants, each checked
 * against qemu-img. Recipes:
 * <pre>
 *   qemu-img measure -O raw --output=json src.raw          # raw: required = fully allocated = virtual size
 *   qemu-img create -f qcow2 -b base.qcow2 -F qcow2 child.qcow2; qemu-io -c "write -P 0x43 3M 1M" child.qcow2
 *   qemu-img rebase [-u] -b new.qcow2 -F qcow2 child.qcow2  # the reference rebase
 *   qemu-img compare -f qcow2 -F raw child.qcow2 ours.raw   # ours (flattened) reads as qemu's
 *   qemu-img convert -n -f raw -O raw src.raw existing.raw  # -n into garbage: the target reads as the source
 *   qemu-img convert -S 0 -O raw src.raw full.raw           # no holes
 * </pre>
 */
class ImageVerbsTest {
    @TempDir
    Path dir;

    /** A 200 MiB sparse raw file written by qemu-io: data in 4 separate places, one 3 MiB run. */
    private Path qemuRaw(String name) throws Exception {
        Path raw = dir.resolve(name);
        // a sparse file (not qemu-img create, which allocates the first 4 KiB): allocated = written
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(raw.toFile(), "rw")) {
            f.setLength(200L << 20);
        }
        runOk("qemu-io", "-f", "raw", "-c", "write -P 0x41 1M 64k", "-c", "write -P 0x42 70M 3M",
            "-c", "write -P 0x43 130M 4k", "-c", "write -P 0x44 199M 1M", raw.toString());
        return raw;
    }

    private static long jsonLong(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*(\\d+)").matcher(json);
        assertTrue(m.find(), () -> key + " in " + json);
        return Long.parseLong(m.group(1));
    }

    private static String sha(Path p) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
    }

    private Path flatten(Path image, String name) throws Exception {
        Path out = dir.resolve(name);
        DiskOps.convert(image, out, DiskFormat.RAW, DiskType.DYNAMIC, 0, Progress.NONE);
        return out;
    }

    // ------------------------------------------------------------------------------------------ measure

    @Test
    void shouldMeasureRawAsQemuImgDoes() throws Exception {
        Tools.assumeTool("qemu-img");
        Path raw = qemuRaw("m.raw");
        String q = runOk("qemu-img", "measure", "-O", "raw", "--output=json", "-f", "raw", raw.toString());
        ImageMeasure.Result r;
        try (VirtualDisk d = VirtualDisks.open(raw, true)) {
            r = ImageMeasure.of(d, DiskFormat.RAW, DiskType.DYNAMIC, 0);
        }
        assertEquals(jsonLong(q, "required"), r.required());
        assertEquals(jsonLong(q, "fully-allocated"), r.fullyAllocated());
        String qs = runOk("qemu-img", "measure", "-O", "raw", "--output=json", "--size", "300M");
        ImageMeasure.Result s = ImageMeasure.ofSize(300L << 20, DiskFormat.RAW, DiskType.DYNAMIC, 0, 512);
        assertEquals(jsonLong(qs, "required"), s.required());
        assertEquals(jsonLong(qs, "fully-allocated"), s.fullyAllocated());
        assertEquals(s.toJson().replaceAll("\\s", ""), qs.replaceAll("\\s", ""), "the same JSON as qemu-img");
    }

    /** What measure says a conversion needs is the size the conversion makes (every allocated block holds data). */
    @Test
    void shouldMeasureExactlyTheFileSizeConvertProduces() throws Exception {
        Tools.assumeTool("qemu-io");
        Path raw = qemuRaw("src.raw");
        record Case(DiskFormat f, DiskType t, long block) { }
        Case[] cases = {
            new Case(DiskFormat.VHDX, DiskType.DYNAMIC, 0), new Case(DiskFormat.VHDX, DiskType.DYNAMIC, 1 << 20),
            new Case(DiskFormat.VHDX, DiskType.FIXED, 8 << 20), new Case(DiskFormat.VHD, DiskType.DYNAMIC, 0),
            new Case(DiskFormat.VHD, DiskType.DYNAMIC, 512 << 10), new Case(DiskFormat.VHD, DiskType.FIXED, 0),
        };
        int i = 0;
        for (Case c : cases) {
            Path out = dir.resolve("out" + i++ + "." + c.f().id());
            ImageMeasure.Result m;
            try (VirtualDisk d = VirtualDisks.open(raw, true)) {
                m = ImageMeasure.of(d, c.f(), c.t(), c.block());
            }
            DiskOps.convert(raw, null, out, c.f(), c.t(), c.block(), false, Progress.NONE);
            assertEquals(Files.size(out), m.required(), c + ": required");
            if (c.t() == DiskType.FIXED) {
                assertEquals(m.required(), m.fullyAllocated(), c + ": a fixed image is fully allocated");
            }
            // measuring the converted image for its own format gives its own size back
            try (VirtualDisk d = VirtualDisks.open(out, true)) {
                assertEquals(Files.size(out), ImageMeasure.of(d, c.f(), c.t(), c.block()).required(), c + ": re-measured");
            }
        }
        Path fixed = dir.resolve("full.vhdx");
        DiskOps.convert(raw, null, fixed, DiskFormat.VHDX, DiskType.FIXED, 0, false, Progress.NONE);
        try (VirtualDisk d = VirtualDisks.open(raw, true)) {
            assertEquals(Files.size(fixed), ImageMeasure.of(d, DiskFormat.VHDX, DiskType.DYNAMIC, 0).fullyAllocated());
        }
        Path empty = dir.resolve("empty.vhdx");
        DiskOps.create(empty, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 300L << 20), false);
        assertEquals(Files.size(empty), ImageMeasure.ofSize(300L << 20, DiskFormat.VHDX, DiskType.DYNAMIC, 0, 512).required());
        Path emptyVhd = dir.resolve("empty.vhd");
        DiskOps.create(emptyVhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 300L << 20), false);
        assertEquals(Files.size(emptyVhd), ImageMeasure.ofSize(300L << 20, DiskFormat.VHD, DiskType.DYNAMIC, 0, 512).required());
    }

    /** A chain is measured as its flattened content: what `convert` of the child makes. */
    @Test
    void shouldMeasureADifferencingChainAsItsFlattenedCopy() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 96L << 20).withBlockSize(2 << 20), false);
        write(base, 0, 4 << 20, 1); // whole 2 MiB blocks: allocated = data (measure reads no data)
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base).withBlockSize(1 << 20), false);
        write(child, 40L << 20, 4096, 2);
        write(child, 95L << 20, 1 << 20, 3);
        Path out = dir.resolve("flat.vhdx");
        ImageMeasure.Result m;
        try (VirtualDisk d = VirtualDisks.open(child, true)) {
            m = ImageMeasure.of(d, DiskFormat.VHDX, DiskType.DYNAMIC, 1 << 20);
        }
        DiskOps.convert(child, null, out, DiskFormat.VHDX, DiskType.DYNAMIC, 1 << 20, false, Progress.NONE);
        assertEquals(Files.size(out), m.required());
    }

    private static void write(Path image, long off, int len, int seed) throws Exception {
        try (VirtualDisk d = VirtualDisks.open(image, false)) {
            byte[] b = new byte[len];
            Tools.pattern(MemorySegment.ofArray(b), off, seed);
            d.write(off, MemorySegment.ofArray(b));
            d.flush();
        }
    }

    // ------------------------------------------------------------------------------------------ rebase

    /**
     * base ← child ← grandchild, and an unrelated new base. A safe rebase of child onto the new base keeps
     * what child (and grandchild) read, byte for byte, even after the old base is gone; the grandchild stays
     * linked. The same chain in qcow2 rebased by qemu-img reads the same as ours.
     */
    @ParameterizedTest
    @EnumSource(value = DiskFormat.class, names = {"VHDX", "VHD"})
    void shouldRebaseKeepingWhatTheChildReadsAsQemuImgRebaseDoes(DiskFormat f) throws Exception {
        Tools.assumeTool("qemu-img");
        String ext = f.id();
        Path base = dir.resolve("base." + ext);
        Path fresh = dir.resolve("new." + ext);
        Path child = dir.resolve("child." + ext);
        Path grand = dir.resolve("grand." + ext);
        CreateOptions o = CreateOptions.of(f, DiskType.DYNAMIC, 16L << 20).withBlockSize(f == DiskFormat.VHDX ? 1 << 20 : 512 << 10);
        DiskOps.create(base, o, false);
        DiskOps.create(fresh, o, false);
        String[] baseW = {"write -P 0x41 0 4M", "write -P 0x45 12M 64k"};
        String[] newW = {"write -P 0x42 2M 4M", "write -P 0x46 15M 1M"};
        String[] childW = {"write -P 0x43 3M 512", "write -P 0x47 9M 8k"};
        String[] grandW = {"write -P 0x44 1M 4k"};
        qio(base, baseW);
        qio(fresh, newW);
        DiskOps.create(child, CreateOptions.differencing(f, base), false);
        qio(child, childW);
        DiskOps.create(grand, CreateOptions.differencing(f, child), false);
        qio(grand, grandW);
        Path childBefore = flatten(child, "child-before.raw");
        Path grandBefore = flatten(grand, "grand-before.raw");

        // the reference: the same chain in qcow2, rebased by qemu-img
        Path qb = dir.resolve("base.qcow2");
        Path qn = dir.resolve("new.qcow2");
        Path qc = dir.resolve("child.qcow2");
        runOk("qemu-img", "create", "-q", "-f", "qcow2", qb.toString(), "16M");
        runOk("qemu-img", "create", "-q", "-f", "qcow2", qn.toString(), "16M");
        qemuIo("qcow2", qb, baseW);
        qemuIo("qcow2", qn, newW);
        runOk("qemu-img", "create", "-q", "-f", "qcow2", "-b", qb.toString(), "-F", "qcow2", qc.toString());
        qemuIo("qcow2", qc, childW);
        runOk("qemu-img", "rebase", "-q", "-b", qn.toString(), "-F", "qcow2", qc.toString());

        DiskOps.CopyResult r = ImageRebase.rebase(child, fresh, false, Progress.NONE);
        assertTrue(r.bytesWritten() > 0, "the old base's differing data was copied in");
        try (VirtualDisk d = VirtualDisks.open(child, true)) {
            assertTrue(DiskOps.chainPaths(child, d).get(1).toAbsolutePath().equals(fresh.toAbsolutePath()), "re-pointed");
        }
        Files.delete(base); // the child no longer needs it
        Path childAfter = flatten(child, "child-after.raw");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", childBefore.toString(), childAfter.toString());
        runOk("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", qc.toString(), childAfter.toString());
        Path grandAfter = flatten(grand, "grand-after.raw"); // still linked: opens, reads the same
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", grandBefore.toString(), grandAfter.toString());
        assertTrue(DiskOps.check(child, false).problems().isEmpty());
    }

    /** -u only re-points: the child then reads the new parent wherever it stores nothing, as qemu-img rebase -u. */
    @ParameterizedTest
    @EnumSource(value = DiskFormat.class, names = {"VHDX", "VHD"})
    void shouldRebaseUnsafelyAsQemuImgRebaseDashU(DiskFormat f) throws Exception {
        Tools.assumeTool("qemu-img");
        String ext = f.id();
        Path base = dir.resolve("base." + ext);
        Path fresh = dir.resolve("new." + ext);
        Path child = dir.resolve("child." + ext);
        CreateOptions o = CreateOptions.of(f, DiskType.DYNAMIC, 16L << 20);
        DiskOps.create(base, o, false);
        DiskOps.create(fresh, o, false);
        String[] baseW = {"write -P 0x41 0 4M"};
        String[] newW = {"write -P 0x42 2M 4M"};
        String[] childW = {"write -P 0x43 3M 64k"}; // one whole qcow2 cluster: no copy-on-write from the old base
        qio(base, baseW);
        qio(fresh, newW);
        DiskOps.create(child, CreateOptions.differencing(f, base), false);
        qio(child, childW);
        Path qb = dir.resolve("base.qcow2");
        Path qn = dir.resolve("new.qcow2");
        Path qc = dir.resolve("child.qcow2");
        runOk("qemu-img", "create", "-q", "-f", "qcow2", qb.toString(), "16M");
        runOk("qemu-img", "create", "-q", "-f", "qcow2", qn.toString(), "16M");
        qemuIo("qcow2", qb, baseW);
        qemuIo("qcow2", qn, newW);
        runOk("qemu-img", "create", "-q", "-f", "qcow2", "-b", qb.toString(), "-F", "qcow2", qc.toString());
        qemuIo("qcow2", qc, childW);
        runOk("qemu-img", "rebase", "-q", "-u", "-b", qn.toString(), "-F", "qcow2", qc.toString());
        Files.delete(base); // -u works with the old parent gone
        ImageRebase.rebase(child, fresh, true, Progress.NONE);
        Path after = flatten(child, "after.raw");
        runOk("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", qc.toString(), after.toString());
    }

    /** Refusals leave every file byte-identical: onto its own descendant, onto a different size, onto itself. */
    @Test
    void shouldRefuseARebaseThatCannotWorkAndTouchNothing() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        Path grand = dir.resolve("grand.vhdx");
        Path other = dir.resolve("other.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20), false);
        DiskOps.create(other, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 32L << 20), false);
        write(base, 0, 1 << 20, 1);
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base), false);
        write(child, 4096, 4096, 2);
        DiskOps.create(grand, CreateOptions.differencing(DiskFormat.VHDX, child), false);
        Path[] all = {base, child, grand, other};
        String[] before = new String[all.length];
        for (int i = 0; i < all.length; i++) {
            before[i] = sha(all[i]);
        }
        assertThrows(IllegalArgumentException.class, () -> ImageRebase.rebase(child, grand, false, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> ImageRebase.rebase(child, other, false, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> ImageRebase.rebase(base, other, false, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> ImageRebase.rebase(child, grand, true, Progress.NONE));
        for (int i = 0; i < all.length; i++) {
            assertEquals(before[i], sha(all[i]), all[i] + " changed by a refused rebase");
        }
    }

    private static void qio(Path image, String... cmds) throws Exception {
        // qemu cannot write differencing VHD/VHDX: write through the engine with qemu-io's pattern semantics
        Pattern w = Pattern.compile("write -P 0x([0-9a-f]+) (\\S+) (\\S+)");
        try (VirtualDisk d = VirtualDisks.open(image, false)) {
            for (String c : cmds) {
                Matcher m = w.matcher(c);
                assertTrue(m.matches(), c);
                long off = size(m.group(2));
                int len = (int) size(m.group(3));
                byte[] b = new byte[Math.min(len, 8 << 20)];
                java.util.Arrays.fill(b, (byte) Integer.parseInt(m.group(1), 16));
                for (long done = 0; done < len; done += b.length) {
                    int k = (int) Math.min(b.length, len - done);
                    d.write(off + done, MemorySegment.ofArray(b).asSlice(0, k));
                }
            }
            d.flush();
        }
    }

    private static long size(String s) {
        char u = s.charAt(s.length() - 1);
        int shift = switch (u) {
            case 'k' -> 10;
            case 'M' -> 20;
            default -> 0;
        };
        return Long.parseLong(shift == 0 ? s : s.substring(0, s.length() - 1)) << shift;
    }

    private static void qemuIo(String fmt, Path image, String... cmds) throws Exception {
        String[] argv = new String[3 + 2 * cmds.length + 1];
        argv[0] = "qemu-io";
        argv[1] = "-f";
        argv[2] = fmt;
        for (int i = 0; i < cmds.length; i++) {
            argv[3 + 2 * i] = "-c";
            argv[4 + 2 * i] = cmds[i];
        }
        argv[argv.length - 1] = image.toString();
        runOk(argv);
    }

    // ------------------------------------------------------------------------------------------ convert variants

    /** -n into an existing image full of garbage: it reads as the source afterwards, as qemu-img convert -n makes it. */
    @ParameterizedTest
    @EnumSource(value = DiskFormat.class, names = {"VHDX", "VHD", "RAW"})
    void shouldConvertIntoAnExistingImageOverwritingEverything(DiskFormat f) throws Exception {
        Tools.assumeTool("qemu-img");
        Path src = qemuRaw("src.raw");
        Path dst = dir.resolve("dst." + f.id());
        DiskOps.create(dst, CreateOptions.of(f, DiskType.DYNAMIC, 208L << 20), false); // larger than the source
        qio(dst, "write -P 0xff 0 208M");
        ImageConvert.into(src, null, dst, null, false, 4096, Progress.NONE);
        Path flat = flatten(dst, "flat.raw"); // 208 MiB: the source, then the old garbage (as qemu leaves it)
        // the reference: qemu-img convert -n into the same kind of garbage
        Path q = dir.resolve("q.raw");
        runOk("qemu-img", "create", "-q", "-f", "raw", q.toString(), "208M");
        runOk("qemu-io", "-f", "raw", "-c", "write -P 0xff 0 208M", q.toString());
        runOk("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), q.toString());
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", q.toString(), flat.toString());
        if (f == DiskFormat.VHDX) {
            runOk("qemu-img", "check", "-q", "-f", "vhdx", dst.toString());
        }
    }

    /** --target-is-zero: zero ranges are not written, so a fresh sparse target stays sparse. */
    @Test
    void shouldSkipZeroRangesWhenTheTargetIsZero() throws Exception {
        Tools.assumeTool("qemu-img");
        Path src = qemuRaw("src.raw");
        Path dst = dir.resolve("dst.vhdx");
        DiskOps.create(dst, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 200L << 20).withBlockSize(1 << 20), false);
        DiskOps.CopyResult r = ImageConvert.into(src, null, dst, null, true, 4096, Progress.NONE);
        assertEquals((64L << 10) + (3L << 20) + 4096 + (1L << 20), r.bytesWritten(), "only the data");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", src.toString(), dst.toString());
        assertEquals(6L << 20, DiskOps.info(dst).allocatedBytes(), "6 blocks of 1 MiB hold the data");
    }

    /** -n refusals: a smaller target, the source itself, a parent of the source; nothing is written. */
    @Test
    void shouldRefuseConvertIntoASmallerImageOrTheSourceChain() throws Exception {
        Path src = dir.resolve("s.vhdx");
        DiskOps.create(src, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20), false);
        write(src, 0, 1 << 20, 1);
        Path child = dir.resolve("c.vhdx");
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, src), false);
        Path small = dir.resolve("small.raw");
        DiskOps.create(small, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, 8L << 20), false);
        Path[] all = {src, child, small};
        String[] before = new String[all.length];
        for (int i = 0; i < all.length; i++) {
            before[i] = sha(all[i]);
        }
        assertThrows(IllegalArgumentException.class, () -> ImageConvert.into(src, null, small, null, false, 4096, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> ImageConvert.into(child, null, src, null, false, 4096, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> ImageConvert.into(child, null, child, null, false, 4096, Progress.NONE));
        for (int i = 0; i < all.length; i++) {
            assertEquals(before[i], sha(all[i]), all[i] + " changed by a refused convert -n");
        }
    }

    /**
     * -B: the output is a differencing image of BACKING that stores only the blocks where the source differs
     * (including where the source reads zeros over backing data), and reads exactly as the source.
     */
    @ParameterizedTest
    @EnumSource(value = DiskFormat.class, names = {"VHDX", "VHD"})
    void shouldConvertToADifferencingImageOfABackingFile(DiskFormat f) throws Exception {
        Tools.assumeTool("qemu-img");
        Path backing = dir.resolve("backing." + f.id());
        DiskOps.create(backing, CreateOptions.of(f, DiskType.DYNAMIC, 200L << 20).withBlockSize(1 << 20), false);
        qio(backing, "write -P 0x42 70M 3M", "write -P 0x55 100M 1M", "write -P 0x44 199M 1M");
        Path src = qemuRaw("src.raw"); // same as backing at 70M and 199M; zeros at 100M where backing has data
        Path dst = dir.resolve("dst." + f.id());
        ImageConvert.toNew(src, null, dst, f, DiskType.DYNAMIC, 1 << 20, backing, 4096, false, Progress.NONE);
        Path flat = flatten(dst, "flat.raw");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", src.toString(), flat.toString());
        try (VirtualDisk d = VirtualDisks.open(dst, true)) {
            assertEquals(backing.toAbsolutePath(), DiskOps.chainPaths(dst, d).get(1).toAbsolutePath());
        }
        // stored: 1M (64k of 0x41), 130M (4k of 0x43), 100M (zeros over 0x55): three blocks, not the 3M+1M equal
        // to backing (VHDX also counts the chunk's sector bitmap block)
        long own = DiskOps.info(dst).allocatedBytes();
        assertEquals((3L << 20) + (f == DiskFormat.VHDX ? 1L << 20 : 0), own, "only the differing blocks are stored");
    }

    /** -S 0 writes every sector (no holes); the default keeps 4 KiB holes; as qemu-img convert -S. */
    @Test
    void shouldHonourTheSparseGranularityAsQemuImgConvert() throws Exception {
        Tools.assumeTool("qemu-img");
        Path src = qemuRaw("src.raw");
        Path ours = dir.resolve("full.raw");
        Path theirs = dir.resolve("qfull.raw");
        ImageConvert.toNew(src, null, ours, DiskFormat.RAW, DiskType.DYNAMIC, 0, null, 0, false, Progress.NONE);
        runOk("qemu-img", "convert", "-S", "0", "-f", "raw", "-O", "raw", src.toString(), theirs.toString());
        runOk("qemu-img", "compare", "-q", "-s", "-f", "raw", "-F", "raw", theirs.toString(), ours.toString());
        // judged by data extents (SEEK_DATA/SEEK_HOLE): st_blocks also counts ext4's extent-tree blocks, which
        // depend on how the file system laid the extents out, not on what was written
        assertEquals(200L << 20, DiskOps.info(ours).allocatedBytes(), "fully allocated, as qemu's -S 0");
        assertEquals(DiskOps.info(theirs).allocatedBytes(), DiskOps.info(ours).allocatedBytes());
        long st = DiskOps.diskBytes(ours);
        assertTrue(st >= 200L << 20 && st <= (200L << 20) + (64 << 10), "st_blocks: data plus extent blocks: " + st);
        Path sparse = dir.resolve("sparse.raw");
        Path qsparse = dir.resolve("qsparse.raw");
        ImageConvert.toNew(src, null, sparse, DiskFormat.RAW, DiskType.DYNAMIC, 0, null, 64 << 10, false, Progress.NONE);
        runOk("qemu-img", "convert", "-S", "64k", "-f", "raw", "-O", "raw", src.toString(), qsparse.toString());
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", qsparse.toString(), sparse.toString());
        long data = (64L << 10) + (3L << 20) + 4096 + (1L << 20);
        // st_blocks also counts the file system's extent blocks (ext4: past 4 extents), and qemu allocates the
        // target's first 4 KiB: allow 8 KiB over the data on both sides
        long oursBytes = DiskOps.diskBytes(sparse);
        long theirsBytes = DiskOps.diskBytes(qsparse);
        assertTrue(oursBytes >= data && oursBytes <= data + 8192, "holes everywhere but the data: " + oursBytes);
        assertTrue(theirsBytes >= data && theirsBytes <= data + 8192, "qemu's -S 64k: " + theirsBytes);
        assertThrows(IllegalArgumentException.class,
            () -> ImageConvert.toNew(src, null, dir.resolve("x.raw"), DiskFormat.RAW, DiskType.DYNAMIC, 0, null, 1000, false, Progress.NONE));
        assertFalse(Files.exists(dir.resolve("x.raw")));
    }

    /**
     * Zero runs not aligned to -S: qemu-img 7.2 holes only the S-aligned pieces inside a run (a 12 KiB run at
     * 4 KiB gets an 8 KiB hole with -S 8k, none with -S 16k), and so do we: the two outputs map identically.
     * <pre>
     *   qemu-img convert -f raw -O raw -S 8k src.raw q.raw; qemu-img map --output=json -f raw q.raw
     * </pre>
     */
    @Test
    void shouldHoleTheSameUnalignedZeroRunsAsQemuImgConvert() throws Exception {
        Tools.assumeTool("qemu-img");
        byte[] b = new byte[1 << 20];
        java.util.Arrays.fill(b, (byte) 0x55);
        java.util.Arrays.fill(b, 4096, 16384, (byte) 0);           // 12 KiB at 4 KiB
        java.util.Arrays.fill(b, 6 * 8192 + 1024, 6 * 8192 + 1024 + 12288, (byte) 0); // 12 KiB at 49 KiB
        java.util.Arrays.fill(b, 66560, 66560 + 20480, (byte) 0);  // 20 KiB at 65 KiB
        java.util.Arrays.fill(b, 131072 + 512, 131072 + 512 + 4096, (byte) 0); // 4 KiB, no aligned page inside
        Path src = dir.resolve("runs.raw");
        Files.write(src, b);
        for (String s : List.of("4k", "8k", "16k")) {
            Path ours = dir.resolve("ours-" + s + ".raw");
            Path theirs = dir.resolve("theirs-" + s + ".raw");
            long bytes = Long.parseLong(s.substring(0, s.length() - 1)) << 10;
            ImageConvert.toNew(src, null, ours, DiskFormat.RAW, DiskType.DYNAMIC, 0, null, bytes, false, Progress.NONE);
            runOk("qemu-img", "convert", "-S", s, "-f", "raw", "-O", "raw", src.toString(), theirs.toString());
            runOk("qemu-img", "compare", "-q", "-s", "-f", "raw", "-F", "raw", theirs.toString(), ours.toString());
            assertEquals(runOk("qemu-img", "map", "--output=json", "-f", "raw", theirs.toString()),
                runOk("qemu-img", "map", "--output=json", "-f", "raw", ours.toString()), "-S " + s + ": the same holes");
        }
    }
}
