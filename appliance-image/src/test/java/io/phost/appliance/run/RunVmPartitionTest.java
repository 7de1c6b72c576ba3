package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.core.vm.Accelerator;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `phost run` with {@code kind = "vm"} partitions boots the project's test guest under QEMU (TCG here):
 * <ul>
 *   <li>vm-disk writes a pattern to its VHDX through vhost-user-blk served by this phost, reads 160 x 4 KiB
 *       under the disk's QoS cap of 40 IOPS (at least 4 s) and powers off; after phost stops, {@code qemu-io}
 *       finds the pattern in the image and {@code qemu-img check} passes;</li>
 *   <li>vm-life ({@code autostart = false}, {@code on_crash = "restart"}) is started from the CLI, paused and
 *       resumed, its QEMU is SIGKILLed and phost restarts it, {@code partition stop} powers it off through
 *       ACPI, {@code partition kill} ends it.</li>
 * </ul>
 * Recipe of the check: {@code qemu-io -f vhdx -r -c "read -P 0xa5 1M 1M" vm-disk.vhdx; qemu-img check -f vhdx ...}.
 */
class RunVmPartitionTest {
    private static final Duration BOOT = Duration.ofSeconds(150);

    @TempDir
    Path dir;

    private ManagementClient client;

    @Test
    void shouldBootSuperviseAndStopRealVmsWithTheirDiskServedByPhost() throws Exception {
        Path guest = TestGuestKit.directory();
        Path data = dir.resolve("data");
        String diskScript = """
            set -e
            dd if=/dev/zero bs=65536 count=16 2>/dev/null | tr '\\000' '\\245' | dd of=/dev/vda bs=65536 seek=16 conv=fsync 2>/dev/null
            echo "PATTERN-WRITTEN $(dd if=/dev/vda bs=65536 skip=16 count=16 2>/dev/null | md5sum)"
            s=$(date +%s)
            dd if=/dev/vda of=/dev/null bs=4096 count=160 iflag=direct 2>/dev/null
            echo "QOS-READ-SECONDS $(( $(date +%s) - s ))"
            """;
        String expectedMd5 = md5OfPattern();
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vm-test"
            data_dir = "%1$s"

            [[qos_policy]]
            name = "cap"
            max_iops = 40

            [[disk]]
            name = "vmdisk"
            path = "vm-disk.vhdx"
            qos_policy = "cap"
            create = { type = "dynamic", size = "64MiB" }

            [[partition]]
            name = "vm-disk"
            kind = "vm"
            vcpus = 1
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "vmdisk" }]

            [[partition]]
            name = "vm-life"
            kind = "vm"
            memory = "256MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%4$s"
            autostart = false
            on_crash = "restart"
            stop_timeout = 60
            """.formatted(data, guest, TestGuestKit.cmdline(diskScript, false),
                TestGuestKit.cmdline("true", true) + TestGuestKit.NO_AGENT));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            client = new ManagementClient(ManagementAddress.parse(endpoint), null);

            // vm-disk: boots, writes through vhost-user-blk, powers itself off
            String console = awaitConsole("vm-disk", c -> c.contains("PHOST-GUEST-DONE"), p);
            assertTrue(console.contains("PHOST-GUEST-DONE rc=0"), console);
            assertTrue(console.contains("PATTERN-WRITTEN " + expectedMd5), "the guest reads back what it wrote:\n" + console);
            // 160 direct 4 KiB reads under max_iops = 40 take at least 4 s (whole seconds in the guest's clock)
            java.util.regex.Matcher qos = java.util.regex.Pattern.compile("QOS-READ-SECONDS (\\d+)").matcher(console);
            assertTrue(qos.find(), console);
            assertTrue(Integer.parseInt(qos.group(1)) >= 3, "the disk's QoS cap of 40 IOPS was not applied: " + qos.group());
            Map<?, ?> vmDiskRow = (Map<?, ?>) ((List<?>) ((Map<?, ?>) Json.parse(text("/v1/status"))).get("vm_disks")).getFirst();
            assertEquals("vm-disk", vmDiskRow.get("partition"));
            assertTrue(((Number) vmDiskRow.get("reads")).longValue() >= 160, vmDiskRow.toString());
            Map<?, ?> vmDisk = awaitPartition("vm-disk", s -> "stopped".equals(s.get("state")), p);
            assertTrue(String.valueOf(vmDisk.get("reason")).startsWith("the guest powered off"), vmDisk.toString());
            assertEquals(0L, ((Number) vmDisk.get("fault_count")).longValue(), vmDisk.toString());
            String accel = String.valueOf(((Map<?, ?>) vmDisk.get("details")).get("accelerator"));
            assertTrue(accel.startsWith(Accelerator.detect().type() == Accelerator.Type.KVM ? "kvm" : "tcg ("), accel);

            // vm-life: autostart = false waits for the CLI
            assertEquals("created", partition("vm-life").get("state"));
            assertEquals(0, cli("start", "vm-life"));
            awaitConsole("vm-life", c -> c.contains("PHOST-GUEST-DONE rc=0"), p);
            assertEquals(0, cli("pause", "vm-life"));
            assertEquals("paused", partition("vm-life").get("state"));
            assertEquals(0, cli("resume", "vm-life"));
            Map<?, ?> running = partition("vm-life");
            assertEquals("running", running.get("state"));
            long firstPid = ((Number) running.get("pid")).longValue();

            // a QEMU that dies is detected and restarted by policy
            io.phost.core.sys.Signals.kill(firstPid, 9);
            Map<?, ?> restarted = awaitPartition("vm-life", s -> "running".equals(s.get("state"))
                && s.get("pid") instanceof Number pid && pid.longValue() != firstPid, p); // no pid while the crash is handled
            assertEquals(1L, ((Number) restarted.get("fault_count")).longValue(), restarted.toString());
            assertTrue(String.valueOf(((List<?>) restarted.get("faults")).getFirst()).startsWith("QEMU exited with code 137"),
                restarted.toString());
            assertEquals("1", ((Map<?, ?>) restarted.get("details")).get("restarts"));
            assertEquals("NO_CONTACT", ((Map<?, ?>) restarted.get("details")).get("heartbeat"), "a guest without an agent is stated");

            // stop: ACPI power button; the guest's init powers off (no SIGKILL needed)
            awaitConsoleCount("vm-life", "PHOST-GUEST-DONE rc=0", 2, p);
            assertEquals(0, cli("stop", "vm-life"));
            Map<?, ?> stopped = partition("vm-life");
            assertEquals("stopped", stopped.get("state"));
            assertTrue(String.valueOf(stopped.get("reason")).startsWith("stopped: the guest powered off after ACPI"),
                stopped.toString());
            assertTrue(text("/v1/partitions/console?name=vm-life").contains("PHOST-GUEST-POWERDOWN"));

            // kill ends it at once
            assertEquals(0, cli("start", "vm-life"));
            long pid = ((Number) partition("vm-life").get("pid")).longValue();
            assertEquals(0, cli("kill", "vm-life"));
            Map<?, ?> killed = partition("vm-life");
            assertEquals("stopped", killed.get("state"));
            assertEquals("killed by request", killed.get("reason"));
            assertTrue(ProcessHandle.of(pid).map(h -> !h.isAlive()).orElse(true), "QEMU " + pid + " still runs");
            assertNotEquals(0, cli("pause", "nope"), "an unknown partition is an error");

            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
        Path vhdx = data.resolve("vm-disk.vhdx");
        String read = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 1M", vhdx.toString());
        assertTrue(read.contains("read 1048576/1048576 bytes"), read);
        String zero = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0 0 1M", vhdx.toString());
        assertTrue(zero.contains("read 1048576/1048576 bytes"), zero);
        run("qemu-img", "check", "-f", "vhdx", vhdx.toString());
    }

    private static String md5OfPattern() throws Exception {
        byte[] b = new byte[1 << 20];
        java.util.Arrays.fill(b, (byte) 0xa5);
        return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("MD5").digest(b));
    }

    private int cli(String verb, String name) {
        String endpoint;
        try {
            endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return Main.execute("partition", verb, name, "--host", endpoint);
    }

    private String text(String target) throws IOException {
        return client.get(target).bodyText();
    }

    private Map<?, ?> partition(String name) throws IOException {
        for (Object o : (List<?>) Json.parse(text("/v1/partitions"))) {
            if (name.equals(((Map<?, ?>) o).get("name"))) {
                return (Map<?, ?>) o;
            }
        }
        throw new AssertionError("no partition " + name);
    }

    private Map<?, ?> awaitPartition(String name, Predicate<Map<?, ?>> ok, PhostProcess p) throws Exception {
        long deadline = System.nanoTime() + BOOT.toNanos();
        Map<?, ?> last = null;
        while (System.nanoTime() < deadline) {
            last = partition(name);
            if (ok.test(last)) {
                return last;
            }
            Thread.sleep(100);
        }
        throw new AssertionError("partition " + name + " never got there: " + last + "\nconsole:\n"
            + text("/v1/partitions/console?name=" + name) + "\nqemu:\n" + text("/v1/partitions/logs?name=" + name) + "\nphost:\n" + p.stderr());
    }

    private String awaitConsole(String name, Predicate<String> ok, PhostProcess p) throws Exception {
        long deadline = System.nanoTime() + BOOT.toNanos();
        String c = "";
        while (System.nanoTime() < deadline) {
            c = text("/v1/partitions/console?name=" + name);
            if (ok.test(c)) {
                return c;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("console of " + name + " after " + BOOT + ":\n" + c + "\nstatus: " + partition(name)
            + "\nqemu:\n" + text("/v1/partitions/logs?name=" + name) + "\nphost:\n" + p.stderr());
    }

    private void awaitConsoleCount(String name, String marker, int n, PhostProcess p) throws Exception {
        awaitConsole(name, c -> c.split(java.util.regex.Pattern.quote(marker), -1).length - 1 >= n, p);
    }

    private static String run(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
