package io.phost.appliance.image;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Builds the appliance image and boots it in qemu (TCG): UEFI raw disk, BIOS ISO, broken config, and a VM
 * partition started by the image's own QEMU (nested TCG).
 * Opt-in (-Dphost.image=true) because build plus four emulated boots take 15-30 minutes on 2 cores;
 * the same runs as {@code appliance-image/image/build.sh && appliance-image/image/boot-test.sh}.
 * Its output is in target/boot-test.log.
 */
@EnabledIfSystemProperty(named = "phost.image", matches = "true")
class ApplianceImageBootTest {
    @Test
    void shouldBuildTheImageAndServeFromItUnderQemu() throws Exception {
        Path module = Path.of("").toAbsolutePath();
        Path log = module.resolve("target/boot-test.log");
        Files.createDirectories(log.getParent());
        Process p = new ProcessBuilder("bash", "-c", "image/build.sh && image/boot-test.sh")
            .directory(module.toFile()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!p.waitFor(40, TimeUnit.MINUTES)) {
            p.destroyForcibly();
        }
        assertEquals(0, p.exitValue(), "build or boot test failed; see " + log);
    }
}
