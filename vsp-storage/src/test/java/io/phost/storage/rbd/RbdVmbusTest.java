package io.phost.storage.rbd;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.vmbus.StorvscClient;
import io.phost.storage.vmbus.StorvscQueue;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An RBD disk behind the VMBus storvsc path: a guest with two queues (two storage queue agents, so two
 * {@link RbdEngine}s share the image's completion eventfd) writes 64 KiB at a time at QD8 per queue, reads
 * every unit back through the same path, and after the host closes the disk {@code rbd export} holds the
 * same bytes.
 */
@Timeout(180)
class RbdVmbusTest {
    private static final int QUEUES = 2;
    private static final int DEPTH = 8;
    private static final int UNIT = 64 << 10;
    private static final int UNITS = 64; // 4 MiB of data, one 4 MiB RBD object boundary crossed at 4 MiB + 0
    private static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    private static byte value(int unit, int i) {
        return (byte) (unit * 31 + i / 512);
    }

    @Test
    void shouldServeAnRbdDiskOverVmbusWithTwoQueues() throws Exception {
        CephTestCluster ceph = CephTestCluster.get();
        RbdDisk disk = RbdDisk.open(ceph.options("vmbus", SIZE, false, false));
        try (PartitionHost host = new PartitionHost(Files.createDirectories(dir.resolve("host")), s -> List.of("false"),
                PartitionHost.Options.defaults());
             GuestRam ram = GuestRam.create("rbd-guest", 32L << 20)) {
            StorageVsp vsp = new StorageVsp("rbd", QUEUES - 1);
            vsp.attach(0, "rbd", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
            Partition p = host.create(PartitionSpec.external("rbd", 1, 32L << 20));
            p.offer(vsp);
            p.start();
            try (VmbusClient bus = VmbusClient.attach(host.socketPath(), "rbd", HexFormat.of().parseHex(p.credentialHex()), ram);
                 StorvscClient c = StorvscClient.connect(bus, vsp.instance(), QUEUES, DEPTH, UNIT)) {
                assertEquals(SIZE / 512, c.readCapacity(0)[0], "READ CAPACITY: blocks");
                for (boolean write : new boolean[] {true, false}) {
                    // unit u goes through queue u % 2, slot (u / 2) % 8; two passes per slot over 64 units.
                    int[] failures = {0};
                    for (int batch = 0; batch < UNITS / (QUEUES * DEPTH); batch++) {
                        for (int q = 0; q < QUEUES; q++) {
                            StorvscQueue queue = c.queue(q);
                            for (int s = 0; s < DEPTH; s++) {
                                int unit = batch * QUEUES * DEPTH + s * QUEUES + q;
                                long lba = (2L << 20) / 512 + (long) unit * UNIT / 512;
                                if (write) {
                                    for (int i = 0; i < UNIT; i++) {
                                        queue.buffer(s).set(ValueLayout.JAVA_BYTE, i, value(unit, i));
                                    }
                                    assertTrue(queue.tryWrite(s, 0, lba, UNIT / 512, 512));
                                } else {
                                    queue.buffer(s).fill((byte) 0);
                                    assertTrue(queue.tryRead(s, 0, lba, UNIT / 512, 512));
                                }
                            }
                        }
                        for (int q = 0; q < QUEUES; q++) {
                            StorvscQueue queue = c.queue(q);
                            int first = batch * QUEUES * DEPTH + q;
                            long deadline = System.nanoTime() + 60_000_000_000L;
                            while (queue.inFlight() > 0 && System.nanoTime() < deadline) {
                                queue.await((slot, scsi, srb, transferred, key, ascq) -> {
                                    if (scsi != 0 || transferred != UNIT) {
                                        failures[0]++;
                                    }
                                }, 100_000_000L);
                            }
                            assertEquals(0, queue.inFlight(), "queue " + q + " drained");
                            if (!write) {
                                for (int s = 0; s < DEPTH; s++) {
                                    int unit = first + s * QUEUES;
                                    for (int i = 0; i < UNIT; i += 4096) {
                                        assertEquals(value(unit, i), queue.buffer(s).get(ValueLayout.JAVA_BYTE, i),
                                            "unit " + unit + " byte " + i + " read back over VMBus");
                                    }
                                }
                            }
                        }
                    }
                    assertEquals(0, failures[0], (write ? "writes" : "reads") + " that failed");
                }
            }
        } finally {
            disk.close();
        }
        Path out = dir.resolve("vmbus.raw");
        ceph.run("rbd", "export", "rbd/vmbus", out.toString());
        byte[] img = Files.readAllBytes(out);
        for (int unit = 0; unit < UNITS; unit++) {
            byte[] want = new byte[UNIT];
            for (int i = 0; i < UNIT; i++) {
                want[i] = value(unit, i);
            }
            int at = (2 << 20) + unit * UNIT;
            assertArrayEquals(want, Arrays.copyOfRange(img, at, at + UNIT), "unit " + unit + " in rbd export");
        }
    }
}
