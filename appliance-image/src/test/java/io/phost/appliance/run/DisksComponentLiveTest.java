package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * A live config change adds and removes disks while /status, metrics and the LUNs read the open disks: the
 * readers see a whole map, never a half-changed one (they used to read the LinkedHashMap without a lock, so a
 * concurrent add or remove could throw ConcurrentModificationException into /status or lose a lookup).
 */
class DisksComponentLiveTest {
    @Test
    void shouldServeReadersWhileALiveChangeAddsAndRemovesDisks() throws Exception {
        Path dir = Files.createTempDirectory("phost-disks-live");
        try {
            StringBuilder toml = new StringBuilder("[host]\nname = \"h\"\ndata_dir = \"" + dir + "\"\n");
            for (int i = 0; i < 8; i++) {
                toml.append("[[disk]]\nname = \"d").append(i).append("\"\npath = \"d").append(i)
                    .append(".img\"\nformat = \"raw\"\ncreate = { type = \"dynamic\", size = \"1MiB\" }\n");
            }
            ApplianceConfig cfg = ConfigLoader.parse("t.toml", toml.toString());
            DisksComponent disks = DisksComponent.open(cfg);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread reader = Thread.ofPlatform().start(() -> {
                try {
                    while (!Thread.currentThread().isInterrupted()) {
                        disks.status();
                        disks.all();
                        assertNotNull(disks.get("d0"), "a disk nobody removes is always found");
                    }
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            long end = System.nanoTime() + 3_000_000_000L;
            int rounds = 0;
            while (System.nanoTime() < end && failure.get() == null) {
                for (int i = 1; i < 8; i++) {
                    disks.closeLive("d" + i);
                }
                for (int i = 1; i < 8; i++) {
                    disks.openLive(cfg.disks().get(i), cfg);
                }
                rounds++;
            }
            reader.interrupt();
            reader.join(10_000);
            disks.close();
            assertNull(failure.get(), () -> "a reader failed after " + failure.get());
            assertTrue(rounds > 0);
        } finally {
            io.phost.appliance.util.Trees.deleteTree(dir);
        }
    }
}
