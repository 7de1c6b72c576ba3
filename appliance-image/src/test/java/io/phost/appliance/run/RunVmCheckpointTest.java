package io.phost.appliance.run;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A checkpoint of a running VM partition (QEMU TCG, its disk on vhost-user-blk served by this phost): the
 * guest writes 1 MiB of 0xa5 at 1 MiB, the host checkpoints it while it runs, the guest then overwrites the
 * range with 0x5a (now into the checkpoint's child) and powers off. qemu-io finds 0xa5 in the checkpoint's
 * export and 0x5a in a later one; after deleting the first checkpoint (merge) and applying it back, the data
 * is what each checkpoint held. The running VM's checkpoint is application-consistent (its guest agent froze the
 * file systems around the switch); the stopped VM's is crash-consistent.
 * <pre>
 *   qemu-io -f vhdx -r -c "read -P 0xa5 1M 1M" export.vhdx
 * </pre>
 */
class RunVmCheckpointTest {
    private static final Duration BOOT = Duration.ofSeconds(180);

    @TempDir
    Path dir;

    @Test
    void shouldCheckpointARunningVmAndRevertToIt() throws Exception {
        Path guest = TestGuestKit.directory();
        String script = """
            set -e
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\245' | dd of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null
            echo PATTERN-A-WRITTEN
            sleep 15
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\132' | dd of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null
            echo PATTERN-B-WRITTEN
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vm-ckpt"
            data_dir = "%1$s"

            [[disk]]
            name = "vmdisk"
            path = "vm-disk.vhdx"
            create = { type = "dynamic", size = "64MiB" }

            [[partition]]
            name = "vm"
            kind = "vm"
            vcpus = 1
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "vmdisk" }]
            """.formatted(dir.resolve("data"), guest, TestGuestKit.cmdline(script, false)));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            awaitConsole(c, "PATTERN-A-WRITTEN");
            awaitHeartbeat(c); // the guest agent answers: the checkpoint freezes the guest's file systems
            HttpResponse r = c.post("/v1/partitions/checkpoints/create?name=vm&checkpoint=a");
            assertEquals(200, r.status(), r.bodyText());
            assertEquals("application-consistent", ((Map<?, ?>) Json.parse(r.bodyText())).get("consistency"), r.bodyText());
            System.out.println("VM checkpoint a: " + ((Map<?, ?>) Json.parse(r.bodyText())).get("pause_us") + " us");
            String console = awaitConsole(c, "PHOST-GUEST-DONE");
            assertTrue(console.contains("PATTERN-B-WRITTEN") && console.contains("PHOST-GUEST-DONE rc=0"), console);
            long deadline = System.nanoTime() + BOOT.toNanos();
            while (System.nanoTime() < deadline && !"stopped".equals(state(c))) {
                Thread.sleep(200);
            }
            assertEquals("stopped", state(c));
            HttpResponse rb = c.post("/v1/partitions/checkpoints/create?name=vm&checkpoint=b");
            assertEquals(200, rb.status(), rb.bodyText());
            assertEquals("crash-consistent", ((Map<?, ?>) Json.parse(rb.bodyText())).get("consistency"), "a stopped VM has no agent to freeze");
            Path ea = export(endpoint, "a");
            Path eb = export(endpoint, "b");
            qemu("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 1M", ea.toString());
            qemu("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 1M 1M", eb.toString());
            // Delete a: its child merges into the base; b reads the same afterwards.
            assertEquals(0, Main.execute("checkpoint", "delete", "vm", "a", "--wait", "--host", endpoint));
            Path eb2 = dir.resolve("b-again.vhdx");
            assertEquals(0, Main.execute("checkpoint", "export", "vm", "b", eb2.toString(), "--host", endpoint));
            qemu("qemu-img", "compare", "-f", "vhdx", "-F", "vhdx", eb.toString(), eb2.toString());
            // Apply b (VM stopped: it stays stopped); a checkpoint taken right after reads as b.
            assertEquals(0, Main.execute("checkpoint", "apply", "vm", "b", "--host", endpoint));
            assertEquals(200, c.post("/v1/partitions/checkpoints/create?name=vm&checkpoint=c").status());
            qemu("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0x5a 1M 1M", export(endpoint, "c").toString());
        }
    }

    private Path export(String endpoint, String checkpoint) {
        Path f = dir.resolve(checkpoint + ".vhdx");
        assertEquals(0, Main.execute("checkpoint", "export", "vm", checkpoint, f.toString(), "--host", endpoint));
        return f;
    }

    private static void qemu(String... cmd) throws Exception {
        Process pr = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(pr.getInputStream().readAllBytes());
        assertEquals(0, pr.waitFor(), String.join(" ", cmd) + ": " + out);
        assertTrue(!out.contains("Pattern verification failed"), String.join(" ", cmd) + ": " + out);
    }

    private static String state(ManagementClient c) throws Exception {
        return String.valueOf(((Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst()).get("state"));
    }

    private static void awaitHeartbeat(ManagementClient c) throws Exception {
        long deadline = System.nanoTime() + BOOT.toNanos();
        Object details = null;
        while (System.nanoTime() < deadline) {
            details = ((Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst()).get("details");
            if (details instanceof Map<?, ?> d && "OK".equals(d.get("heartbeat"))) {
                return;
            }
            Thread.sleep(250);
        }
        throw new AssertionError("the guest agent never answered: " + details);
    }

    private static String awaitConsole(ManagementClient c, String marker) throws Exception {
        long deadline = System.nanoTime() + BOOT.toNanos();
        String text = "";
        while (System.nanoTime() < deadline) {
            text = c.get("/v1/partitions/console?name=vm").bodyText();
            if (text.contains(marker)) {
                return text;
            }
            Thread.sleep(250);
        }
        throw new AssertionError("no " + marker + " on the console:\n" + text);
    }
}
