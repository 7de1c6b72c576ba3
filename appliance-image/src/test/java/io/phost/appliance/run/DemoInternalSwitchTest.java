package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 12: the embedded demo ({@code phost run} without a config) has an internal switch whose host vNIC has an
 * address, so the host pings a demo partition and talks TCP to it (iperf3) with no {@code ip} command by hand.
 * Before: the demo's switch was private and the host could reach nothing. Needs root (TAPs, namespaces), iperf3.
 */
@Timeout(240)
class DemoInternalSwitchTest {
    private static final Pattern SUBNET = Pattern.compile(" subnet=(10\\.213\\.\\d+\\.)0/24");

    @TempDir
    Path dir;

    @Test
    void shouldLetTheHostPingAndTalkTcpToADemoPartitionThroughTheInternalSwitch() throws Exception {
        Assumptions.assumeTrue(Privileges.current().root() && Files.exists(Path.of("/dev/net/tun")),
            "needs root and /dev/net/tun (host TAP, the partitions' namespaces)");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/iperf3")), "iperf3 is missing");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--plain", "--duration", "150s")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            for (int i = 0; i < 50 && !p.stderr().contains("switch created"); i++) {
                Thread.sleep(100); // stderr is read on its own thread
            }
            Matcher m = SUBNET.matcher(p.stderr());
            assertTrue(m.find(), p.stderr());
            String net = m.group(1);
            assertTrue(p.stderr().contains("host_address=" + net + "254/24"), p.stderr());
            // the partitions make their namespaces and TAPs after ready, each on its own: wait until the host
            // reaches net-worker (.2) and storage-worker (.1)
            String partition = net + "2";
            for (String address : List.of(partition, net + "1")) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                String ping = "";
                while (System.nanoTime() < deadline) {
                    ping = run(List.of("ping", "-c", "1", "-W", "1", address), 5);
                    if (ping.startsWith("0\n")) {
                        break;
                    }
                    Thread.sleep(500);
                }
                assertTrue(ping.startsWith("0\n"), "host -> " + address + ":\n" + ping + "\nphost:\n" + p.stderr());
            }
            String storage = run(List.of("ping", "-c", "3", "-i", "0.2", "-W", "1", net + "1"), 10);
            assertTrue(storage.startsWith("0\n"), "host -> storage-worker " + net + "1:\n" + storage);

            // TCP: an iperf3 server in net-worker's namespace (the one its guest made), the client on the host
            Process server = new ProcessBuilder("ip", "netns", "exec", "phost-demo-b", "iperf3", "-s", "-1", "-B", partition,
                "-p", "5301").redirectErrorStream(true).redirectOutput(dir.resolve("iperf3-server.txt").toFile()).start();
            try {
                String client = "";
                for (int i = 0; i < 20 && !client.startsWith("0\n"); i++) {
                    Thread.sleep(300); // until the server listens
                    client = run(List.of("iperf3", "-c", partition, "-p", "5301", "-t", "2", "-J"), 20);
                }
                assertTrue(client.startsWith("0\n"), "iperf3 host -> " + partition + ":\n" + client);
                Matcher bits = Pattern.compile("\"sum_received\"\\s*:\\s*\\{[^}]*\"bits_per_second\"\\s*:\\s*([0-9.e+]+)")
                    .matcher(client);
                assertTrue(bits.find() && Double.parseDouble(bits.group(1)) > 0, client);
            } finally {
                server.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
            }

            new ProcessBuilder("kill", "-TERM", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(!run(List.of("ip", "-o", "addr", "show"), 5).contains(net + "254/24"), "the host address went with the TAP");
        }
    }

    /** Exit code, a newline, then the output. */
    private static String run(List<String> cmd, int seconds) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return "timeout\n";
        }
        return p.exitValue() + "\n" + new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
