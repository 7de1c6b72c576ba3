package io.phost.appliance.image;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.UserException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Flashes a small fixture image (GPT written by {@link GptFixture}, APPLCFG formatted with
 * {@code mformat -i IMG@@1MiB -v APPLCFG -T 16384 -h 2 -s 32 ::}) into a file and reads the config back
 * with mtools. Needs mtools (Debian package mtools).
 */
class ImageFlasherTest {
    static final long CFG_OFFSET = 2048L * 512;

    @TempDir
    Path dir;
    Path image;
    Path config;
    Path mounts;

    @BeforeEach
    void fixture() throws Exception {
        image = dir.resolve("phost.img");
        GptFixture.write(image, 24_576, new GptFixture.Part("PHOSTBOOT", 34, 2047),
            new GptFixture.Part("APPLCFG", 2048, 2048 + 16_383));
        try {
            ImageFlasher.mtools("mformat", "-i", image + "@@" + CFG_OFFSET, "-v", "APPLCFG", "-T", "16384", "-h", "2", "-s", "32", "::");
        } catch (UserException e) {
            org.junit.jupiter.api.Assumptions.abort("mtools is not installed (apt-get install mtools): " + e.getMessage());
        }
        ImageFlasher.mtools("mcopy", "-i", image + "@@" + CFG_OFFSET, write("default.toml", "[host]\nname = \"default\"\n").toString(), "::/appliance.toml");
        config = write("appliance.toml", "[host]\nname = \"mine\"\ndata_dir = \"/data/phost\"\n\n[[switch]]\nname = \"lan\"\ntype = \"private\"\n");
        mounts = write("mounts", "/dev/sda2 / ext4 rw 0 0\n/dev/sdb1 /media/stick vfat rw 0 0\n");
    }

    private Path write(String name, String text) throws Exception {
        return Files.writeString(dir.resolve(name), text);
    }

    private ImageFlasher flasher() {
        return new ImageFlasher(new DiskGuard(mounts));
    }

    @Test
    void shouldWriteTheImageAndTheConfigIntoAFileTarget() throws Exception {
        Path token = write("token", "s3cret\n");
        Path target = dir.resolve("out.img");
        ImageFlasher.Result r = flasher().flash(image, config, List.of(token), target, false);
        assertEquals(Files.size(image), Files.size(target));
        assertEquals(Files.readString(config), ImageFlasher.readConfigFile(target, "appliance.toml"));
        assertEquals("s3cret\n", ImageFlasher.readConfigFile(target, "token"));
        assertEquals(2, r.configPartition().index());
        // the source image keeps its own config
        assertTrue(ImageFlasher.readConfigFile(image, "appliance.toml").contains("default"));
    }

    @Test
    void shouldRefuseABrokenConfigBeforeWritingAnything() throws Exception {
        Path bad = write("bad.toml", "[host]\nname = \"x\"\ndata_dir = \n");
        Path target = dir.resolve("never.img");
        UserException e = assertThrows(UserException.class, () -> flasher().flash(image, bad, List.of(), target, false));
        assertEquals(2, e.exitCode());
        assertFalse(Files.exists(target));
        List<String> errors = ImageFlasher.checkConfig(bad);
        assertTrue(errors.stream().anyMatch(l -> l.startsWith(bad + ":3:12: ")), errors.toString());
    }

    @Test
    void shouldRefuseMountedAndSystemDisksWithoutForce() {
        UserException mounted = assertThrows(UserException.class,
            () -> flasher().flash(image, config, List.of(), Path.of("/dev/sdb"), false));
        assertEquals(3, mounted.exitCode());
        assertTrue(mounted.getMessage().contains("/dev/sdb1 on /media/stick"), mounted.getMessage());
        UserException system = assertThrows(UserException.class,
            () -> flasher().flash(image, config, List.of(), Path.of("/dev/sda"), false));
        assertTrue(system.getMessage().contains("root file system"), system.getMessage());
    }

    @Test
    void shouldRefuseAnImageWithoutAConfigPartition() throws Exception {
        Path plain = dir.resolve("plain.img");
        GptFixture.write(plain, 4096, new GptFixture.Part("OTHER", 34, 2000));
        UserException e = assertThrows(UserException.class,
            () -> flasher().flash(plain, config, List.of(), dir.resolve("t.img"), false));
        assertTrue(e.getMessage().contains("NOT_FOUND"), e.getMessage());
    }
}
