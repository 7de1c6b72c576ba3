package io.phost.appliance.image;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Finds the appliance.toml to run on the appliance, in this order:
 * <ol>
 *   <li>the kernel argument {@code phost.config=PATH} in /proc/cmdline;</li>
 *   <li>the FAT partition labelled APPLCFG ({@code /dev/disk/by-label/APPLCFG}, on the boot disk or a second
 *       stick; the image's init links the one it chose there and mounts it): {@code appliance.toml} at
 *       its mount point;</li>
 *   <li>else the path given with {@code --config}.</li>
 * </ol>
 * The image's {@code /init} applies the same rule in shell before the JVM starts (it has to mount the
 * partition); this class is the rule for Java callers, e.g. {@code phost run} without {@code --config}.
 */
public final class ConfigLocator {
    public static final String LABEL = "APPLCFG";
    public static final String FILE_NAME = "appliance.toml";
    public static final String KERNEL_ARG = "phost.config";

    private final Path procCmdline;
    private final Path byLabelDir;
    private final DiskGuard mounts;

    public ConfigLocator(Path procCmdline, Path byLabelDir, Path procMounts) {
        this.procCmdline = procCmdline;
        this.byLabelDir = byLabelDir;
        this.mounts = new DiskGuard(procMounts);
    }

    public static ConfigLocator system() {
        return new ConfigLocator(Path.of("/proc/cmdline"), Path.of("/dev/disk/by-label"), Path.of("/proc/mounts"));
    }

    /** Where the config came from, for the log line. */
    public enum Source { KERNEL_ARGUMENT, CONFIG_PARTITION, COMMAND_LINE }

    public record Located(Path path, Source source) {}

    /** The config to use; {@code fallback} is the --config path (may be null: then null when nothing is found). */
    public Located locate(Path fallback) throws IOException {
        String arg = kernelArgument();
        if (arg != null && !arg.isEmpty()) {
            return new Located(Path.of(arg), Source.KERNEL_ARGUMENT);
        }
        Path label = byLabelDir.resolve(LABEL);
        if (Files.exists(label)) {
            String dev = label.toRealPath().toString();
            for (DiskGuard.Mount m : mounts.mounts()) {
                if (m.source().equals(dev) || m.source().equals(label.toString())) {
                    return new Located(Path.of(m.mountPoint(), FILE_NAME), Source.CONFIG_PARTITION);
                }
            }
        }
        return fallback == null ? null : new Located(fallback, Source.COMMAND_LINE);
    }

    /** The value of the last {@code phost.config=} on the kernel command line, or null. */
    String kernelArgument() throws IOException {
        if (!Files.isReadable(procCmdline)) {
            return null;
        }
        String value = null;
        for (String word : List.of(Files.readString(procCmdline).trim().split("\\s+"))) {
            if (word.startsWith(KERNEL_ARG + "=")) {
                value = word.substring(KERNEL_ARG.length() + 1);
            }
        }
        return value;
    }
}
