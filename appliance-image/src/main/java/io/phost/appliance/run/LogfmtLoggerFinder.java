package io.phost.appliance.run;

import java.io.PrintStream;
import java.text.MessageFormat;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.ResourceBundle;
import java.util.regex.Pattern;

/**
 * Routes every module's {@link System.Logger} to structured logfmt lines on stderr:
 * {@code ts=2026-11-22T07:40:00.123Z level=INFO logger=phost.run msg="started" disk=d1}. Modules stay
 * free of a logging dependency; the appliance picks the format. Level from {@code -Dphost.log.level}.
 */
public final class LogfmtLoggerFinder extends System.LoggerFinder {
    private static final System.Logger.Level THRESHOLD =
        System.Logger.Level.valueOf(System.getProperty("phost.log.level", "INFO").toUpperCase());

    /** Where lines go; the live status view swaps in a discarding stream while it owns the terminal. */
    static volatile PrintStream sink = System.err;

    /**
     * The last lines logged, whatever the sink: the live view's log pane shows them, start-up lines (the NBD
     * URI, the management address) included, and prints the ones it hid when it gives the terminal back.
     */
    static final StatusView.LineRing RECENT = new StatusView.LineRing(500);

    @Override
    public System.Logger getLogger(String name, Module module) {
        return new Logfmt(name);
    }

    private record Logfmt(String name) implements System.Logger {
        @Override
        public String getName() {
            return name;
        }

        @Override
        public boolean isLoggable(Level level) {
            return level != Level.OFF && level.getSeverity() >= THRESHOLD.getSeverity();
        }

        @Override
        public void log(Level level, ResourceBundle bundle, String msg, Throwable thrown) {
            if (!isLoggable(level)) {
                return;
            }
            StringBuilder sb = new StringBuilder(128).append("ts=").append(Instant.now())
                .append(" level=").append(level.getName()).append(" logger=").append(name).append(' ');
            sb.append(format(msg));
            if (thrown != null) {
                sb.append(" error=").append(quote(thrown.toString()));
            }
            RECENT.add(sb.toString());
            sink.println(sb);
        }

        @Override
        public void log(Level level, ResourceBundle bundle, String format, Object... params) {
            log(level, bundle, params == null || params.length == 0 ? format : MessageFormat.format(format, params), (Throwable) null);
        }

        /**
         * Makes any message one valid logfmt fragment. Trailing {@code key=value} pairs (key
         * {@code [A-Za-z_][A-Za-z0-9_.]*}, value bare or double-quoted) are kept as fields; the free text before
         * them becomes {@code msg="..."}; quotes, backslashes and line breaks are escaped, so a value cannot
         * forge a second line or field.
         */
        static String format(String msg) {
            if (msg == null || msg.isEmpty()) {
                return "msg=\"\"";
            }
            List<int[]> tokens = tokens(msg);
            int firstField = tokens.size();
            while (firstField > 0 && PAIR.matcher(msg.substring(tokens.get(firstField - 1)[0], tokens.get(firstField - 1)[1])).matches()) {
                firstField--;
            }
            if (tokens.isEmpty() || firstField == tokens.size()
                || msg.substring(0, tokens.get(firstField)[0]).indexOf('=') >= 0) {
                return "msg=" + quote(msg); // no fields, or text that is not "words then fields" ({a=b, c=d})
            }
            String fields = msg.substring(tokens.get(firstField)[0]);
            return firstField == 0 ? fields : "msg=" + quote(msg.substring(0, tokens.get(firstField)[0]).strip()) + " " + fields;
        }

        /** Start and end of each space-separated token; a double-quoted part (with backslash escapes) is one. */
        private static List<int[]> tokens(String s) {
            List<int[]> out = new ArrayList<>();
            int i = 0;
            while (i < s.length()) {
                while (i < s.length() && s.charAt(i) == ' ') {
                    i++;
                }
                if (i >= s.length()) {
                    break;
                }
                int start = i;
                boolean quoted = false;
                while (i < s.length() && (quoted || s.charAt(i) != ' ')) {
                    char c = s.charAt(i);
                    if (c == '\\' && quoted) {
                        i++;
                    } else if (c == '"') {
                        quoted = !quoted;
                    }
                    i++;
                }
                out.add(new int[] {start, Math.min(i, s.length())});
            }
            return out;
        }

        static String quote(String s) {
            StringBuilder b = new StringBuilder(s.length() + 2).append('"');
            for (char c : s.toCharArray()) {
                switch (c) {
                    case '"' -> b.append("\\\"");
                    case '\\' -> b.append("\\\\");
                    case '\n' -> b.append("\\n");
                    case '\r' -> b.append("\\r");
                    case '\t' -> b.append("\\t");
                    default -> b.append(c < 0x20 ? ' ' : c);
                }
            }
            return b.append('"').toString();
        }
    }

    /**
     * Sends java.util.logging records (a library, or a module that still uses it) to the same logfmt lines,
     * instead of JUL's two-line default format on stderr.
     */
    public static void bridgeJavaUtilLogging() {
        java.util.logging.Logger root = java.util.logging.LogManager.getLogManager().getLogger("");
        for (java.util.logging.Handler h : root.getHandlers()) {
            root.removeHandler(h);
        }
        root.addHandler(new java.util.logging.Handler() {
            @Override
            public void publish(java.util.logging.LogRecord r) {
                int v = r.getLevel().intValue();
                System.Logger.Level level = v >= 1000 ? System.Logger.Level.ERROR : v >= 900 ? System.Logger.Level.WARNING
                    : v >= 800 ? System.Logger.Level.INFO : v >= 500 ? System.Logger.Level.DEBUG : System.Logger.Level.TRACE;
                String msg = r.getMessage();
                if (msg != null && r.getParameters() != null && r.getParameters().length > 0) {
                    msg = MessageFormat.format(msg, r.getParameters());
                }
                System.getLogger(r.getLoggerName() == null ? "jul" : r.getLoggerName()).log(level, msg, r.getThrown());
            }

            @Override
            public void flush() {
            }

            @Override
            public void close() {
            }
        });
    }

    /** {@code msg} as the fields of a log line (after ts, level and logger). */
    static String fields(String msg) {
        return Logfmt.format(msg);
    }

    /** {@code s} as a double-quoted logfmt value. */
    public static String quote(String s) {
        return Logfmt.quote(s);
    }

    /**
     * One logfmt field: a bare or double-quoted value. Possessive runs: a long quoted value (the demo's notice
     * without root) must not recurse once per character, which overflowed the main thread's stack.
     */
    static final Pattern PAIR = Pattern.compile("[A-Za-z_][A-Za-z0-9_.]*=([^\\s\"=]*+|\"(?:[^\"\\\\\\n]++|\\\\.)*+\")");
}
