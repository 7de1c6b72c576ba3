package io.phost.appliance.run;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where a running host leaves its endpoint address ({@code endpoint}) so that a bare {@code phost status}
 * finds it: {@code /run/phost} for root, else {@code $XDG_RUNTIME_DIR/phost} or {@code /tmp/phost-USER}.
 */
public final class RuntimeDir {
    private RuntimeDir() {}

    public static Path path() {
        String override = System.getProperty("phost.runtime.dir");
        if (override != null) {
            return Path.of(override);
        }
        return path(System.getProperty("user.name"), Files.isDirectory(Path.of("/run")), System.getenv("XDG_RUNTIME_DIR"),
            System.getProperty("java.io.tmpdir"));
    }

    /**
     * The directory for {@code user}: {@code /run/phost} for root (when {@code /run} exists), else
     * {@code $XDG_RUNTIME_DIR/phost}, else {@code TMPDIR/phost-USER}. docs/management.md lists the same three.
     */
    static Path path(String user, boolean runExists, String xdgRuntimeDir, String tmpDir) {
        if ("root".equals(user) && runExists) {
            return Path.of("/run/phost");
        }
        if (xdgRuntimeDir != null && !xdgRuntimeDir.isBlank()) {
            return Path.of(xdgRuntimeDir, "phost");
        }
        return Path.of(tmpDir, "phost-" + user);
    }

    public static Path endpointFile() {
        return path().resolve("endpoint");
    }

    /** Records {@code address} (and the token file, if any) for local CLI calls; the directory is 0700. */
    public static void publish(String address, Path tokenFile) throws IOException {
        io.phost.core.sys.SocketFiles.createPrivateDirectories(path());
        Files.writeString(endpointFile(), address + "\n" + (tokenFile == null ? "" : tokenFile.toAbsolutePath() + "\n"));
    }

    /**
     * Removes the endpoint file if it still names {@code address}: a host removes only its own record, never
     * that of another host that started later (or that a refused start found serving).
     */
    public static void withdraw(String address) {
        try {
            Path f = endpointFile();
            if (Files.exists(f) && Files.readAllLines(f).stream().findFirst().orElse("").equals(address)) {
                Files.deleteIfExists(f);
            }
        } catch (IOException ignored) {
            // a stale file only makes `phost status` say the host is not running
        }
    }
}
