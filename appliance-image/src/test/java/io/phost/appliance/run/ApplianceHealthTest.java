package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import io.phost.storage.nbd.NbdServer;
import io.phost.vhdx.RawDisk;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** GET /health reports a component that cannot do its job (issue 16, defect 1: the NBD export's health). */
class ApplianceHealthTest {
    @TempDir
    Path dir;

    private record Part(String name, String problem) implements Component {
        @Override
        public Object status() {
            return Map.of();
        }

        @Override
        public void close() {
        }
    }

    @Test
    void shouldAnswerOkWhileEveryComponentIsWell() {
        Appliance app = new Appliance("h");
        app.add(new Part("disks", null));
        app.state("running");
        HttpResponse r = app.health();
        assertEquals(200, r.status());
        assertEquals(Map.of("status", "ok"), Json.parse(r.bodyText()));
    }

    @Test
    void shouldAnswerDegradedNamingTheComponentWhoseExportStoppedAccepting() throws Exception {
        Path img = dir.resolve("d.raw");
        RawDisk.createSparse(img, 1 << 20);
        try (RawDisk disk = RawDisk.openFile(img, false, true)) {
            NbdServer server = NbdServer.unix(dir.resolve("nbd.sock"), List.of(new NbdServer.Export("d", disk, false)));
            Appliance app = new Appliance("h");
            app.add(NbdComponent.of(server, List.of()));
            app.state("running");
            assertEquals(200, app.health().status());
            server.close(); // the accept loop is gone: new clients would not be served
            HttpResponse r = app.health();
            assertEquals(503, r.status());
            assertEquals(Map.of("status", "degraded", "problems", Map.of("nbd", "export not accepting clients: closed")),
                Json.parse(r.bodyText()));
        }
    }
}
