package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A VM partition's NIC (vhost-user-net on a private switch) set down and up again through
 * {@code POST /v1/switches/port ... link=down|up}: the guest's virtio-net carrier
 * ({@code /sys/class/net/eth0/carrier}) goes 1 → 0 → 1. The guest script prints each carrier value it sees
 * (polled once a second) on the console. Needs QEMU and the test guest kit; no root (no TAP).
 */
@Timeout(300)
class RunVmNicLinkTest {
    @TempDir
    Path dir;

    @Test
    void shouldTakeTheGuestsCarrierDownAndUpWithThePortsLink() throws Exception {
        assertTrue(TestGuestKit.onPath("qemu-system-x86_64"), "qemu-system-x86_64 is missing (see .ci/run)");
        Path guest = TestGuestKit.directory();
        String sw = "vl" + ProcessHandle.current().pid() % 100000;
        String script = """
            ip link set eth0 up
            last=x
            i=0
            while [ $i -lt 240 ]; do
              c=$(cat /sys/class/net/eth0/carrier 2>/dev/null)
              if [ "$c" != "$last" ]; then echo "CARRIER=$c"; last=$c; fi
              sleep 1; i=$((i+1))
            done
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vmlink-test"
            data_dir = "%1$s"

            [[switch]]
            name = "%4$s"
            type = "private"

            [[partition]]
            name = "vm-link"
            kind = "vm"
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            nic = [{ switch = "%4$s", mac = "02:84:00:00:00:03" }]
            """.formatted(dir.resolve("data"), guest, TestGuestKit.cmdline(script, false), sw));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient client = new ManagementClient(ManagementAddress.parse(endpoint), null);
            String port = "/v1/switches/port?switch=" + sw + "&port=vm-link/vm-link-nic0&link=";

            String console = awaitConsole(client, p, "CARRIER=1", 0);
            int from = console.indexOf("CARRIER=1") + 1;
            String down = client.post(port + "down").bodyText();
            assertTrue(down.matches("(?s).*\"link\"\\s*:\\s*\"down\".*"), down);
            assertTrue(down.matches("(?s).*\"guest_notified\"\\s*:\\s*true.*"), down);
            console = awaitConsole(client, p, "CARRIER=0", from);
            from = console.indexOf("CARRIER=0", from) + 1;
            String status = client.get("/v1/status").bodyText();
            assertTrue(status.matches("(?s).*\"link\"\\s*:\\s*\"down\".*"), status);

            String up = client.post(port + "up").bodyText();
            assertTrue(up.matches("(?s).*\"link\"\\s*:\\s*\"up\".*"), up);
            awaitConsole(client, p, "CARRIER=1", from);

            assertEquals(400, client.post(port + "sideways").status(), "link is up or down");
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
    }

    /** The console once it shows {@code marker} at or after {@code from}; fails after 150 s. */
    private static String awaitConsole(ManagementClient client, PhostProcess p, String marker, int from) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(150).toNanos();
        String console = "";
        while (console.indexOf(marker, from) < 0) {
            assertTrue(System.nanoTime() < deadline, "guest never showed " + marker + " (after offset " + from + "):\n"
                + console + "\nqemu:\n" + client.get("/v1/partitions/logs?name=vm-link").bodyText() + "\nphost:\n" + p.stderr());
            Thread.sleep(300);
            console = client.get("/v1/partitions/console?name=vm-link").bodyText();
        }
        return console;
    }
}
