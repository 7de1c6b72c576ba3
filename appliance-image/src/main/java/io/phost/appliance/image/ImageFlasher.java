package io.phost.appliance.image;

import io.phost.appliance.UserException;
import io.phost.appliance.config.ConfigError;
import io.phost.appliance.config.ConfigException;
import io.phost.appliance.config.ConfigLoader;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Writes the appliance image onto a disk or into a file and puts the user's {@code appliance.toml} (and
 * any extra files, e.g. a management token) onto its APPLCFG partition, in one step:
 * <ol>
 *   <li>validate the config as {@code phost config validate} does (every error as FILE:LINE:COL) before
 *       touching the target;</li>
 *   <li>refuse a mounted or system disk unless forced ({@link DiskGuard});</li>
 *   <li>copy the image (zero runs are skipped on file targets, which stay sparse), then fsync;</li>
 *   <li>find APPLCFG in the written GPT and replace appliance.toml in that FAT file system with
 *       mtools ({@code mcopy -i TARGET@@OFFSET}), then read it back and compare.</li>
 * </ol>
 */
public final class ImageFlasher {
    public static final String CONFIG_PARTITION = "APPLCFG";
    static final int CHUNK = 1 << 20;

    private final DiskGuard guard;

    public ImageFlasher(DiskGuard guard) {
        this.guard = guard;
    }

    /** What was written, for the command's summary line. */
    public record Result(Path target, long imageBytes, GptTable.Partition configPartition) {}

    public Result flash(Path image, Path config, List<Path> extraFiles, Path target, boolean force) throws IOException {
        List<String> errors = checkConfig(config);
        if (!errors.isEmpty()) {
            errors.forEach(System.err::println);
            throw new UserException(config + " has " + errors.size() + " error(s); nothing was written", 2);
        }
        for (Path f : extraFiles) {
            if (!Files.isRegularFile(f)) {
                throw new UserException("--add " + f + ": no such file", 2);
            }
        }
        if (!Files.isRegularFile(image)) {
            throw new UserException("image " + image + " not found (build it: ./mvnw -B -Pimage -pl appliance-image -am package, or pass --image)", 2);
        }
        Path resolved = Files.exists(target) ? target.toRealPath() : target.toAbsolutePath();
        boolean device = Files.exists(resolved) && !Files.isRegularFile(resolved, LinkOption.NOFOLLOW_LINKS)
            && !Files.isDirectory(resolved);
        if (Files.isDirectory(resolved)) {
            throw new UserException(target + " is a directory; name a disk device or an image file", 2);
        }
        String refusal = guard.refusal(resolved);
        if (refusal != null && !force) {
            throw new UserException("refusing to write: " + refusal + "; --force overrides", 3);
        }
        long imageBytes = Files.size(image);
        GptTable.Partition cfgPart;
        try (FileChannel in = FileChannel.open(image, StandardOpenOption.READ)) {
            cfgPart = GptTable.read(in).byName(CONFIG_PARTITION);
        } catch (GptException e) {
            throw new UserException("image " + image + " has no usable " + CONFIG_PARTITION + " partition: " + e.getMessage(), 2, e);
        }
        if (device) {
            long capacity = deviceBytes(resolved);
            if (capacity > 0 && capacity < imageBytes) {
                throw new UserException(target + " holds " + capacity + " bytes; the image needs " + imageBytes, 2);
            }
        }
        copy(image, resolved, device);
        writeConfig(resolved, cfgPart, config, extraFiles);
        return new Result(resolved, imageBytes, cfgPart);
    }

    /**
     * Checks the config with the same loader {@code phost run} uses ({@code phost config validate}): every
     * error as {@code FILE:LINE:COL: key.path: message}; empty when valid.
     */
    public static List<String> checkConfig(Path config) {
        if (!Files.isRegularFile(config)) {
            throw new UserException("config " + config + " not found", 2);
        }
        try {
            ConfigLoader.load(config);
            return List.of();
        } catch (ConfigException e) {
            List<String> out = new ArrayList<>();
            for (ConfigError error : e.errors()) {
                out.add(error.toString());
            }
            return out;
        }
    }

