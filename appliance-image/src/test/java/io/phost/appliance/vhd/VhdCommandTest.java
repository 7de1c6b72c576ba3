package io.phost.appliance.vhd;

import io.phost.appliance.Main;
import io.phost.appliance.UserException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** {@code phost vhd …} end to end through Main, on real files (qemu-img verifies in vhdx-engine's tests). */
class VhdCommandTest {
    @TempDir
    Path dir;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final ByteArrayOutputStream err = new ByteArrayOutputStream();
    private PrintStream oldOut;
    private PrintStream oldErr;

    @BeforeEach
    void capture() {
        oldOut = System.out;
        oldErr = System.err;
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @AfterEach
    void restore() {
        System.setOut(oldOut);
        System.setErr(oldErr);
    }

    private int phost(String... args) {
        out.reset();
        err.reset();
        return Main.execute(args);
    }

    private String out() {
        return out.toString(StandardCharsets.UTF_8);
    }

    @Test
    void shouldDocumentEveryOperationInHelp() {
        assertEquals(0, phost("vhd", "--help"));
        String[] ops = {"create", "info", "check", "convert", "resize", "compact", "merge", "set-parent", "compare", "map",
            "measure", "rebase", "set"};
        for (String op : ops) {
            assertTrue(out().contains(op), "vhd --help lists " + op);
        }
        for (String op : ops) {
            assertEquals(0, phost("vhd", op, "--help"), op);
            assertTrue(out().contains("Usage: phost vhd " + op), out());
        }
    }

    @Test
    void shouldCreateInspectConvertResizeAndCompactImages() throws Exception {
        String vhdx = dir.resolve("a.vhdx").toString();
        assertEquals(0, phost("vhd", "create", vhdx, "--size", "64M", "--block-size", "1M", "--logical-sector", "4096"));
        assertEquals(0, phost("vhd", "info", vhdx, "--json"));
        String json = out();
        assertTrue(json.contains("\"format\":\"vhdx\""), json);
        assertTrue(json.contains("\"virtualSize\":67108864"), json);
        assertTrue(json.contains("\"blockSize\":1048576"), json);
        assertTrue(json.contains("\"logicalSectorSize\":4096"), json);
        assertEquals(0, phost("vhd", "check", vhdx));

        String vhd = dir.resolve("b.vhd").toString();
        assertEquals(0, phost("vhd", "convert", vhdx, vhd));
        assertEquals(0, phost("vhd", "info", vhd));
        assertTrue(out().contains("format:             vhd"), out());
        assertEquals(0, phost("vhd", "resize", vhd, "--size", "1G"));
        assertEquals(0, phost("vhd", "info", vhd, "--json"));
        assertTrue(out().contains("\"virtualSize\":1073741824"), out());
        assertEquals(1, phost("vhd", "resize", vhd, "--size", "1M")); // a shrink needs --shrink
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--shrink"), err.toString(StandardCharsets.UTF_8));
        assertEquals(1, phost("vhd", "resize", vhd, "--size", "1M", "--shrink")); // VHD never shrinks: a user error
        String e = err.toString(StandardCharsets.UTF_8);
        assertTrue(e.contains("cannot shrink"), e);
        assertFalse(e.contains("UNSUPPORTED") || e.contains("fileOffset"), "no internal codes: " + e);
        assertEquals(0, phost("vhd", "compact", vhd));
        String fixed = dir.resolve("f.vhdx").toString();
        assertEquals(0, phost("vhd", "create", fixed, "--size", "8M", "--type", "fixed"));
        byte[] fixedBefore = Files.readAllBytes(Path.of(fixed));
        assertEquals(0, phost("vhd", "compact", fixed)); // as Optimize-VHD: a fixed disk is left alone, and we say so
        assertTrue(out().contains("fixed image is not compacted"), out());
        assertArrayEquals(fixedBefore, Files.readAllBytes(Path.of(fixed)));
        String raw = dir.resolve("c.raw").toString();
        assertEquals(0, phost("vhd", "convert", vhd, raw, "--format", "raw", "--type", "fixed"));
        assertEquals(1L << 30, Files.size(Path.of(raw)));
        assertEquals(0, phost("vhd", "check", raw));
    }

    @Test
    void shouldMergeAndReparentDifferencingImages() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        assertEquals(0, phost("vhd", "create", base.toString(), "--size", "16M"));
        assertEquals(0, phost("vhd", "create", child.toString(), "--parent", base.toString()));
        assertEquals(0, phost("vhd", "info", child.toString()));
        assertTrue(out().contains("type:               differencing"), out());
        assertTrue(out().contains("parent chain:"), out());
        Path moved = dir.resolve("moved");
        Files.createDirectories(moved);
        Path newBase = moved.resolve("base-renamed.vhd");
        Files.move(base, newBase);
        assertEquals(0, phost("vhd", "info", child.toString()), "an orphaned child is described (Get-VHD does)");
        assertTrue(out().contains("parentProblem:") && out().contains("PARENT_NOT_FOUND"), out());
        assertEquals(0, phost("vhd", "set-parent", child.toString(), newBase.toString()));
        assertEquals(0, phost("vhd", "merge", child.toString(), "--into", dir.resolve("flat.vhdx").toString()));
        assertEquals(0, phost("vhd", "merge", child.toString()));
        assertFalse(Files.exists(child));
    }

    /** measure, rebase, convert -n/-B/-S/--target-is-zero and the Hyper-V options, end to end with their exit codes. */
    @Test
    void shouldOfferTheQemuImgAndHyperVVerbs() throws Exception {
        String base = dir.resolve("base.vhdx").toString();
        String fresh = dir.resolve("new.vhdx").toString();
        String child = dir.resolve("child.vhdx").toString();
        assertEquals(0, phost("vhd", "create", base, "--size", "64M", "--block-size", "1M"));
        assertEquals(0, phost("vhd", "create", fresh, "--size", "64M", "--block-size", "1M"));
        assertEquals(0, phost("vhd", "create", child, "--parent", base));
        assertEquals(0, phost("vhd", "measure", base, "-O", "raw", "--output", "json"));
        assertTrue(out().contains("\"required\": 67108864") && out().contains("\"fully-allocated\": 67108864"), out());
        assertEquals(0, phost("vhd", "measure", "--size", "64M", "-O", "vhdx"));
        assertTrue(out().contains("required size: 4194304"), out());
        assertEquals(2, phost("vhd", "measure", base, "--size", "1M"), "FILE or --size");
        assertEquals(0, phost("vhd", "info", base));
        assertTrue(out().contains("minimumSize:") && out().contains("fragmentationPercentage: 0\n")
            && out().contains("attached:           no"), out());

        assertEquals(0, phost("vhd", "rebase", child, fresh, "-q"));
        assertEquals(0, phost("vhd", "info", child, "--json"));
        assertTrue(out().contains("new.vhdx"), out());
        assertEquals(0, phost("vhd", "rebase", "-u", child, base, "-q"));
        assertEquals(2, phost("vhd", "rebase", child, child));

        String raw = dir.resolve("out.raw").toString();
        assertEquals(0, phost("vhd", "convert", child, raw, "-S", "0", "-q"));
        assertEquals(64L << 20, Files.size(Path.of(raw)));
        assertEquals(0, phost("vhd", "convert", "-n", base, raw, "-q"));
        assertEquals(0, phost("vhd", "convert", "-n", "--target-is-zero", base, fresh, "-q"));
        assertEquals(2, phost("vhd", "convert", "--target-is-zero", base, dir.resolve("x.vhdx").toString()));
        assertEquals(2, phost("vhd", "convert", "-n", "-B", base, raw, fresh));
        assertEquals(2, phost("vhd", "convert", "-S", "1000", base, dir.resolve("x.vhdx").toString()));
        assertEquals(0, phost("vhd", "convert", raw, dir.resolve("d.vhdx").toString(), "-B", base, "-q"));
        assertEquals(0, phost("vhd", "info", dir.resolve("d.vhdx").toString()));
        assertTrue(out().contains("type:               differencing"), out());
        assertFalse(Files.exists(dir.resolve("x.vhdx")));

        String src = dir.resolve("src.vhdx").toString();
        assertEquals(0, phost("vhd", "create", src, "--source", raw));
        assertEquals(0, phost("vhd", "compact", src, "--mode", "quick", "-q"));
        assertEquals(0, phost("vhd", "compact", src, "--mode", "retrim", "-q"));
        assertEquals(2, phost("vhd", "compact", src, "--mode", "trim"));
        assertEquals(0, phost("vhd", "resize", src, "--to-minimum-size", "-q"));
        assertEquals(0, phost("vhd", "info", src, "--json"));
        assertTrue(out().contains("\"virtualSize\":1048576"), "an empty image shrinks to 1 MiB: " + out());
        assertEquals(2, phost("vhd", "resize", src, "--to-minimum-size", "--size", "2M"));
        assertEquals(0, phost("vhd", "set", src, "--reset-disk-identifier"));
        assertTrue(out().contains("new virtual disk id"), out());
        assertEquals(2, phost("vhd", "set", src));
        assertEquals(0, phost("vhd", "set", src, "--physical-sector", "512"));
        assertEquals(2, phost("vhd", "set", src, "--physical-sector", "1024"));
        String s4k = dir.resolve("s4k.vhdx").toString();
        assertEquals(0, phost("vhd", "convert", raw, s4k, "--logical-sector", "4096", "--physical-sector", "4096", "-q"));
        assertEquals(0, phost("vhd", "info", s4k, "--json"));
        assertTrue(out().contains("\"logicalSectorSize\":4096") && out().contains("\"diskSize\""), out());
        assertEquals(2, phost("vhd", "convert", "-n", raw, s4k, "--logical-sector", "4096"));
        assertEquals(1, phost("vhd", "set", dir.resolve("missing.vhdx").toString(), "--reset-disk-identifier"));
    }

    @Test
    void shouldReportUserErrorsOnOneLineWithExitCodes() throws Exception {
        assertEquals(1, phost("vhd", "info", dir.resolve("missing.vhdx").toString()));
        String e = err.toString(StandardCharsets.UTF_8);
        assertEquals(1, e.lines().count(), e);
        assertTrue(e.startsWith("phost: no such file"), e);
        assertEquals(2, phost("vhd", "create", dir.resolve("x.vhd").toString(), "--size", "12Q"));
        assertEquals(2, phost("vhd", "create", dir.resolve("x.vhd").toString()));
        Path bad = dir.resolve("bad.vhd");
        assertEquals(0, phost("vhd", "create", bad.toString(), "--size", "4M"));
        byte[] b = Files.readAllBytes(bad);
        b[512 + 30] ^= 0x55; // dynamic header, checksum now wrong
        Files.write(bad, b);
        assertEquals(2, phost("vhd", "check", bad.toString()));
        assertEquals(1, phost("vhd", "create", bad.toString(), "--size", "4M"));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("already exists"));
    }

    /** Issue 17: {@code vhd info /etc/passwd} said "format: raw" with exit 0; any file "is" a raw image. */
    @Test
    void shouldSayAFileWithoutASignatureIsNotADiskImageUnlessToldItIsRaw() throws Exception {
        Path text = dir.resolve("passwd");
        Files.writeString(text, "root:x:0:0:root:/root:/bin/sh\n");
        assertEquals(2, phost("vhd", "info", text.toString()));
        String e = err.toString(StandardCharsets.UTF_8);
        assertTrue(e.contains(text + ": not a disk image") && e.contains("--format raw"), e);
        assertEquals(0, phost("vhd", "info", text.toString(), "--format", "raw"));
        assertTrue(out().contains("raw"), out());
        Path named = dir.resolve("disk.img");
        Files.write(named, new byte[4096]);
        assertEquals(0, phost("vhd", "info", named.toString()), "a raw-named file is read as raw");
    }

    @Test
    void shouldRefuseWhatWouldLoseDataAndUseConsistentExitCodes() throws Exception {
        assertEquals(2, phost("vhd"), "phost vhd alone is a usage error");
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("Usage: phost vhd"));

        Path q = dir.resolve("out.qcow2");
        assertEquals(2, phost("vhd", "create", q.toString(), "--size", "4M"));
        assertFalse(Files.exists(q), "no VHDX under a .qcow2 name");

        Path a = dir.resolve("a.vhdx");
        assertEquals(0, phost("vhd", "create", a.toString(), "--size", "8M", "--block-size", "1M"));
        byte[] before = Files.readAllBytes(a);
        assertEquals(1, phost("vhd", "create", a.toString(), "--size", "4M"));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--force"), err.toString(StandardCharsets.UTF_8));
        assertArrayEquals(before, Files.readAllBytes(a), "an existing .vhdx is never overwritten");
        Path b = dir.resolve("b.vhdx");
        assertEquals(0, phost("vhd", "create", b.toString(), "--size", "8M"));
        assertEquals(1, phost("vhd", "convert", b.toString(), a.toString()));
        assertArrayEquals(before, Files.readAllBytes(a));

        assertEquals(2, phost("vhd", "create", dir.resolve("c.vhdx").toString(), "--parent", a.toString(), "--size", "1G"));
        assertEquals(2, phost("vhd", "create", dir.resolve("d.vhd").toString(), "--size", "4M", "--physical-sector", "4096"));
        assertEquals(2, phost("vhd", "create", dir.resolve("e.vhdx").toString(), "--size", "1000"));
        assertEquals(2, phost("vhd", "create", dir.resolve("e.vhdx").toString(), "--size", "4M", "--block-size", "3M"));
        assertEquals(2, phost("vhd", "resize", a.toString(), "--size", "+100"));
        assertEquals(2, phost("vhd", "convert", a.toString(), dir.resolve("e.vhdx").toString(), "--type", "sparse"));
        Path child = dir.resolve("c.avhdx");
        assertEquals(0, phost("vhd", "create", child.toString(), "--parent", a.toString()));
        assertEquals(2, phost("vhd", "set-parent", child.toString(), child.toString()));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("same file"), err.toString(StandardCharsets.UTF_8));

        assertEquals(0, phost("vhd", "info", child.toString(), "--backing-chain", "--json"));
        assertTrue(out().startsWith("[") && out().contains("\"type\":\"differencing\"") && out().contains("\"type\":\"dynamic\""), out());
        assertEquals(0, phost("vhd", "check", a.toString(), "--output", "json"));
        assertTrue(out().contains("\"readable\":true") && out().contains("\"exitCode\":0"), out());

        assertEquals(0, phost("vhd", "resize", b.toString(), "--size", "+8M", "-q"));
        assertEquals("", out(), "-q prints nothing");
        assertEquals(1, phost("vhd", "resize", b.toString(), "--size", "-4M"));
        assertEquals(0, phost("vhd", "resize", b.toString(), "--size", "-4M", "--shrink"));
        assertEquals(0, phost("vhd", "info", b.toString(), "--json"));
        assertTrue(out().contains("\"virtualSize\":" + (12L << 20)), out());
    }

    @Test
    void shouldCompareAndMapImagesAcrossFormats() throws Exception {
        Path a = dir.resolve("a.vhdx");
        assertEquals(0, phost("vhd", "create", a.toString(), "--size", "8M", "--block-size", "1M"));
        try (io.phost.vhdx.VirtualDisk d = io.phost.vhdx.VirtualDisks.open(a, false)) {
            d.write(3L << 20, java.lang.foreign.MemorySegment.ofArray(new byte[4096]).fill((byte) 9));
        }
        Path raw = dir.resolve("a.raw");
        assertEquals(0, phost("vhd", "convert", a.toString(), raw.toString(), "-q"));
        assertEquals(0, phost("vhd", "compare", a.toString(), raw.toString()));
        assertTrue(out().contains("identical"), out());
        byte[] r = Files.readAllBytes(raw);
        r[100] = 1;
        Files.write(raw, r);
        assertEquals(1, phost("vhd", "compare", a.toString(), raw.toString()));
        assertTrue(out().contains("offset 100"), out());
        assertEquals(0, phost("vhd", "map", a.toString(), "--output", "json"));
        assertTrue(out().contains("{\"start\": 3145728, \"length\": 1048576, \"data\": true, \"zero\": false}"), out());
        Path q = dir.resolve("q.qcow2");
        Files.write(q, new byte[] {'Q', 'F', 'I', (byte) 0xfb, 0, 0, 0, 3});
        assertEquals(2, phost("vhd", "info", q.toString()));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("qcow2 image"), err.toString(StandardCharsets.UTF_8));
        assertEquals(0, phost("vhd", "info", q.toString(), "-f", "raw"));
    }

    /** Writes {@code len} bytes of {@code value} at {@code off} of an image, through the engine (a guest's writes). */
    private static void fill(Path image, long off, int len, int value) throws Exception {
        try (io.phost.vhdx.VirtualDisk d = io.phost.vhdx.VirtualDisks.open(image, false)) {
            d.write(off, java.lang.foreign.MemorySegment.ofArray(new byte[len]).fill((byte) value));
            d.flush();
        }
    }

    @Test
    void shouldMergeToAnAncestorKeepAChildRepairAFooterAndCompareStrictly() throws Exception {
        String base = dir.resolve("base.vhd").toString();
        String mid = dir.resolve("mid.vhd").toString();
        String top = dir.resolve("top.vhd").toString();
        assertEquals(0, phost("vhd", "create", base, "--size", "8M"));
        assertEquals(0, phost("vhd", "create", mid, "--parent", base));
        assertEquals(0, phost("vhd", "create", top, "--parent", mid));
        fill(Path.of(mid), 1 << 20, 4096, 1);
        fill(Path.of(top), 3 << 20, 4096, 2);
        String ref = dir.resolve("ref.raw").toString();
        assertEquals(0, phost("vhd", "convert", top, ref, "-q"));
        // Merge-VHD -DestinationPath: the chain from top up into base; the merged images are deleted
        assertEquals(0, phost("vhd", "merge", top, "--to", base, "-q"));
        assertFalse(Files.exists(Path.of(top)) || Files.exists(Path.of(mid)), "merged images deleted");
        assertEquals(0, phost("vhd", "compare", base, ref, "-F", "raw"));
        // --keep-child: the child stays and still reads the same, now redundantly
        String kid = dir.resolve("kid.vhd").toString();
        assertEquals(0, phost("vhd", "create", kid, "--parent", base));
        fill(Path.of(kid), 5 << 20, 4096, 3);
        String kidRef = dir.resolve("kid.raw").toString();
        assertEquals(0, phost("vhd", "convert", kid, kidRef, "-q"));
        assertEquals(0, phost("vhd", "merge", kid, "--keep-child", "-q"));
        assertTrue(Files.exists(Path.of(kid)));
        assertEquals(0, phost("vhd", "compare", kid, kidRef, "-F", "raw", "-p"));
        assertEquals(0, phost("vhd", "compare", base, kidRef, "--format-b", "raw"));
        // compare --strict: a larger image whose extra area reads zeros differs only when strict
        String big = dir.resolve("big.raw").toString();
        assertEquals(0, phost("vhd", "convert", base, big, "-q"));
        assertEquals(0, phost("vhd", "resize", big, "--size", "+1M", "-q"));
        assertEquals(0, phost("vhd", "compare", base, big));
        assertEquals(1, phost("vhd", "compare", base, big, "--strict"));
        assertTrue(out().contains("Images differ"), out());
        // check --repair: a damaged footer is rewritten from its copy at offset 0
        Path b = Path.of(base);
        byte[] bytes = Files.readAllBytes(b);
        bytes[bytes.length - 512 + 70] ^= 0x5a; // inside the footer (after the checksum field)
        Files.write(b, bytes);
        assertEquals(1, phost("vhd", "check", base));
        assertTrue(out().contains("--repair may fix"), out());
        assertEquals(0, phost("vhd", "check", base, "--repair"));
        assertTrue(out().contains("repaired: footer rewritten"), out());
        assertEquals(0, phost("vhd", "check", base));
        assertEquals(0, phost("vhd", "compare", base, kidRef, "-F", "raw"));
    }

    @Test
    void shouldParseSizesWithBinarySuffixes() {
        assertEquals(512, Sizes.parse("512"));
        assertEquals(4096, Sizes.parse("4K"));
        assertEquals(3L << 20, Sizes.parse("3M"));
        assertEquals(20L << 30, Sizes.parse("20G"));
        assertEquals(2L << 40, Sizes.parse("2T"));
        assertEquals(1L << 30, Sizes.parse("1GiB"));
        assertThrows(UserException.class, () -> Sizes.parse("lots"));
        assertThrows(UserException.class, () -> Sizes.parse("99999999999T"));
        assertEquals(3L << 30, Sizes.parseRelative("+1G", 2L << 30));
        assertEquals(1L << 30, Sizes.parseRelative("-1G", 2L << 30));
        assertEquals(5L << 20, Sizes.parseRelative("5M", 2L << 30));
    }
}
