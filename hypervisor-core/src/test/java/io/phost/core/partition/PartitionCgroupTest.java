package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A launched process partition runs in a cgroup of its own: CPU quota from vcpus, memory limit from memory
 * (plus the host's overhead allowance), pids limit. Going over the memory limit gets the process killed by
 * the kernel, and the partition says so. Needs a writable memory controller (root, or a delegated cgroup).
 */
class PartitionCgroupTest {
    private Path dir;
    private PartitionHost host;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-cg");
        host = new PartitionHost(dir, GuestLauncher.sameJvm("io.phost.core.TestGuest", List.of()), PartitionHost.Options.defaults());
        host.cgroupMemoryOverhead(16L << 20);
    }

    @AfterEach
    void tearDown() throws Exception {
        host.close();
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private static void assumeMemoryController(Partition p) {
        String cg = p.status().details().get("cgroup");
        Assumptions.assumeTrue(cg.contains("memory="), "no writable memory cgroup controller here (run as root): " + cg);
    }

    @Test
    void shouldConfineALaunchedProcessAndReportTheLimits() throws Exception {
        Partition p = host.create(PartitionSpec.command("cg-sleep", 2, 16L << 20, List.of("/bin/sleep", "30")));
        p.start();
        assumeMemoryController(p);
        String details = p.status().details().get("cgroup");
        assertTrue(details.contains("cpu=2 CPU"), details);
        assertTrue(details.contains("memory=" + (32L << 20) + " bytes"), details);
        String leaf = "phost-" + ProcessHandle.current().pid() + "-cg-sleep";
        String procCgroup = Files.readString(Path.of("/proc/" + p.status().pid() + "/cgroup"));
        assertTrue(procCgroup.lines().anyMatch(l -> l.endsWith("/" + leaf)), procCgroup);
        p.turnOff("test");
        assertEquals(PartitionState.STOPPED, p.state());
    }

    @Test
    void shouldReportAProcessTheKernelKilledForGoingOverItsMemoryLimit() throws Exception {
        // sleep first: the process runs a moment before phost moves it into its cgroup
        Partition p = host.create(PartitionSpec.command("cg-hog", 1, 16L << 20,
            List.of("/bin/sh", "-c", "sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=256M count=1")));
        p.start();
        assumeMemoryController(p);
        assertTrue(p.awaitState(PartitionState.CRASHED, Duration.ofSeconds(30)), p.status().toString());
        String reason = p.status().reason();
        assertTrue(reason.startsWith("process exited with code 137 (killed by the kernel: over its cgroup memory limit"), reason);
    }
}
