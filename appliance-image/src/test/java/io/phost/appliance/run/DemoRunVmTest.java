package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The embedded demo as a user starts it (`phost run`, no config) with QEMU and a test guest present: its VM
 * partition boots and pings the storage worker (a process partition) across the demo switch from its
 * vhost-user-net NIC, as issue 15 asks of the demo.
 */
@Timeout(300)
class DemoRunVmTest {
    @TempDir
    Path dir;

    @Test
    void shouldBootTheDemoVmAndPingAProcessPartitionAcrossTheSwitch() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")) && TestGuestKit.onPath("qemu-system-x86_64"),
            "needs root, /dev/net/tun (the demo's namespaces) and qemu-system-x86_64");
        Path guest = TestGuestKit.directory();
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), List.of(), Map.of("PHOST_TEST_GUEST", guest.toString()),
                "run", "--plain", "--duration", "240s")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            java.util.regex.Pattern ok = java.util.regex.Pattern.compile("demo-vm: ping 10\\.213\\.\\d+\\." + DemoVm.PEER_HOST + " ok");
            long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
            String console = "";
            while (System.nanoTime() < deadline && !ok.matcher(console).find()) {
                Thread.sleep(500);
                console = c.get("/v1/partitions/console?name=demo-vm").bodyText();
            }
            assertTrue(ok.matcher(console).find(), "the demo VM never reached the storage worker:\n" + console);
        }
    }
}
