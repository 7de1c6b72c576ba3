package io.phost.perf.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The native fio baseline of {@code phost bench vhost}: its command, the parse of its JSON, one real short run. */
class NativeFioTest {
    @Test
    void shouldRunFioWithIoUringAndODirectOnTheSameFileAtTheSameDepth() {
        List<String> c = NativeFio.command(Path.of("/d/img.raw"), true, 4096, 32, 2.0);
        assertTrue(c.containsAll(List.of("--filename=/d/img.raw", "--ioengine=io_uring", "--direct=1", "--rw=randwrite",
            "--bs=4096", "--iodepth=32", "--runtime=2000ms", "--output-format=json")), c.toString());
    }

    @Test
    void shouldRunFioPsyncAtQueueDepthOne() {
        List<String> c = NativeFio.command(Path.of("/d/img.raw"), false, 4096, 1, 2.0);
        assertTrue(c.containsAll(List.of("--ioengine=psync", "--direct=1", "--rw=randread", "--iodepth=1")), c.toString());
    }

    @Test
    void shouldTakeTheIopsOfTheDirectionRun() {
        String json = "{\"jobs\":[{\"read\":{\"io_bytes\":0,\"iops\":1234.5,\"x\":1},\"write\":{\"io_bytes\":9,\"iops\":77.25}}]}";
        assertEquals(1234.5, NativeFio.iops(json, false));
        assertEquals(77.25, NativeFio.iops(json, true));
        assertTrue(Double.isNaN(NativeFio.iops("fio: error", false)));
    }

    @Test
    void shouldMeasureARealFile() throws Exception {
        Path dir = Files.createTempDirectory(Path.of(System.getProperty("user.dir")).resolve("target"), "native-fio");
        Path img = dir.resolve("img.raw");
        try {
            Files.write(img, new byte[8 << 20]);
            assertTrue(NativeFio.run(img, false, 4096, 4, 0.3) > 0);
        } finally {
            Files.deleteIfExists(img);
            Files.deleteIfExists(dir);
        }
    }
}
