package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.cli.RunCommandAccess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 16, defects 6, 9 and 11: how `phost run` stops, and what it leaves (and must not remove). */
class RunStopTest {
    @TempDir
    Path dir;

    private Path config(String name, Path data) throws Exception {
        Path cfg = dir.resolve(name + ".toml");
        Files.writeString(cfg, """
            [host]
            name = "%s"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"
            """.formatted(name, data));
        return cfg;
    }

    @Test
    void shouldStopCleanlyOnSighupAndCreateTheDataDirOwnerOnly() throws Exception {
        Path data = dir.resolve("data");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", config("hup", data).toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(data)));
            new ProcessBuilder("kill", "-HUP", Long.toString(p.process().pid())).start().waitFor();
            assertTrue(p.process().waitFor(5, TimeUnit.SECONDS), "phost did not stop within 5 s after SIGHUP");
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(p.stderr().contains("signal=SIGHUP stopping"), p.stderr());
            assertFalse(Files.exists(data.resolve("phost.sock")), "socket removed");
            assertFalse(Files.exists(dir.resolve("run/endpoint")), "endpoint withdrawn");
        }
    }

    @Test
    void shouldLeaveTheServingHostsEndpointWhenARefusedSecondHostExits() throws Exception {
        Path data = dir.resolve("data");
        Path run = dir.resolve("run");
        try (PhostProcess first = PhostProcess.start(run, "run", "--config", config("first", data).toString())) {
            first.awaitLine("phost: ready", Duration.ofSeconds(30));
            String endpoint = Files.readString(run.resolve("endpoint"));
            try (PhostProcess second = PhostProcess.start(run, "run", "--config", config("second", data).toString())) {
                assertTrue(second.process().waitFor(30, TimeUnit.SECONDS));
                assertEquals(1, second.process().exitValue(), second.stderr());
                assertTrue(second.stderr().contains("another phost is serving"), second.stderr());
            }
            assertEquals(endpoint, Files.readString(run.resolve("endpoint")), "the serving host's record stays");
            first.process().destroy();
            assertTrue(first.process().waitFor(5, TimeUnit.SECONDS));
        }
    }

    @Test
    void shouldWarnWhenOtherUsersCanReadTheManagementToken() throws Exception {
        Path token = Files.writeString(dir.resolve("token"), "secret\n");
        Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-r--r--"));
        assertTrue(RunCommandAccess.warnIfOthersCanRead(token));
        Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-------"));
        assertFalse(RunCommandAccess.warnIfOthersCanRead(token));
    }
}
