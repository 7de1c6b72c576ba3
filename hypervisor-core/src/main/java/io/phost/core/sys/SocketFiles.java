package io.phost.core.sys;

import java.io.IOException;
import java.net.ConnectException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Set;

/**
 * Unix socket files and private directories with explicit modes, whatever the process umask, and never at
 * the cost of a file that is not a socket.
 *
 * <pre>
 *   bindPrivate(path):
 *     path exists?  not a socket ──────────────▶ refuse (FileAlreadyExistsException): a disk image lives there
 *                   a socket someone answers ──▶ refuse: another server owns it
 *                   a stale socket ────────────▶ replaced below
 *     mkdtemp DIR (0700) beside path; bind DIR/s; chmod DIR/s 0600; rename DIR/s → path; rmdir DIR
 * </pre>
 * The socket is bound inside a 0700 directory and only then moved into place, so no other user can connect
 * to it in the moment between bind and chmod (bind creates the file with the umask's mode).
 */
public final class SocketFiles {
    /** S_IFMT and S_IFSOCK of {@code st_mode}. */
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;
    public static final Set<PosixFilePermission> OWNER_RW = PosixFilePermissions.fromString("rw-------");
    public static final Set<PosixFilePermission> OWNER_RWX = PosixFilePermissions.fromString("rwx------");

    private SocketFiles() {}

    /** True when {@code path} is a Unix socket (not following a symlink). */
    public static boolean isSocket(Path path) throws IOException {
        try {
            int mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
            return (mode & S_IFMT) == S_IFSOCK;
        } catch (NoSuchFileException e) {
            return false;
        }
    }

    /**
     * Refuses {@code path} when something other than a stale socket is there: a regular file, directory,
     * symlink or device (named in the message), or a socket a server answers on.
     */
    public static void checkFreeForSocket(Path path) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!isSocket(path)) {
            throw new FileAlreadyExistsException(path.toString(), null,
                "exists and is not a socket (" + kind(path) + "); refusing to replace it");
        }
        if (answers(path)) {
            throw new FileAlreadyExistsException(path.toString(), null, "another server is listening on this socket");
        }
    }

    /** Binds a stream server socket at {@code path}, mode 0600 (see the class comment for what is refused). */
    public static ServerSocketChannel bindPrivate(Path path) throws IOException {
        return bindPrivate(path, at -> {
            ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                ch.bind(UnixDomainSocketAddress.of(at));
            } catch (IOException | RuntimeException e) {
                ch.close();
                throw e;
            }
            return ch;
        });
    }

    /** Creates a listening socket with {@code bind} (given where to bind), then moves it to {@code path}, mode 0600. */
    public static <T extends AutoCloseable> T bindPrivate(Path path, Binder<T> bind) throws IOException {
        checkFreeForSocket(path);
        Path parent = path.toAbsolutePath().getParent();
        createPrivateDirectories(parent);
        Path tmpDir = Files.createTempDirectory(parent, ".sock-", PosixFilePermissions.asFileAttribute(OWNER_RWX));
        Path tmp = tmpDir.resolve("s");
        T socket = null;
        try {
            socket = bind.bind(tmp);
            Files.setPosixFilePermissions(tmp, OWNER_RW);
            checkFreeForSocket(path); // again, just before replacing: only ever a stale socket
            Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            return socket;
        } catch (IOException | RuntimeException e) {
            if (socket != null) {
                try {
                    socket.close();
                } catch (Exception suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            Files.deleteIfExists(tmp);
            throw e;
        } finally {
            Files.deleteIfExists(tmpDir);
        }
    }

    /** Binds a listening socket at a given path. */
    @FunctionalInterface
    public interface Binder<T> {
        T bind(Path at) throws IOException;
    }

    /** Removes {@code path} only if it is a socket (a server's own, at close); anything else is left alone. */
    public static void unlinkIfSocket(Path path) {
        try {
            if (isSocket(path)) {
                Files.deleteIfExists(path);
            }
        } catch (IOException ignored) {
            // gone already, or not ours to remove
        }
    }

    /**
     * Creates {@code dir} with mode 0700 whatever the umask (missing parents get the usual mode; an existing
     * directory keeps its mode: the administrator chose it).
     */
    public static void createPrivateDirectories(Path dir) throws IOException {
        Path abs = dir.toAbsolutePath();
        if (Files.isDirectory(abs)) {
            return;
        }
        if (abs.getParent() != null) {
            Files.createDirectories(abs.getParent());
        }
        try {
            Files.createDirectory(abs, PosixFilePermissions.asFileAttribute(OWNER_RWX));
            Files.setPosixFilePermissions(abs, OWNER_RWX); // createDirectory's mode is filtered by the umask
        } catch (FileAlreadyExistsException e) {
            if (!Files.isDirectory(abs)) {
                throw e;
            }
        }
    }

    /**
     * Whether a server listens on the socket at {@code path}: only ECONNREFUSED means stale. Any other
     * failure (e.g. EPROTOTYPE from a SOCK_SEQPACKET listener) counts as alive, so it is never replaced.
     */
    private static boolean answers(Path path) {
        try (SocketChannel c = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
            return true;
        } catch (ConnectException e) {
            return false;
        } catch (IOException e) {
            return true;
        }
    }

    private static String kind(Path path) {
        if (Files.isSymbolicLink(path)) {
            return "a symbolic link";
        }
        if (Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)) {
            return "a directory";
        }
        if (Files.isRegularFile(path, LinkOption.NOFOLLOW_LINKS)) {
            return "a regular file";
        }
        return "a device or pipe";
    }
}
