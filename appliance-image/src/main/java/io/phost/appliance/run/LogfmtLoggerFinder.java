package io.phost.appliance.run;

import java.io.PrintStream;
import java.text.MessageFormat;
import java.time.Instant;
import java.util.ResourceBundle;

/**
 * Routes every module's {@link System.Logger} to structured logfmt lines on stderr:
 * {@code ts=2026-11-22T07:40:00.123Z level=INFO logger=phost.run msg="started" disk=d1}. Modules stay
 * free of a logging dependency; the appliance picks the format. Level from {@code -Dphost.log.level}.
 */
public final class LogfmtLoggerFinder extends System.LoggerFinder {
    private static final System.Logger.Level THRESHOLD =
        System.Logger.Level.valueOf(System.getProperty("phost.log.level", "INFO").toUpperCase());

    /** Where lines go; the live status view swaps in a buffer while it owns the terminal. */
    static volatile PrintStream sink = System.err;

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
                sb.append(" error=\"").append(thrown.toString().replace("\"", "'")).append('"');
            }
            sink.println(sb);
        }

        @Override
        public void log(Level level, ResourceBundle bundle, String format, Object... params) {
            log(level, bundle, params == null || params.length == 0 ? format : MessageFormat.format(format, params), (Throwable) null);
        }

        /** A message that already reads as key=value pairs is kept; free text is quoted as msg="...". */
        private static String format(String msg) {
            if (msg == null) {
                return "msg=\"\"";
            }
            int eq = msg.indexOf('=');
            int sp = msg.indexOf(' ');
            if (eq > 0 && (sp < 0 || sp > eq)) {
                return msg;
            }
            if (eq > 0) {
                // "free text key=value ..." -> msg="free text" key=value ...
                int lastSpaceBeforeEq = msg.lastIndexOf(' ', eq);
                return "msg=\"" + msg.substring(0, lastSpaceBeforeEq).replace("\"", "'") + "\"" + msg.substring(lastSpaceBeforeEq);
            }
            return "msg=\"" + msg.replace("\"", "'") + "\"";
        }
    }
}
