package io.phost.storage.nbd;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.phost.qos.ManagedQosFlow;
import io.phost.qos.QosPolicy;
import io.phost.qos.QosService;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.tools.Proc;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Issue 13: NBD I/O is admitted by the disk's QoS flow and counted in its statistics, as guest I/O is. */
class NbdQosTest {
    private static final int LIMIT_IOPS = 50;
    private static final int READS = 150;

    @TempDir
    Path dir;

    @Test
    void shouldHoldAnNbdClientToTheDisksIopsLimitAndCountItInTheFlow() throws Exception {
        assumeTrue(Proc.exists("qemu-io"), "qemu-io (qemu-utils) not installed");
        QosService qos = new QosService();
        qos.updatePolicy(QosPolicy.dedicated("cap", 0, LIMIT_IOPS));
        ManagedQosFlow flow = qos.createFlow("nbd", "d", "cap");
        try (MemoryDisk disk = MemoryDisk.ram(16 << 20, 512, false);
             NbdServer server = NbdServer.unix(dir.resolve("nbd.sock"),
                 List.of(new NbdServer.Export("d", disk, false).withQos(flow)))) {
            List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
            for (int i = 0; i < READS; i++) {
                cmd.add("-c");
                cmd.add("read " + (i * 8) + "k 8k"); // one 8 KiB read: one normalized I/O
            }
            cmd.add(server.uri("d"));
            long t0 = System.nanoTime();
            Proc.ok(120, cmd.toArray(String[]::new));
            double seconds = (System.nanoTime() - t0) / 1e9;
            assertTrue(flow.totalCompleted() >= READS, "the flow saw " + flow.totalCompleted() + " of " + READS + " reads");
            // Unthrottled, 150 reads from RAM take milliseconds; at 50 IOPS they take about 3 s (less a burst).
            assertTrue(seconds >= (READS - LIMIT_IOPS / 2.0) / LIMIT_IOPS,
                READS + " reads at a " + LIMIT_IOPS + " IOPS limit took only " + seconds + " s");
        }
    }
}
