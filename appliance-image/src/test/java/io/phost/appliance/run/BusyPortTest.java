package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A port someone else holds stops `phost run` with a message naming the component and the address. */
class BusyPortTest {
    @TempDir
    Path dir;

    @Test
    void aBusyNbdPortNamesTheNbdExportAndItsAddress() throws Exception {
        try (ServerSocket taken = new ServerSocket()) {
            taken.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            int port = taken.getLocalPort();
            Path cfg = dir.resolve("appliance.toml");
            Files.writeString(cfg, """
                [host]
                name = "busy"
                data_dir = "%s"
                nbd = "tcp://127.0.0.1:%d"

                [[disk]]
                name = "scratch"
                path = "scratch.raw"
                format = "raw"
                nbd_export = true
                create = { type = "fixed", size = "1MiB" }
                """.formatted(dir.resolve("data"), port));
            try (PhostProcess p = PhostProcess.start(dir.resolve("rt"), "run", "--plain", "--config", cfg.toString(), "--duration", "20s")) {
                assertTrue(p.process().waitFor(60, TimeUnit.SECONDS), "phost run gave up on the busy port");
                String err = p.stderr();
                assertEquals(1, p.process().exitValue(), err);
                assertTrue(err.contains("nbd export") && err.contains("127.0.0.1:" + port) && err.contains("already in use"), err);
            }
        }
    }
}
