package io.phost.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/**
 * A TCP transfer of a known, seeded-random file from one namespace to another with busybox {@code nc}, judged by
 * its bytes (size and SHA-256 at the receiver), never by its speed: a test that must hold on a loaded CI machine
 * asserts that the data crossed whole and in order, and leaves throughput to {@code phost bench switch}.
 * <pre>
 *   serverNs: busybox nc -l -p PORT -e sh -c 'cat > received'      (reads the socket to EOF)
 *   clientNs: busybox nc SERVER_IP PORT < sent                        (closes after the last byte: FIN)
 * </pre>
 */
final class VerifiedTransfer {
    private static final int PORT = 7012;

    private VerifiedTransfer() {
    }

    /** What arrived: sizes, digests and how long it took (for the log only). */
    record Result(long sentBytes, String sentSha256, long receivedBytes, String receivedSha256, long nanos,
        String detail) {
        void assertIntact(String what) {
            assertTrue(nanos >= 0, what + ": transfer did not finish: " + detail);
            assertEquals(sentBytes, receivedBytes, what + ": bytes received (" + detail + ")");
            assertEquals(sentSha256, receivedSha256, what + ": SHA-256 of the received data (" + detail + ")");
        }

        @Override
        public String toString() {
            double secs = nanos / 1e9;
            return receivedBytes + " of " + sentBytes + " bytes in " + String.format("%.2f s (%.1f Mbit/s)", secs,
                nanos > 0 ? receivedBytes * 8 / secs / 1e6 : Double.NaN) + (sentSha256.equals(receivedSha256)
                ? ", digest matches" : ", DIGEST DIFFERS");
        }
    }

    /**
     * Sends {@code bytes} seeded-random bytes from {@code clientNs} to {@code serverIp} in {@code serverNs}; files go
     * under {@code dir}. Skips (assumption) when busybox is missing; the result says whether it finished in time.
     */
    static Result tcp(Path dir, String serverNs, String serverIp, String clientNs, int bytes, Duration timeout)
        throws Exception {
        int busybox = SyntheticNicTrafficTest.run(5, "busybox", "nc", "--help");
        Assumptions.assumeTrue(busybox == 0 || busybox == 1, "needs busybox (nc) for a verified TCP transfer");
        byte[] data = new byte[bytes];
        new Random(bytes).nextBytes(data);
        Path sent = Files.write(dir.resolve("tcp-sent.bin"), data);
        Path received = dir.resolve("tcp-received.bin");
        Files.deleteIfExists(received);
        Process server = new ProcessBuilder("ip", "netns", "exec", serverNs, "busybox", "nc", "-l", "-p",
            Integer.toString(PORT), "-e", "busybox", "sh", "-c", "cat > '" + received + "'")
            .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            long start = 0;
            String detail = "client never connected";
            for (int attempt = 0; attempt < 100 && System.nanoTime() < deadline; attempt++) {
                start = System.nanoTime();
                Process client = new ProcessBuilder("ip", "netns", "exec", clientNs, "busybox", "nc", serverIp,
                    Integer.toString(PORT)).redirectInput(sent.toFile()).redirectErrorStream(true).start();
                long left = Math.max(1, deadline - System.nanoTime());
                if (!client.waitFor(left, TimeUnit.NANOSECONDS)) {
                    client.destroyForcibly();
                    detail = "client still sending after " + timeout;
                    break;
                }
                String out = new String(client.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
                if (client.exitValue() == 0) {
                    detail = "sent";
                    break;
                }
                detail = "client exit " + client.exitValue() + ": " + out.strip();
                Thread.sleep(100); // the listener is not up yet: connection refused
            }
            boolean done = server.waitFor(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            long nanos = done ? System.nanoTime() - start : -1;
            if (!done) {
                detail += "; receiver had not seen the end after " + timeout;
            }
            byte[] got = Files.exists(received) ? Files.readAllBytes(received) : new byte[0];
            return new Result(bytes, sha256(data), got.length, sha256(got), nanos, detail);
        } finally {
            server.destroyForcibly();
            server.waitFor(5, TimeUnit.SECONDS);
        }
    }

    private static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }
}
