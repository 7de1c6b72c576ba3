package io.phost.vhdx.ops;

import io.phost.core.sys.PosixFile;


import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Where an operation builds a new image: a hidden temporary file beside the target, published under the
 * target's name only when complete. A crash, a kill or a failure leaves the target as it was (absent or the
 * old image) and at worst a hidden {@code .NAME.phost-tmp-…} file, never a clean-looking partial image.
 * <pre>
 *   prepare ──▶ build into tmp ──▶ publish: link(tmp, dst) + unlink(tmp)   (dst must not exist)
 *                               │            rename(tmp, dst)               (--force: replaces dst atomically)
 *                               └▶ abandon: unlink(tmp)                     (only the file we created)
 * </pre>
 * An existing target is replaced only when asked ({@code force}), never when it is one of the inputs, and
 * never while another process holds its flock (a running phost, a merge).
 */
public final class NewImage {
    private final Path target;
    private final Path tmp;
    private final boolean replace;

    private NewImage(Path target, Path tmp, boolean replace) {
        this.target = target;
        this.tmp = tmp;
        this.replace = replace;
    }

    /**
     * Checks that {@code target} may be written and picks the temporary path.
     *
     * @param inputs every file the operation reads (a source and its whole parent chain)
     * @throws FileAlreadyExistsException when the target exists and {@code force} is false
     * @throws IllegalArgumentException   when the target is one of the inputs
     * @throws IOException                when the target is open elsewhere (flock held)
     */
    public static NewImage prepare(Path target, boolean force, List<Path> inputs) throws IOException {
        for (Path in : inputs) {
            if (Files.exists(target) && Files.exists(in) && Files.isSameFile(in, target)) {
                throw new IllegalArgumentException(target + " is " + (in.equals(inputs.getFirst()) ? "the source"
                    : "part of the source's parent chain (" + in + ")") + "; writing it would destroy the input");
            }
        }
        boolean exists = Files.exists(target, LinkOption.NOFOLLOW_LINKS);
        if (exists && !force) {
            throw new FileAlreadyExistsException(target.toString(), null, "already exists (pass --force to replace it)");
        }
        if (exists) {
            if (!Files.isRegularFile(target, LinkOption.NOFOLLOW_LINKS)) {
                throw new IllegalArgumentException(target + " is not a regular file; refusing to replace it");
            }
            try (PosixFile f = PosixFile.open(target, true)) {
                if (!f.tryLock(true)) {
                    throw new IOException(target + " is in use (open by another phost process); not replacing it");
                }
            }
        }
        Path abs = target.toAbsolutePath();
        String name = "." + abs.getFileName() + ".phost-tmp-" + ProcessHandle.current().pid() + "-"
            + Long.toHexString(ThreadLocalRandom.current().nextLong() >>> 16);
        return new NewImage(target, abs.resolveSibling(name), exists);
    }

    /** The file to build the image in (not created yet). */
    public Path tmp() {
        return tmp;
    }

    public Path target() {
        return target;
    }

    /** Makes the finished temporary file the target, atomically, and makes the rename durable. */
    public void publish() throws IOException {
        if (replace) {
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } else {
            try {
                Files.createLink(target, tmp); // fails if the target appeared meanwhile: never replaced
                Files.delete(tmp);
            } catch (FileAlreadyExistsException e) {
                throw e;
            } catch (UnsupportedOperationException | FileSystemException e) {
                if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
                    throw new FileAlreadyExistsException(target.toString(), null, "appeared while it was being written");
                }
                Files.move(tmp, target); // no hard links here (some FUSE file systems): check-then-rename
            }
        }
        syncDirectory(target);
    }

    /** Deletes the temporary file (ours alone: the target is never touched); a failure is added to {@code cause}. */
    public void abandon(Throwable cause) {
        try {
            Files.deleteIfExists(tmp);
        } catch (IOException e) {
            if (cause != null) {
                cause.addSuppressed(e);
            }
        }
    }

    static void syncDirectory(Path file) {
        try (PosixFile d = PosixFile.open(file.toAbsolutePath().getParent(), true)) {
            d.sync();
        } catch (IOException ignored) {
            // fsync on a directory is refused by some file systems
        }
    }
}
