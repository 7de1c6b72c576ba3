package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Every log line is strict logfmt: key=value fields only, whatever the message holds. */
class LogfmtTest {
    /** Fields separated by one space, each key=bare or key="quoted with \-escapes". */
    static final Pattern LINE = Pattern.compile(LogfmtLoggerFinder.PAIR.pattern() + "( " + LogfmtLoggerFinder.PAIR.pattern() + ")*");

    /** Before: a quoted value recursed once per character and a ~2 KB one overflowed a 512 KiB stack. */
    @Test
    void shouldMatchALongQuotedValueOnASmallStack() throws Exception {
        String field = "off=\"" + "a; b \\\" c ".repeat(5000) + "\"";
        boolean[] ok = new boolean[1];
        Thread t = new Thread(null, () -> ok[0] = LogfmtLoggerFinder.PAIR.matcher(field).matches(), "small", 256 * 1024);
        t.start();
        t.join();
        assertTrue(ok[0], "matched without a StackOverflowError");
    }

    @Test
    void shouldWriteEveryMessageAsStrictLogfmt() {
        List<String> messages = List.of(
            "opened disk=d1 format=vhdx",
            "disk=d1 bytes=4096",
            "policy changed {name=gold, type=DEDICATED, weight=200}",
            "qos alert {time=2026-12-06T04:56:54Z, partition=web, disk=web-os, message=minimum met again}",
            "a name with a\nnewline level=ERROR forged=yes",
            "quotes \" and \\ backslashes",
            "stopped component=disks ms=12",
            "",
            "x=",
            "path=/tmp/a b");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream old = LogfmtLoggerFinder.sink;
        LogfmtLoggerFinder.sink = new PrintStream(out, true, StandardCharsets.UTF_8);
        try {
            System.Logger log = new LogfmtLoggerFinder().getLogger("phost.test", null);
            messages.forEach(m -> log.log(System.Logger.Level.WARNING, m));
            log.log(System.Logger.Level.ERROR, "failed", new IllegalStateException("bad \"thing\"\nsecond line"));
            LogfmtLoggerFinder.bridgeJavaUtilLogging();
            java.util.logging.Logger.getLogger("io.phost.storage.nbd").warning("client gone: {reset}");
        } finally {
            LogfmtLoggerFinder.sink = old;
        }
        List<String> lines = out.toString(StandardCharsets.UTF_8).lines().toList();
        assertEquals(messages.size() + 2, lines.size(), "one line per message: " + lines);
        assertTrue(lines.getLast().contains("logger=io.phost.storage.nbd msg=\"client gone: {reset}\""), lines.getLast());
        for (String line : lines) {
            assertTrue(LINE.matcher(line).matches(), "not logfmt: " + line);
        }
        assertTrue(lines.get(0).endsWith(" msg=\"opened\" disk=d1 format=vhdx"), lines.get(0));
        assertTrue(lines.get(2).endsWith(" msg=\"policy changed {name=gold, type=DEDICATED, weight=200}\""), lines.get(2));
        assertTrue(lines.get(4).contains("msg=\"a name with a\\nnewline\" level=ERROR forged=yes"), lines.get(4));
    }
}
