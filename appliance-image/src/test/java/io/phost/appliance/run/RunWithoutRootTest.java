package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import io.phost.core.partition.GuestLauncher;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 17: run without root, phost says once on the console, and in status, which features are off. The host
 * really runs as {@code nobody} ({@code setpriv --reuid nobody}, which drops every capability), from a copy of
 * the class path that user can read.
 */
class RunWithoutRootTest {
    @TempDir
    Path dir;

    @Test
    void shouldParseTheEffectiveUidAndCapabilitiesAndListWhatIsOff() {
        Privileges nobody = Privileges.parse("Name:\tjava\nUid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n");
        assertEquals(65534, nobody.uid());
        List<String> off = nobody.featuresOff(p -> false, Path.of("/sys/fs/cgroup/user.slice"), Path.of("/tmp/phost-nobody"));
        assertEquals(4, off.size(), off.toString());
        assertTrue(off.get(0).contains("CAP_NET_ADMIN") && off.get(1).contains("CAP_NET_RAW"), off.toString());
        assertTrue(off.get(2).contains("/sys/fs/cgroup/user.slice is not writable"), off.toString());
        assertTrue(off.get(3).contains("/tmp/phost-nobody/endpoint"), off.toString());
        Privileges netAdmin = Privileges.parse("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000003000\n");
        assertEquals(List.of(), netAdmin.featuresOff(p -> true, Path.of("/sys/fs/cgroup/x"), Path.of("/run/phost")),
            "CAP_NET_ADMIN and CAP_NET_RAW held, cgroup delegated, /run/phost writable: nothing is off");
        Privileges root = Privileges.parse("Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n");
        assertTrue(root.root());
        assertEquals(null, root.notice());
    }

    @Test
    void shouldSayOnceOnTheConsoleAndInStatusWhichFeaturesAreOffWhenRunAsNobody() throws Exception {
        Assumptions.assumeTrue(Privileges.current().root(), "switching to nobody needs root");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is missing");
        List<String> entries = classPathNobodyCanRead();
        Path data = dir.resolve("data");
        Path tmp = dir.resolve("tmp");
        Path cfg = Files.writeString(dir.resolve("appliance.toml"), """
            [host]
            name = "unprivileged"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"
            """.formatted(data));
        new ProcessBuilder("chmod", "a+r", cfg.toString()).start().waitFor();
        ProcessBuilder pb = asNobody(entries, tmp, "run", "--plain", "--config", cfg.toString());
        try (PhostProcess p = PhostProcess.of(pb)) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            String console = p.stderr();
            assertEquals(1, console.split("running without root", -1).length - 1, "said once:\n" + console);
            assertTrue(console.contains("level=WARN") && console.contains("uid=65534"), console);
            assertTrue(console.contains("need CAP_NET_ADMIN") && console.contains("need CAP_NET_RAW"), console);
            assertTrue(console.contains(tmp.resolve("phost-nobody/endpoint").toString()), console);

            ManagementClient client = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            Map<?, ?> status = (Map<?, ?>) Json.parse(client.get("/v1/status").bodyText());
            Map<?, ?> privileges = (Map<?, ?>) status.get("privileges");
            assertEquals(false, privileges.get("root"), status.toString());
            assertEquals(65534L, ((Number) privileges.get("uid")).longValue());
            List<?> off = (List<?>) privileges.get("features_off");
            assertTrue(off.stream().anyMatch(f -> f.toString().contains("CAP_NET_ADMIN")), off.toString());
            String shown = io.phost.appliance.cli.StatusCommandAccess.render(status);
            assertTrue(shown.contains("privileges:") && shown.contains("CAP_NET_ADMIN"), shown);

            new ProcessBuilder("kill", "-TERM", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertEquals(1, p.stderr().split("running without root", -1).length - 1, "still once:\n" + p.stderr());
        }
    }

    /**
     * Issue 12: the demo's switch is internal, and its host vNIC needs CAP_NET_ADMIN. Without it the demo says so
     * once (the notice names host vNICs of internal switches), runs the switch private and keeps running its disk
     * I/O instead of aborting on the TAP.
     */
    @Test
    void shouldRunTheDemoWithoutItsHostVnicWhenRunAsNobody() throws Exception {
        Assumptions.assumeTrue(Privileges.current().root(), "switching to nobody needs root");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is missing");
        List<String> entries = classPathNobodyCanRead();
        Path tmp = dir.resolve("tmp");
        try (PhostProcess p = PhostProcess.of(asNobody(entries, tmp, "run", "--plain", "--duration", "60s"))) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            Thread.sleep(3000);
            assertTrue(p.process().isAlive(), p.stderr());
            String console = p.stderr();
            assertEquals(1, console.split("running without root", -1).length - 1, "said once:\n" + console);
            assertTrue(console.contains("host vNICs of internal switches (the demo's switch runs private"), console);
            assertTrue(console.contains("name=demo-net type=private"), console);
            Path data;
            try (var dirs = Files.list(tmp)) {
                data = dirs.filter(d -> d.getFileName().toString().startsWith("phost-demo-")).findFirst().orElseThrow();
            }
            ManagementClient client = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            String status = client.get("/v1/status").bodyText();
            assertTrue(status.contains("storage-worker") && status.contains("demo-disk"), status);
            new ProcessBuilder("kill", "-TERM", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
    }

    /** A copy of this JVM's class path that {@code nobody} can read (/root/.m2 and the build tree may not be). */
    private List<String> classPathNobodyCanRead() throws Exception {
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        // A class path nobody can read: /root/.m2 and the build tree may not be readable by other users.
        Path cp = Files.createDirectories(dir.resolve("cp"));
        List<String> entries = new ArrayList<>();
        int n = 0;
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            Path src = Path.of(e);
            if (Files.isDirectory(src)) {
                Path to = cp.resolve("d" + n++);
                try (var files = Files.walk(src)) {
                    for (Path f : (Iterable<Path>) files::iterator) {
                        Files.copy(f, to.resolve(src.relativize(f).toString()));
                    }
                }
                entries.add(to.toString());
            } else if (Files.isRegularFile(src)) {
                Path to = cp.resolve(n++ + "-" + src.getFileName());
                Files.copy(src, to);
                entries.add(to.toString());
            }
        }
        new ProcessBuilder("chmod", "-R", "a+rX", dir.toString()).start().waitFor();
        UserPrincipalLookupService users = dir.getFileSystem().getUserPrincipalLookupService();
        Path data = Files.createDirectories(dir.resolve("data"));
        Path tmp = Files.createDirectories(dir.resolve("tmp"));
        for (Path p : List.of(data, tmp)) {
            Files.setOwner(p, users.lookupPrincipalByName("nobody"));
        }
        return entries;
    }

    /** {@code java ... io.phost.appliance.Main ARGS} as {@code nobody}, with {@code tmp} as its temp dir and home. */
    private static ProcessBuilder asNobody(List<String> entries, Path tmp, String... args) {
        List<String> cmd = new ArrayList<>(List.of("/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(GuestLauncher.inheritedJvmFlags());
        cmd.addAll(List.of("-Djava.io.tmpdir=" + tmp, "-Duser.home=" + tmp, "-cp", String.join(File.pathSeparator, entries),
            "io.phost.appliance.Main"));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(tmp.toFile());
        pb.environment().remove("XDG_RUNTIME_DIR");
        pb.environment().put("HOME", tmp.toString());
        return pb;
    }
}
