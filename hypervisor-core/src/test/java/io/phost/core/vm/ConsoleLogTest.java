package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConsoleLogTest {
    @TempDir
    Path dir;

    @Test
    void shouldRotateToOneOlderGenerationAndTailAcrossBoth() throws Exception {
        Path file = dir.resolve("sub/vm.console.log");
        ConsoleLog log = new ConsoleLog(file, 1024);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 300; i++) {
            text.append(String.format("line %04d\n", i)); // 10 bytes a line, 3000 bytes
        }
        log.copy(new ByteArrayInputStream(text.toString().getBytes(StandardCharsets.US_ASCII)));
        Path older = dir.resolve("sub/vm.console.log.1");
        assertTrue(Files.exists(older));
        assertFalse(Files.exists(dir.resolve("sub/vm.console.log.2")), "only one old generation is kept");
        assertTrue(Files.size(file) < 1024 && Files.size(older) >= 1024, Files.size(file) + " / " + Files.size(older));
        String tail = log.tail(1500);
        assertEquals(1500, tail.length());
        assertTrue(text.toString().endsWith(tail), "the tail is the last 1500 bytes in order");
        assertEquals("", new ConsoleLog(dir.resolve("none.log"), 1024).tail(100));
    }

    @Test
    void shouldSeeTheReadyMarkerOnceEvenWhenItIsSplitAcrossReads() throws Exception {
        String marker = "PHOST-GUEST-READY";
        for (int split = 1; split < marker.length(); split++) {
            String console = "[    1.2] virtio_blk\r\nPHOST-GUEST-READ" + "\nnoise " + marker.substring(0, split);
            ConsoleLog.MarkerScanner s = new ConsoleLog.MarkerScanner(marker);
            byte[] a = console.getBytes(StandardCharsets.US_ASCII);
            assertFalse(s.feed(a, a.length), "a near miss and a prefix are not the marker");
            byte[] b = (marker.substring(split) + "\n").getBytes(StandardCharsets.US_ASCII);
            assertTrue(s.feed(b, b.length), "split after " + split + " bytes");
        }
        int[] seen = {0};
        ConsoleLog log = new ConsoleLog(dir.resolve("vm.console.log"), 1024);
        log.copy(new ByteArrayInputStream(("boot\n" + marker + "\n" + marker + "\n").getBytes(StandardCharsets.US_ASCII)),
            marker, () -> seen[0]++);
        assertEquals(1, seen[0], "reported once");
        assertTrue(log.tail(100).contains(marker), "and still logged");
    }

    @Test
    void shouldRefuseATinyRotationSize() {
        assertThrows(IllegalArgumentException.class, () -> new ConsoleLog(dir.resolve("x"), 10));
    }
}
