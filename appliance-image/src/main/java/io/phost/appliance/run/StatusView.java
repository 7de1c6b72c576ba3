package io.phost.appliance.run;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.function.Supplier;

/**
 * The live view of {@code phost run} on a terminal: redraws the status once a second (partitions, disks
 * with IOPS, switches with packets) and shows the latest log lines under it. Off a terminal, nothing is
 * drawn and log lines go straight to stderr.
 */
public final class StatusView implements AutoCloseable {
    private static final int LOG_LINES = 8;

    private final PrintStream terminal;
    private final Supplier<String> render;
    private final LineRing logLines = new LineRing(200);
    private final Thread thread;
    private volatile boolean running = true;

    private StatusView(PrintStream terminal, Supplier<String> render) {
        this.terminal = terminal;
        this.render = render;
        LogfmtLoggerFinder.sink = new PrintStream(logLines, true, StandardCharsets.UTF_8);
        thread = Thread.ofPlatform().daemon().name("status-view").start(this::loop);
    }

    /** Starts the view when stdout is a terminal; otherwise returns null and logging stays plain. */
    public static StatusView startIfTerminal(Supplier<String> render) {
        if (System.console() == null || !System.console().isTerminal() || "dumb".equals(System.getenv("TERM"))) {
            return null;
        }
        return new StatusView(System.out, render);
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

    private void draw() {
        String[] logs = logLines.last(LOG_LINES);
        StringBuilder sb = new StringBuilder("\033[H\033[2J");
        sb.append("\033[1mphost run\033[0m  (Ctrl-C stops)\n\n").append(render.get()).append("\n\033[2mlog:\033[0m\n");
        for (String line : logs) {
            sb.append("  ").append(line).append('\n');
        }
        terminal.print(sb);
        terminal.flush();
    }

    @Override
    public void close() {
        running = false;
        thread.interrupt();
        LogfmtLoggerFinder.sink = System.err;
        for (String line : logLines.last(LOG_LINES)) {
            System.err.println(line);
        }
    }

    /** Keeps the last {@code capacity} lines written to it, so a view left open for days stays small. */
    static final class LineRing extends OutputStream {
        private final int capacity;
        private final ArrayDeque<String> lines = new ArrayDeque<>();
        private final java.io.ByteArrayOutputStream current = new java.io.ByteArrayOutputStream();

        LineRing(int capacity) {
            this.capacity = capacity;
        }

        @Override
        public synchronized void write(int b) {
            if (b == '\n') {
                lines.addLast(current.toString(StandardCharsets.UTF_8));
                current.reset();
                if (lines.size() > capacity) {
                    lines.removeFirst();
                }
            } else {
                current.write(b);
            }
        }

        synchronized String[] last(int n) {
            return lines.stream().skip(Math.max(0, lines.size() - n)).toArray(String[]::new);
        }
    }
}
