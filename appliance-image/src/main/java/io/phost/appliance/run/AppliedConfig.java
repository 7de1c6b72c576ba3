package io.phost.appliance.run;

import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Instant;

/**
 * The config a running host has taken on through live changes ({@code phost apply}, {@code phost qos set-policy}),
 * saved as {@code DATA_DIR/applied.toml} so a restart comes back to it. Written atomically: a temporary file,
 * fsync, rename, fsync of the directory; a crash leaves the old file or the new one, never half of one.
 *
 * <p>{@code phost run --config FILE} runs the applied file instead of FILE while the applied file is newer (the
 * live changes are the latest word); once FILE is edited after them, FILE wins and the log says so.
 */
public final class AppliedConfig {
    private static final Logger LOG = System.getLogger("phost.config");
    /** The first line of a saved file: it says where the file came from (stripped when the text is saved again). */
    static final String HEADER = "# phost: applied live";

    private AppliedConfig() {
    }

    public static Path path(Path dataDir) {
        return dataDir.resolve("applied.toml");
    }

    /** Saves {@code text} (a valid config) atomically as the applied config of {@code dataDir}. */
    static void save(Path dataDir, String text, String from) throws IOException {
        Path target = path(dataDir);
        Path tmp = dataDir.resolve(".applied.toml.tmp");
        String body = HEADER + " at " + Instant.now() + " from " + from.replaceAll("[\\r\\n]", "?")
            + "; phost run --config FILE runs this file while it is newer than FILE\n" + withoutHeader(text);
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING)) {
            var buf = java.nio.ByteBuffer.wrap(body.getBytes(StandardCharsets.UTF_8));
            while (buf.hasRemaining()) {
                ch.write(buf);
            }
            ch.force(true);
        }
        Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        try (FileChannel dir = FileChannel.open(dataDir, StandardOpenOption.READ)) {
            dir.force(true); // the rename itself survives a crash
        } catch (IOException e) {
            LOG.log(Level.DEBUG, "directory fsync not supported: " + e.getMessage());
        }
    }

    /** {@code text} without a header line {@link #save} added. */
    static String withoutHeader(String text) {
        return text.startsWith(HEADER) ? text.substring(text.indexOf('\n') + 1) : text;
    }

    /**
     * Which file {@code phost run --config config} should run: the applied config of {@code dataDir} when it is
     * newer than {@code config}, else {@code config}.
     */
    public static Path choose(Path config, Path dataDir) {
        Path applied = path(dataDir);
        try {
            if (!Files.isRegularFile(applied)) {
                return config;
            }
            var appliedAt = Files.getLastModifiedTime(applied);
            if (appliedAt.compareTo(Files.getLastModifiedTime(config)) > 0) {
                LOG.log(Level.INFO, "running the config applied live config=" + applied + " changed=" + appliedAt
                    + " instead_of=" + config + " reason=\"changes applied to the running host after " + config
                    + " was last written (edit " + config + " to run it instead)\"");
                return applied;
            }
            LOG.log(Level.WARNING, "live changes superseded config=" + config + " applied=" + applied + " applied_at="
                + appliedAt + " reason=\"" + config + " was written after the last live change; it is run as written\"");
        } catch (IOException e) {
            LOG.log(Level.WARNING, "cannot compare with the applied config " + applied + ": " + e.getMessage());
        }
        return config;
    }
}
