package io.phost.appliance.run;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.function.Supplier;

/**
 * The live view of {@code phost run} on a terminal: on the terminal's alternate screen (so nothing is left in
 * the scrollback), redraws the status once a second (partitions, disks with IOPS, switches with packets) and
 * shows the latest log lines under it, start-up lines included. When it closes it restores the normal screen
 * and prints the log lines it kept off it, so the scrollback holds the log and not the frames. Off a
 * terminal, nothing is drawn and log lines go straight to stderr.
 */
public final class StatusView implements AutoCloseable {
    private static final int LOG_LINES = 8;

    private final PrintStream terminal;
    private final String header;
    private final Supplier<String> render;
    /** Enter the alternate screen, hide the cursor; and the reverse. */
    static final String ENTER = "\033[?1049h\033[?25l";
    static final String LEAVE = "\033[?25h\033[?1049l";

    private final LineRing logLines = LogfmtLoggerFinder.RECENT;
    private final long firstHidden;
    private final Thread thread;
    private volatile boolean running = true;

    private StatusView(PrintStream terminal, String header, Supplier<String> render) {
        this.terminal = terminal;
        this.header = header;
        this.render = render;
        firstHidden = logLines.total();
        LogfmtLoggerFinder.sink = new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8);
        terminal.print(ENTER);
        terminal.flush();
        thread = Thread.ofPlatform().daemon().name("status-view").start(this::loop);
    }

    /** Starts the view when stdout is a terminal; otherwise returns null and logging stays plain. */
    public static StatusView startIfTerminal(String header, Supplier<String> render) {
        if (System.console() == null || !System.console().isTerminal() || "dumb".equals(System.getenv("TERM"))) {
            return null;
        }
        return new StatusView(System.out, header, render);
    }

    private void loop() {
        while (running) {
            draw();
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private synchronized void draw() {
        if (!running) {
            return;
        }
        terminal.print(frame(header, render.get(), logLines.last(LOG_LINES)));
        terminal.flush();
    }

    /** One frame: cursor home, each line cleared to its end, the rest of the screen cleared (no flicker, no scroll). */
    static String frame(String header, String status, String[] logs) {
        StringBuilder sb = new StringBuilder("\033[H");
        sb.append("\033[1mphost run\033[0m  (Ctrl-C stops)\033[K\n").append(header).append("\033[K\n\033[K\n");
        for (String line : status.split("\n", -1)) {
            sb.append(line).append("\033[K\n");
        }
        sb.append("\033[2mlog (last ").append(LOG_LINES).append(" lines):\033[0m\033[K\n");
        for (String line : logs) {
            sb.append("  ").append(line).append("\033[K\n");
        }
        return sb.append("\033[J").toString();
    }

    @Override
    public void close() {
        synchronized (this) {
            running = false;
            thread.interrupt();
            terminal.print(LEAVE);
            terminal.flush();
            LogfmtLoggerFinder.sink = System.err;
        }
        for (String line : logLines.since(firstHidden)) {
            System.err.println(line);
        }
    }

    /** Keeps the last {@code capacity} lines added, so a view left open for days stays small. */
    static final class LineRing {
        private final int capacity;
        private final ArrayDeque<String> lines = new ArrayDeque<>();
        private long total;

        LineRing(int capacity) {
            this.capacity = capacity;
        }

        synchronized void add(String line) {
            lines.addLast(line);
            total++;
            if (lines.size() > capacity) {
                lines.removeFirst();
            }
        }

        /** Lines ever added. */
        synchronized long total() {
            return total;
        }

        synchronized String[] last(int n) {
            return lines.stream().skip(Math.max(0, lines.size() - n)).toArray(String[]::new);
        }

        /** The lines added since {@link #total()} was {@code mark}, as many as are still kept. */
        synchronized String[] since(long mark) {
            return last((int) Math.min(lines.size(), total - mark));
        }
    }
}
