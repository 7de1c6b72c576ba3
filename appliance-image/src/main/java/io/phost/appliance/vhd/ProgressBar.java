package io.phost.appliance.vhd;

import io.phost.vhdx.ops.Progress;

import java.io.PrintStream;

/**
 * A one-line progress bar on stderr, at most 10 times a second: drawn when stderr's console is a terminal,
 * always with {@code -p}, never with {@code -q}. The fraction is work done (bytes to copy), not position.
 */
final class ProgressBar implements Progress, AutoCloseable {
    private final PrintStream out;
    private final boolean enabled;
    private final String label;
    private long lastDraw;
    private boolean drawn;

    ProgressBar(String label) {
        this(label, ProgressOptions.DEFAULT);
    }

    ProgressBar(String label, ProgressOptions options) {
        this.out = System.err;
        java.io.Console c = System.console();
        boolean terminal = c != null && c.isTerminal(); // JDK 22+: a Console exists even when redirected
        this.enabled = !options.quiet && (options.progress || terminal);
        this.label = label;
    }

    @Override
    public void update(long done, long total) {
        if (!enabled || total <= 0) {
            return;
        }
        long now = System.nanoTime();
        if (done < total && now - lastDraw < 100_000_000L) {
            return;
        }
        lastDraw = now;
        int width = 40;
        int filled = (int) Math.min(width, done * width / total);
        out.print("\r" + label + " [" + "#".repeat(filled) + " ".repeat(width - filled) + "] "
            + String.format("%5.1f%%", 100.0 * done / total));
        out.flush();
        drawn = true;
    }

    @Override
    public void close() {
        if (drawn) {
            out.println();
        }
    }
}
