package io.phost.perf.vhost;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.phost.core.sys.UnixSocket;
import io.phost.core.vhost.VhostUserFrontend;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The bench's driver waits for a peer that has bound its socket but does not listen yet: the full
 * {@code phost bench vhost} run of 20:42 UTC stopped on qemu-storage-daemon's "Connection refused".
 */
class VhostBenchConnectTest {
    @Test
    @Timeout(30)
    void shouldRetryARefusedConnectionUntilThePeerListens() throws Exception {
        Path dir = Files.createTempDirectory("phost-bench-connect");
        Path sock = dir.resolve("peer.sock");
        UnixSocket.listenStream(sock, 1).close(); // a socket file nobody listens on: connect is refused
        assertThrows(RuntimeException.class, () -> VhostUserFrontend.connect(sock, 1 << 20), "refused at first");
        UnixSocket[] later = new UnixSocket[1];
        Thread peer = Thread.ofPlatform().start(() -> {
            try {
                Thread.sleep(300);
                Files.delete(sock);
                later[0] = UnixSocket.listenStream(sock, 1);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        try (VhostUserFrontend f = VhostBenchSuite.connect(sock, 1 << 20)) {
            assertNotNull(f);
        } finally {
            peer.join();
            if (later[0] != null) {
                later[0].close();
            }
            Files.deleteIfExists(sock);
            Files.deleteIfExists(dir);
        }
    }
}
