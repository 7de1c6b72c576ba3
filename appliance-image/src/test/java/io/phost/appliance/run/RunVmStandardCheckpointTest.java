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
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A standard checkpoint of a running VM partition (QEMU 7.2 TCG, its disk a VHDX on phost's vhost-user-blk, a
 * NIC on phost's vhost-user-net, so both back-ends' state goes through QEMU's migration stream):
 * the guest counts in a loop, each round reading its disk (caches dropped) and checking it holds the last count
 * it wrote, then writing the next count there (fsync) and printing it. The host takes a standard checkpoint, lets
 * the guest count on, and applies it: the guest goes on counting from the checkpoint's count, not from boot,
 * and its disk check keeps passing (disk and memory were cut at the same stopped moment). Without the memory
 * state the guest would boot and count from 1; without the disk switch it would read a later count and print
 * COUNT-MISMATCH.
 */
class RunVmStandardCheckpointTest {
    private static final Duration BOOT = Duration.ofSeconds(180);
    private static final Pattern COUNT = Pattern.compile("(?m)^COUNT (\\d+)\\r?$");

    @TempDir
    Path dir;

    @Test
    void shouldResumeTheGuestFromAStandardCheckpoint() throws Exception {
        Path guest = TestGuestKit.directory();
        String sw = "ss" + ProcessHandle.current().pid() % 100000;
        String script = """
            ip link set eth0 up
            i=0
            printf '%08d' 0 | dd of=/dev/vda bs=8 count=1 conv=notrunc,fsync 2>/dev/null
            while [ $i -lt 1000000 ]; do
              echo 3 > /proc/sys/vm/drop_caches
              d=$(dd if=/dev/vda bs=8 count=1 2>/dev/null)
              if [ "$d" != "$(printf '%08d' $i)" ]; then echo "COUNT-MISMATCH memory=$i disk=$d"; exit 1; fi
              i=$((i+1))
              printf '%08d' $i | dd of=/dev/vda bs=8 count=1 conv=notrunc,fsync 2>/dev/null
              echo "COUNT $i"
            done
            """;
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "vm-std"
            data_dir = "%1$s"

            [[disk]]
            name = "vmdisk"
            path = "vm-disk.vhdx"
            create = { type = "dynamic", size = "64MiB" }

            [[switch]]
            name = "%4$s"
            type = "private"

            [[partition]]
            name = "vm"
            kind = "vm"
            vcpus = 1
            memory = "128MiB"
            kernel = "%2$s/vmlinuz"
            initrd = "%2$s/initramfs.gz"
            cmdline = "%3$s"
            disk = [{ disk = "vmdisk" }]
            nic = [{ switch = "%4$s", mac = "02:84:00:00:00:18" }]
            """.formatted(dir.resolve("data"), guest, TestGuestKit.cmdline(script, false), sw));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            try {
                run(c, endpoint);
            } catch (AssertionError | RuntimeException e) {
                StringBuilder logs = new StringBuilder();
                try (var files = Files.walk(dir)) {
                    for (Path f : files.filter(f -> f.getFileName().toString().endsWith(".qemu.log")).toList()) {
                        logs.append(f).append(":\n").append(Files.readString(f));
                    }
                }
                throw new AssertionError(e.getMessage() + "\nQEMU's log: " + logs, e);
            }
        }
    }

    private void run(ManagementClient c, String endpoint) throws Exception {
        {
            awaitCounts(c, n -> n.getLast() >= 3);
            int before = counts(console(c)).getLast();
            HttpResponse r = c.post("/v1/partitions/checkpoints/create?name=vm&checkpoint=s&type=standard");
            assertEquals(200, r.status(), r.bodyText());
            int after = counts(console(c)).getLast();
            Map<?, ?> m = (Map<?, ?>) Json.parse(r.bodyText());
            assertEquals("standard", m.get("type"), r.bodyText());
            assertEquals("running-state", m.get("consistency"), r.bodyText());
            assertTrue(((Number) m.get("vm_state_bytes")).longValue() > 1 << 20, r.bodyText());
            System.out.println("standard checkpoint: VM stopped " + m.get("vm_stopped_ms") + " ms, state " + m.get("vm_state_bytes")
                + " bytes, disk pause us=" + m.get("pause_us") + ", counts " + before + ".." + after);
            awaitCounts(c, n -> n.getLast() >= after + 8);
            assertEquals(0, Main.execute("checkpoint", "apply", "vm", "s", "--host", endpoint));
            // After the apply the counts drop back to the checkpoint's and go on from there.
            List<Integer> n = awaitCounts(c, l -> resumedAt(l) >= 0 && l.size() - resumedAt(l) >= 5);
            int resumed = n.get(resumedAt(n));
            assertTrue(resumed >= before && resumed <= after + 1, "the guest resumed at COUNT " + resumed
                + ", not from the checkpoint (taken between COUNT " + before + " and " + after + ")");
            for (int k = resumedAt(n) + 1; k < n.size(); k++) {
                assertEquals(n.get(k - 1) + 1, n.get(k), "counts after the apply: " + n.subList(resumedAt(n), n.size()));
            }
            String text = console(c);
            assertFalse(text.contains("COUNT-MISMATCH"), text);
            HttpResponse list = c.get("/v1/partitions/checkpoints?name=vm");
            assertTrue(list.bodyText().contains("\"standard\""), list.bodyText());
            // Delete merges the disks and removes the saved state.
            Path state = Path.of(String.valueOf(((Map<?, ?>) ((List<?>) ((Map<?, ?>) Json.parse(list.bodyText()))
                .get("checkpoints")).getFirst()).get("vm_state")));
            assertTrue(Files.exists(state), state.toString());
            assertEquals(0, Main.execute("checkpoint", "delete", "vm", "s", "--wait", "--host", endpoint));
            assertFalse(Files.exists(state), state + " is still there after the delete");
            int last = counts(console(c)).getLast();
            awaitCounts(c, l -> l.getLast() >= last + 3);
            assertFalse(console(c).contains("COUNT-MISMATCH"), console(c));
        }
    }

    /** The index of the first count lower than the one before it (the apply), or -1. */
    private static int resumedAt(List<Integer> n) {
        for (int k = 1; k < n.size(); k++) {
            if (n.get(k) < n.get(k - 1)) {
                return k;
            }
        }
        return -1;
    }

    private static List<Integer> counts(String console) {
        List<Integer> out = new ArrayList<>();
        Matcher m = COUNT.matcher(console);
        while (m.find()) {
            out.add(Integer.parseInt(m.group(1)));
        }
        return out;
    }

    private static String console(ManagementClient c) throws Exception {
        return c.get("/v1/partitions/console?name=vm&bytes=1000000").bodyText();
    }

    private static List<Integer> awaitCounts(ManagementClient c, java.util.function.Predicate<List<Integer>> done) throws Exception {
        long deadline = System.nanoTime() + BOOT.toNanos();
        String text = "";
        while (System.nanoTime() < deadline) {
            text = console(c);
            assertFalse(text.contains("COUNT-MISMATCH") || text.contains("PHOST-GUEST-DONE"), text);
            List<Integer> n = counts(text);
            if (!n.isEmpty() && done.test(n)) {
                return n;
            }
            Thread.sleep(200);
        }
        throw new AssertionError("the counts did not get there:\n" + text);
    }
}