    private static void copy(Path image, Path target, boolean device) throws IOException {
        ByteBuffer buf = ByteBuffer.allocateDirect(CHUNK);
        if (!device) {
            try (RandomAccessFile raf = new RandomAccessFile(target.toFile(), "rw")) {
                raf.setLength(0); // a fresh file: skipped zero runs stay holes
            }
        }
        try (FileChannel in = FileChannel.open(image, StandardOpenOption.READ);
             FileChannel out = FileChannel.open(target, StandardOpenOption.WRITE,
                 device ? StandardOpenOption.WRITE : StandardOpenOption.CREATE)) {
            long pos = 0;
            long size = in.size();
            while (pos < size) {
                buf.clear();
                int n = 0;
                while (buf.hasRemaining()) {
                    int r = in.read(buf, pos + n);
                    if (r < 0) {
                        break;
                    }
                    n += r;
                }
                buf.flip();
                if (device || !allZero(buf)) {
                    long at = pos;
                    while (buf.hasRemaining()) {
                        at += out.write(buf, at);
                    }
                }
                pos += n;
                if (n == 0) {
                    break;
                }
            }
            if (!device) {
                try (RandomAccessFile raf = new RandomAccessFile(target.toFile(), "rw")) {
                    raf.setLength(size);
                }
            }
            out.force(true);
        }
    }

    private static boolean allZero(ByteBuffer b) {
        for (int i = b.position(); i + 8 <= b.limit(); i += 8) {
            if (b.getLong(i) != 0) {
                return false;
            }
        }
        for (int i = b.limit() & ~7; i < b.limit(); i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }

    private static void writeConfig(Path target, GptTable.Partition part, Path config, List<Path> extra) throws IOException {
        String fs = target + "@@" + part.offset();
        mtools("mcopy", "-o", "-i", fs, config.toString(), "::/appliance.toml");
        for (Path f : extra) {
            mtools("mcopy", "-o", "-i", fs, f.toString(), "::/" + f.getFileName());
        }
        String back = mtools("mtype", "-i", fs, "::/appliance.toml");
        String want = Files.readString(config, StandardCharsets.UTF_8);
        if (!back.equals(want)) {
            throw new UserException("read-back of appliance.toml from " + CONFIG_PARTITION + " differs from " + config, 1);
        }
    }

    /** Reads a file from the APPLCFG partition of an image file or disk (mtools). */
    public static String readConfigFile(Path target, String name) throws IOException {
        GptTable.Partition part;
        try (FileChannel ch = FileChannel.open(target, StandardOpenOption.READ)) {
            part = GptTable.read(ch).byName(CONFIG_PARTITION);
        } catch (GptException e) {
            throw new IOException(target + ": " + e.getMessage(), e);
        }
        return mtools("mtype", "-i", target + "@@" + part.offset(), "::/" + name);
    }

    static String mtools(String... cmd) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(false);
        pb.environment().put("MTOOLS_SKIP_CHECK", "1");
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new UserException(cmd[0] + " not found: install mtools (apt-get install mtools)", 2, e);
        }
        try {
            byte[] out = p.getInputStream().readAllBytes();
            String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8).strip();
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new UserException(String.join(" ", cmd) + " failed: " + err, 1);
            }
            return new String(out, StandardCharsets.UTF_8);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
            throw new IOException("interrupted while running " + cmd[0], e);
        }
    }

    static long deviceBytes(Path dev) {
        try {
            Path size = Path.of("/sys/class/block", dev.getFileName().toString(), "size");
            return Long.parseLong(Files.readString(size).strip()) * 512;
        } catch (IOException | NumberFormatException e) {
            return -1; // unknown: the write itself fails if the device is too small
        }
    }
}
