package io.phost.storage.vmbus;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GpaDirectRanges;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.scsi.Scsi;
import io.phost.storage.tools.Proc;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The storvsc protocol over real VMBus rings in guest memory (memfd), with the guest in this JVM
 * (an "external" partition that attaches with its credential). The two-process run is StorvspProcessTest.
 * Images: a sparse raw file (io_uring, O_DIRECT), a dynamic VHDX (io_uring-mapped engine), a RAM disk.
 */
@Timeout(120)
class StorvspInProcessTest {
    private static final long MEM = 32L << 20;
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    Path dir;
    PartitionHost host;
    StorageVsp vsp;
    GuestRam ram;
    VmbusClient bus;
    StorvscClient client;
    RawDisk raw;
    VhdxDisk vhdx;
    MemoryDisk ramDisk;

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-storvsp");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults());
        Path rawPath = dir.resolve("disk.raw");
        RawDisk.createSparse(rawPath, 64L << 20);
        raw = RawDisk.openFile(rawPath, false, true);
        vhdx = VhdxDisk.create(dir.resolve("disk.vhdx"), VhdxCreateOptions.dynamic(64L << 20).withBlockSize(1 << 20));
        ramDisk = MemoryDisk.ram(16L << 20, 512, false);
        vsp = new StorageVsp("vm1", 2);
        vsp.attach(0, "raw", raw, QosFlow.UNLIMITED, false);
        vsp.attach(1, "vhdx", vhdx, QosFlow.UNLIMITED, false);
        vsp.attach(2, "ram-ro", ramDisk, QosFlow.UNLIMITED, true);
        Partition p = host.create(PartitionSpec.external("vm1", 1, MEM));
        p.offer(vsp);
        p.start();
        ram = GuestRam.create("guest-vm1", MEM);
        bus = VmbusClient.attach(host.socketPath(), "vm1", HexFormat.of().parseHex(p.credentialHex()), ram);
        client = StorvscClient.connect(bus, vsp.instance(), 3, 16, 256 << 10);
    }

    @AfterEach
    void tearDown() throws Exception {
        client.close();
        bus.close();
        host.close();
        ram.close();
        raw.close();
        vhdx.close();
        ramDisk.close();
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        }
    }

    /** Writes a pattern with every queue and reads it back; returns nothing, asserts everything. */
    private void writeAndVerify(int lun, int blockSize) {
        for (int qi = 0; qi < client.queueCount(); qi++) {
            StorvscQueue q = client.queue(qi);
            int blocks = (64 << 10) / blockSize;
            for (int s = 0; s < 8; s++) {
                MemorySegment b = q.buffer(s);
                for (int i = 0; i < 64 << 10; i += 8) {
                    b.set(ValueLayout.JAVA_LONG, i, ((long) lun << 56) | ((long) qi << 48) | ((long) s << 32) | i);
                }
                assertTrue(q.tryWrite(s, lun, (long) (qi * 8 + s) * blocks, blocks, blockSize));
            }
            drain(q, 8, true);
            for (int s = 0; s < 8; s++) {
                q.buffer(s).fill((byte) 0);
                assertTrue(q.tryRead(s, lun, (long) (qi * 8 + s) * blocks, blocks, blockSize));
            }
            drain(q, 8, true);
            for (int s = 0; s < 8; s++) {
                assertEquals(((long) lun << 56) | ((long) qi << 48) | ((long) s << 32) | 4096,
                    q.buffer(s).get(ValueLayout.JAVA_LONG, 4096));
            }
        }
    }

    private static void drain(StorvscQueue q, int expected, boolean mustSucceed) {
        int[] done = {0};
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (done[0] < expected && System.nanoTime() < deadline) {
            q.await((slot, scsi, srb, transferred, key, ascq) -> {
                done[0]++;
                if (mustSucceed) {
                    assertEquals(0, scsi, "scsi status, sense key " + key + " asc 0x" + Integer.toHexString(ascq));
                    assertEquals(StorvscDescriptor.SRB_STATUS_SUCCESS, srb);
                }
            }, 100_000_000L);
        }
        assertEquals(expected, done[0]);
    }

    @Test
    void shouldNegotiateMultiQueueAndWriteAndReadThroughEveryQueueToRawAndVhdx() throws Exception {
        assertEquals(3, client.queueCount(), "primary + 2 sub-channels");
        assertEquals(StorvspChannel.MAX_TRANSFER_BYTES, client.maxTransferBytes());
        assertEquals(List.of(0, 1, 2), client.reportLuns());
        long[] cap = client.readCapacity(1);
        assertEquals((64L << 20) / cap[1], cap[0]);
        writeAndVerify(0, (int) client.readCapacity(0)[1]);
        writeAndVerify(1, (int) cap[1]);
        // The data is really in the images: a direct read of the raw file, qemu-io on the VHDX.
        vhdx.flush();
        raw.flush();
        byte[] rawBytes = Files.readAllBytes(dir.resolve("disk.raw"));
        long expected = ((long) 0 << 56) | ((long) 1 << 48) | ((long) 2 << 32) | 4096;
        long at = (long) (8 + 2) * (64 << 10) + 4096;
        assertEquals(expected, MemorySegment.ofArray(rawBytes).get(ValueLayout.JAVA_LONG_UNALIGNED, at));
        if (Proc.exists("qemu-img")) {
            vhdx.close();
            Path copy = dir.resolve("vhdx-as-raw.raw");
            Proc.ok(60, "qemu-img", "convert", "-f", "vhdx", "-O", "raw", dir.resolve("disk.vhdx").toString(), copy.toString());
            byte[] v = Files.readAllBytes(copy);
            long e1 = ((long) 1 << 56) | ((long) 2 << 48) | ((long) 7 << 32) | 4096;
            assertEquals(e1, MemorySegment.ofArray(v).get(ValueLayout.JAVA_LONG_UNALIGNED, (long) (16 + 7) * (64 << 10) + 4096));
            vhdx = VhdxDisk.open(dir.resolve("disk.vhdx"), false);
        }
        assertTrue(vsp.disks().get(0).stats().writes() >= 24);
        assertTrue(vsp.metrics().get("storage_lun1_reads") >= 24);
    }

    @Test
    void shouldPublishABurstOfRequestsOnceAtItsEndAndCompleteThemAll() throws Exception {
        StorvscQueue q = client.queue(0);
        long signals0 = q.channel().outbound().signalsSent();
        q.beginBatch();
        for (int s = 0; s < 8; s++) {
            assertTrue(q.tryRead(s, 0, s * 8L, 8, 512));
        }
        Thread.sleep(50);
        assertEquals(0, q.poll((slot, scsi, srb, transferred, key, ascq) -> { }), "the host saw part of an unpublished burst");
        q.endBatch();
        drain(q, 8, true);
        assertTrue(q.channel().outbound().signalsSent() - signals0 <= 1, "one burst, at most one doorbell");
    }

    @Test
    void shouldRejectWritesToAReadOnlyLunWithDataProtect() {
        StorvscQueue q = client.queue(0);
        assertTrue(q.tryWrite(3, 2, 0, 8, 512));
        int[] r = new int[3];
        q.await((slot, scsi, srb, transferred, key, ascq) -> {
            r[0] = scsi;
            r[1] = key;
            r[2] = ascq;
        }, 5_000_000_000L);
        assertEquals(Scsi.STATUS_CHECK_CONDITION, r[0]);
        assertEquals(Scsi.KEY_DATA_PROTECT, r[1]);
        assertEquals(Scsi.ASC_WRITE_PROTECTED, r[2]);
    }

    @Test
    void shouldAnswerHostileRequestsWithScsiErrorsAndTouchNothing() throws Exception {
        StorvscQueue q = client.queue(0);
        MemorySegment cdb = Arena.ofAuto().allocate(16);
        // LBA overflow: READ(16) at 2^64 - 8 for 16 blocks.
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x88);
        cdb.set(BE64, 2, -8L);
        cdb.set(BE32, 10, 16);
        int[] res = StorvscClient.runSync(q, 0, cdb, 16, StorvscDescriptor.DATA_READ, 16 * 512);
        assertEquals(Scsi.STATUS_CHECK_CONDITION, res[0]);
        assertEquals(Scsi.KEY_ILLEGAL_REQUEST, res[3]);
        assertEquals(Scsi.ASC_LBA_OUT_OF_RANGE, res[4]);
        // Transfer length in the CDB disagrees with the page list: WRITE(16) of 8 blocks with 1 KiB of pages.
        q.buffer(0).fill((byte) 0x77);
        cdb.fill((byte) 0);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x8A);
        cdb.set(BE32, 10, 8);
        res = StorvscClient.runSync(q, 0, cdb, 16, StorvscDescriptor.DATA_WRITE, 1024);
        assertEquals(Scsi.STATUS_CHECK_CONDITION, res[0]);
        assertEquals(Scsi.ASC_INVALID_FIELD_IN_CDB, res[4]);
        // An unsupported opcode and a bad LUN.
        cdb.fill((byte) 0);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) 0xE7);
        res = StorvscClient.runSync(q, 0, cdb, 10, StorvscDescriptor.DATA_UNKNOWN, 0);
        assertEquals(Scsi.ASC_INVALID_COMMAND_OPERATION_CODE, res[4]);
        res = StorvscClient.runSync(q, 200, cdb, 10, StorvscDescriptor.DATA_UNKNOWN, 0);
        assertEquals(StorvscDescriptor.SRB_STATUS_INVALID_LUN, res[1]);

        // GPA outside any GPADL: a page of guest memory the guest never granted.
        GuestRam.Buffer secret = ram.allocate(4096);
        MemorySegment vstor = Arena.ofAuto().allocate(64);
        vstor.set(ValueLayout.JAVA_INT_UNALIGNED, 0, StorvscDescriptor.OP_EXECUTE_SRB);
        vstor.set(ValueLayout.JAVA_BYTE, StorvscDescriptor.SRB_CDB_LENGTH, (byte) 16);
        vstor.set(ValueLayout.JAVA_BYTE, StorvscDescriptor.SRB_DATA_IN, (byte) StorvscDescriptor.DATA_READ);
        vstor.set(ValueLayout.JAVA_INT_UNALIGNED, StorvscDescriptor.SRB_DATA_TRANSFER_LENGTH, 4096);
        vstor.set(ValueLayout.JAVA_BYTE, StorvscDescriptor.SRB_CDB, (byte) 0x88);
        vstor.set(BE32, StorvscDescriptor.SRB_CDB + 10, 8);
        MemorySegment ranges = Arena.ofAuto().allocate(64);
        int rl = GpaDirectRanges.encode(ranges, 0, 1, new long[] {secret.gpa()}, new int[] {4096});
        raw.write(0, filled(4096, (byte) 0x5A));
        secret.segment().fill((byte) 0x11);
        assertTrue(q.trySubmitRaw(1, ranges, rl, vstor, 64));
        int[] out = new int[2];
        q.await((slot, scsi, srb, transferred, key, ascq) -> {
            out[0] = srb;
            out[1] = ascq;
        }, 5_000_000_000L);
        assertEquals(StorvscDescriptor.SRB_STATUS_INVALID_REQUEST, out[0] & 0x3F);
        assertEquals(0x11, secret.segment().get(ValueLayout.JAVA_BYTE, 100), "ungranted page untouched");
        // A page list longer than data_transfer_length: refused, disk untouched.
        vstor.set(ValueLayout.JAVA_BYTE, StorvscDescriptor.SRB_DATA_IN, (byte) StorvscDescriptor.DATA_WRITE);
        vstor.set(ValueLayout.JAVA_BYTE, StorvscDescriptor.SRB_CDB, (byte) 0x8A);
        vstor.set(ValueLayout.JAVA_INT_UNALIGNED, StorvscDescriptor.SRB_DATA_TRANSFER_LENGTH, 2048);
        rl = GpaDirectRanges.encode(ranges, 0, 1, new long[] {q.gpa(1)}, new int[] {4096});
        assertTrue(q.trySubmitRaw(1, ranges, rl, vstor, 64));
        q.await((slot, scsi, srb, transferred, key, ascq) -> out[0] = srb, 5_000_000_000L);
        assertEquals(StorvscDescriptor.SRB_STATUS_INVALID_REQUEST, out[0] & 0x3F);
        MemorySegment check = Arena.ofAuto().allocate(4096, 4096);
        raw.read(0, check);
        assertEquals((byte) 0x5A, check.get(ValueLayout.JAVA_BYTE, 0), "disk untouched");
        // And the channel still works.
        writeAndVerify(0, 512);
    }

    @Test
    void shouldHotAddAndHotRemoveLunsWhileTheGuestRuns() throws Exception {
        MemoryDisk extra = MemoryDisk.ram(8L << 20, 4096, false);
        vsp.attach(5, "hot", extra, QosFlow.UNLIMITED, false);
        long deadline = System.nanoTime() + 5_000_000_000L;
        boolean rescan = false;
        while (!rescan && System.nanoTime() < deadline) {
            client.queue(0).poll((slot, scsi, srb, transferred, key, ascq) -> { });
            rescan = client.queue(0).takeRescanRequest();
            Thread.sleep(1);
        }
        assertTrue(rescan, "guest told to rescan (ENUMERATE_BUS)");
        assertEquals(List.of(0, 1, 2, 5), client.reportLuns());
        assertEquals(4096, client.readCapacity(5)[1]);
        writeAndVerify(5, 4096);
        assertEquals(extra, vsp.detach(5, 1000));
        assertEquals(List.of(0, 1, 2), client.reportLuns());
        extra.close();
    }

    private static MemorySegment filled(int n, byte b) {
        MemorySegment s = Arena.ofAuto().allocate(n, 4096);
        s.fill(b);
        return s;
    }
}
