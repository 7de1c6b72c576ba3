package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Cgroup against a fake cgroup tree in a temp dir (real kernels: PartitionCgroupTest, VmPartitionTest). */
class CgroupTest {
    @TempDir
    Path dir;

    private Path mountinfo(String... lines) throws Exception {
        return Files.writeString(dir.resolve("mountinfo"), String.join("\n", lines) + "\n");
    }

    @Test
    void shouldReadOwnCgroupPathsOfV1AndV2() {
        Map<String, String> own = Cgroup.ownPaths(List.of("4:memory:/process_api/abc", "2:cpu,cpuacct:/", "0::/user.slice"));
        assertEquals("/process_api/abc", own.get("memory"));
        assertEquals("/", own.get("cpu"));
        assertEquals("/", own.get("cpuacct"));
        assertEquals("/user.slice", own.get(""));
    }

    @Test
    void shouldWriteV1LimitsBeneathPhostsOwnCgroup() throws Exception {
        Path mem = Files.createDirectories(dir.resolve("memory/outer"));
        Path cpu = Files.createDirectories(dir.resolve("cpu"));
        Path mi = mountinfo(
            "30 25 0:26 / " + dir.resolve("memory") + " rw,relatime shared:9 - cgroup cgroup rw,memory",
            "31 25 0:27 / " + cpu + " rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct");
        Path self = Files.writeString(dir.resolve("self"), "4:memory:/outer\n2:cpu,cpuacct:/\n0::/\n");
        Cgroup cg = Cgroup.create(mi, self, "vm1", new Cgroup.Limits(2, 300L << 20, 64));
        String leaf = "phost-" + ProcessHandle.current().pid() + "-vm1";
        assertEquals(Long.toString(300L << 20), Files.readString(mem.resolve(leaf).resolve("memory.limit_in_bytes")));
        assertEquals("200000", Files.readString(cpu.resolve(leaf).resolve("cpu.cfs_quota_us")));
        assertEquals("100000", Files.readString(cpu.resolve(leaf).resolve("cpu.cfs_period_us")));
        String d = cg.describe();
        assertTrue(d.startsWith("cpu=2 CPU (v1), memory=" + (300L << 20) + " bytes (v1); not enforced: pids (no pids controller"), d);
        cg.add(1234);
        assertEquals("1234", Files.readString(mem.resolve(leaf).resolve("cgroup.procs")));
    }

    @Test
    void shouldPreferV2WhenPhostsCgroupDelegatesTheControllers() throws Exception {
        Path root = Files.createDirectories(dir.resolve("unified/svc"));
        Files.writeString(root.resolve("cgroup.subtree_control"), "cpu memory pids\n");
        Path mi = mountinfo("40 25 0:30 / " + dir.resolve("unified") + " rw,relatime - cgroup2 cgroup2 rw");
        Path self = Files.writeString(dir.resolve("self"), "0::/svc\n");
        Cgroup cg = Cgroup.create(mi, self, "p", new Cgroup.Limits(1, 64L << 20, 32));
        Path leaf = root.resolve("phost-" + ProcessHandle.current().pid() + "-p");
        assertEquals("100000 100000", Files.readString(leaf.resolve("cpu.max")));
        assertEquals(Long.toString(64L << 20), Files.readString(leaf.resolve("memory.max")));
        assertEquals("32", Files.readString(leaf.resolve("pids.max")));
        assertEquals(List.of(leaf), cg.dirs());
        assertFalse(cg.describe().contains("not enforced"), cg.describe());
    }

    @Test
    void shouldSayWhyWhenNoControllerIsAvailable() throws Exception {
        Path mi = mountinfo("22 1 0:20 / /proc rw - proc proc rw");
        Path self = Files.writeString(dir.resolve("self"), "0::/\n");
        Cgroup cg = Cgroup.create(mi, self, "p", new Cgroup.Limits(1, 64L << 20, 0));
        assertTrue(cg.describe().startsWith("not enforced: cpu (no cpu controller"), cg.describe());
        assertTrue(cg.describe().contains("memory (no memory controller"), cg.describe());
        assertFalse(cg.describe().contains("pids"), "pids = 0 asks for no limit: " + cg.describe());
    }
}
