package io.phost.core.vm;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/**
 * A guest's serial console written to {@code FILE}, rotated to {@code FILE.1} when it passes
 * {@code maxBytes} (one old generation is kept, so at most twice {@code maxBytes} on disk per VM). A pump
 * thread copies QEMU's stdout (where the serial port is connected) into it as it arrives.
 */
public final class ConsoleLog {
    public static final long DEFAULT_MAX_BYTES = 1L << 20;

    private final Path file;
    private final long maxBytes;

    public ConsoleLog(Path file, long maxBytes) {
        if (maxBytes < 1024) {
            throw new IllegalArgumentException("console log rotation size must be at least 1KiB");
        }
        this.file = file;
        this.maxBytes = maxBytes;
    }

    public Path file() {
        return file;
    }

    /** Copies {@code in} into the log until end of stream, on a daemon thread named {@code console-NAME}. */
    public Thread pump(InputStream in, String name) {
        return pump(in, name, null, () -> { });
    }

    /**
     * As {@link #pump(InputStream, String)}, and runs {@code onMarker} once, on the pump thread, the first time
     * {@code marker} appears in the output (null: never).
     */
    public Thread pump(InputStream in, String name, String marker, Runnable onMarker) {
        return Thread.ofPlatform().daemon().name("console-" + name).start(() -> copy(in, marker, onMarker));
    }

    void copy(InputStream in) {
        copy(in, null, () -> { });
    }

    void copy(InputStream in, String marker, Runnable onMarker) {
        MarkerScanner scanner = marker == null ? null : new MarkerScanner(marker);
        byte[] buf = new byte[4096];
        OutputStream out = null;
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            out = open();
            long size = Files.size(file);
            int n;
            while ((n = in.read(buf)) >= 0) {
                if (scanner != null && scanner.feed(buf, n)) {
                    scanner = null;
                    onMarker.run();
                }
                out.write(buf, 0, n);
                out.flush();
                size += n;
                if (size >= maxBytes) {
                    out.close();
                    Files.move(file, file.resolveSibling(file.getFileName() + ".1"), StandardCopyOption.REPLACE_EXISTING);
                    out = open();
                    size = 0;
                }
            }
        } catch (IOException e) {
            // QEMU went away or the disk is full: the console is best effort, the VM's state is not
        } finally {
            if (out != null) {
                try {
                    out.close();
                } catch (IOException ignored) {
                    // already reported by the write that failed
                }
            }
        }
    }

    private OutputStream open() throws IOException {
        return Files.newOutputStream(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** The last {@code maxBytes} of the console (older generation first), as text. */
    public String tail(int maxBytes) throws IOException {
        byte[] current = last(file, maxBytes);
        byte[] older = current.length < maxBytes ? last(file.resolveSibling(file.getFileName() + ".1"), maxBytes - current.length)
            : new byte[0];
        byte[] all = new byte[older.length + current.length];
        System.arraycopy(older, 0, all, 0, older.length);
        System.arraycopy(current, 0, all, older.length, current.length);
        return new String(all, StandardCharsets.UTF_8);
    }

    /** The last {@code maxBytes} of file {@code p} (empty when it does not exist). */
    public static byte[] last(Path p, int maxBytes) throws IOException {
        if (!Files.exists(p)) {
            return new byte[0];
        }
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            long len = f.length();
            int n = (int) Math.min(len, maxBytes);
            byte[] b = new byte[n];
            f.seek(len - n);
            f.readFully(b);
            return b;
        }
    }

    /**
     * Finds a marker in a byte stream read in chunks: the last {@code marker.length - 1} bytes of the previous
     * chunk are kept, so a marker split across two reads is found too. Bytes are taken as ISO-8859-1 (the
     * marker is ASCII), so any byte sequence is safe.
     */
    static final class MarkerScanner {
        private final String marker;
        private String carry = "";

        MarkerScanner(String marker) {
            this.marker = marker;
        }

        /** True when the marker ends within {@code buf[0, n)} (or straddles it and the previous chunk). */
        boolean feed(byte[] buf, int n) {
            String window = carry + new String(buf, 0, n, StandardCharsets.ISO_8859_1);
            if (window.contains(marker)) {
                return true;
            }
            carry = window.substring(Math.max(0, window.length() - (marker.length() - 1)));
            return false;
        }
    }
}
