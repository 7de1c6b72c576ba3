package io.phost.appliance.image;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code phost image ...}: the bootable appliance image. */
@Command(name = "image", description = "The bootable appliance image (build it with appliance-image/image/build.sh).",
    subcommands = {ImageCommand.Flash.class})
public final class ImageCommand {

    @Command(name = "flash", description = {
        "Write the appliance image and your appliance.toml onto a disk or into an image file, in one step.",
        "The config is checked first; a disk with a mounted partition or holding / is refused without --force."})
    public static final class Flash implements Callable<Integer> {
        @Option(names = "--config", required = true, paramLabel = "FILE", description = "appliance.toml to put on the APPLCFG partition.")
        Path config;

        @Option(names = "--to", required = true, paramLabel = "DEVICE_OR_FILE", description = "Disk device (/dev/sdX) or image file to write.")
        Path to;

        @Option(names = "--image", paramLabel = "PATH", description = "Raw image to write (default: $PHOST_IMAGE, else the build's appliance-image/target/image/phost.img).")
        Path image;

        @Option(names = "--add", paramLabel = "FILE", description = "Another file for the APPLCFG partition (e.g. a management token); repeatable.")
        List<Path> extra = new ArrayList<>();

        @Option(names = "--force", description = "Write even to a mounted or system disk.")
        boolean force;

        @Override
        public Integer call() throws Exception {
            Path img = image != null ? image : defaultImage();
            ImageFlasher.Result r = new ImageFlasher(DiskGuard.system()).flash(img, config, extra, to, force);
            System.out.println("phost: wrote " + img + " (" + r.imageBytes() / (1024 * 1024) + " MiB) to " + r.target()
                + " with " + config + " on partition " + r.configPartition().index() + " (" + ImageFlasher.CONFIG_PARTITION + ")");
            return 0;
        }

        static Path defaultImage() {
            String env = System.getenv("PHOST_IMAGE");
            if (env != null && !env.isBlank()) {
                return Path.of(env);
            }
            try {
                // target/dist/lib/phost.jar -> target/image/phost.img
                Path jar = Path.of(ImageCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
                Path candidate = jar.getParent().getParent().getParent().resolve("image/phost.img");
                if (Files.exists(candidate)) {
                    return candidate;
                }
            } catch (Exception ignored) {
                // not run from a jar in the build tree
            }
            return Path.of("phost.img");
        }
    }
}
