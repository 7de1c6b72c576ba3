package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vmbus.PollingMode;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A polling vhost-user-blk worker with many requests in flight (issue 14, twelfth session), with and without the
 * opt-in in-flight window ({@code -Dphost.vhost.inFlightSpin=true}: after returning chains the worker keeps looking at
 * the rings with the driver's kicks off, so the driver's refill is popped without a kick). A driver
 * that keeps {@value #QD} requests in flight on a disk file (io_uring, requests really in flight) and kicks only when
 * the back-end asks writes then reads back every block: no request waits for a wake-up that never comes (each
 * completes well within the 10 s wait), every block reads back what was written, and the worker sleeps once idle.
 */
@Timeout(180)
class VhostUserBlkInFlightPollingTest {
    private static final int QD = 16;
    private static final int BLOCKS = 1_500;
    private static final long ALL_BUT_LOG_AND_PACKED = ~((1L << VhostUserDescriptor.F_LOG_ALL) | (1L << VhostUserDescriptor.F_RING_PACKED));

    @Test
    void shouldServeEveryRequestWithManyInFlightWhilePollingWithEventIdx() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED, "vhost-ifpoll", true);
    }

    @Test
    void shouldServeEveryRequestWithManyInFlightWhilePollingWithTheNoNotifyFlag() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED & ~(1L << VhostUserDescriptor.F_RING_EVENT_IDX), "vhost-ifpolln", true);
    }

    @Test
    void shouldServeEveryRequestWithManyInFlightUnderTheAdaptiveGovernor() throws Exception {
        run(PollingMode.ADAPTIVE, ALL_BUT_LOG_AND_PACKED, "vhost-ifpolla", true);
    }

    @Test
    void shouldServeEveryRequestWithManyInFlightWithoutTheWindow() throws Exception {
        run(PollingMode.LATENCY, ALL_BUT_LOG_AND_PACKED, "vhost-ifpolloff", false);
    }

    /** {@code window}: with {@code phost.vhost.inFlightSpin} set while the queue starts (it is read then). */
    private static void run(PollingMode mode, long wanted, String name, boolean window) throws Exception {
        String before = System.getProperty("phost.vhost.inFlightSpin");
        System.setProperty("phost.vhost.inFlightSpin", Boolean.toString(window));
        try {
            serve(mode, wanted, name);
        } finally {
            if (before == null) {
                System.clearProperty("phost.vhost.inFlightSpin");
            } else {
                System.setProperty("phost.vhost.inFlightSpin", before);
            }
        }
    }

    private static void serve(PollingMode mode, long wanted, String name) throws Exception {
        Path dir = Files.createTempDirectory(name); // a disk file, not tmpfs: O_DIRECT io_uring leaves requests in flight
        Path file = dir.resolve("d.raw");
        Path sock = dir.resolve("p.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start(name, disk, sock,
                 VhostUserBlkExport.Options.defaults().withQueues(1).withPolling(mode));
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
            f.negotiate(wanted);
            VhostUserFrontend.Queue q = f.startQueue(0, 64);
            long[] header = new long[QD];
            long[] status = new long[QD];
            long[] data = new long[QD];
            for (int s = 0; s < QD; s++) {
                header[s] = f.alloc(16, 16);
                status[s] = f.alloc(1, 1);
                data[s] = f.alloc(4096, 4096);
            }
            for (boolean write : new boolean[] {true, false}) {
                int[] blockOfSlot = new int[QD];
                int[] slotOfHead = new int[64];
                int next = 0;
                int done = 0;
                int inFlight = 0;
                while (done < BLOCKS) {
                    while (inFlight < QD && next < BLOCKS) {
                        int s = next % QD; // slot s is free: requests complete in any order, but a slot is reused
                        s = freeSlot(blockOfSlot, inFlight == 0, s);
                        blockOfSlot[s] = next + 1;
                        MemorySegment d = f.at(data[s], 4096);
                        if (write) {
                            d.fill((byte) next);
                            d.set(ValueLayout.JAVA_INT_UNALIGNED, 0, next);
                        } else {
                            d.fill((byte) 0);
                        }
                        MemorySegment h = f.at(header[s], 16);
                        h.set(LE32, 0, write ? T_OUT : T_IN);
                        h.set(LE32, 4, 0);
                        h.set(LE64, 8, next * 8L);
                        f.at(status[s], 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                        int head = q.add(new long[] {header[s], data[s], status[s]}, new int[] {16, 4096, 1},
                            new boolean[] {false, !write, true});
                        slotOfHead[head] = s;
                        q.kickIfNeeded();
                        next++;
                        inFlight++;
                    }
                    int[] used = q.awaitUsed(10_000);
                    if (used == null) {
                        throw new AssertionError(name + " " + mode + ": no completion in 10 s with " + inFlight + " in flight ("
                            + (write ? "writes" : "reads") + ", " + done + " done): a lost wake-up");
                    }
                    int s = slotOfHead[used[0]];
                    int block = blockOfSlot[s] - 1;
                    assertEquals(S_OK, f.at(status[s], 1).get(ValueLayout.JAVA_BYTE, 0), name + ": block " + block);
                    if (!write) {
                        MemorySegment d = f.at(data[s], 4096);
                        assertEquals(block, d.get(ValueLayout.JAVA_INT_UNALIGNED, 0), name + ": block " + block + " read back");
                        assertEquals((byte) block, d.get(ValueLayout.JAVA_BYTE, 4095), name + ": block " + block + " last byte");
                    }
                    blockOfSlot[s] = 0;
                    inFlight--;
                    done++;
                }
            }
            VhostUserBlkPollingTest.assertIdleWorkerSleeps(name);
        } finally {
            Files.deleteIfExists(sock);
            Files.deleteIfExists(file);
            Files.deleteIfExists(dir);
        }
    }

    /** The first free slot from {@code from} on (one exists: fewer than QD are in flight). */
    private static int freeSlot(int[] blockOfSlot, boolean any, int from) {
        for (int i = 0; i < QD; i++) {
            int s = (from + i) % QD;
            if (blockOfSlot[s] == 0) {
                return s;
            }
        }
        throw new IllegalStateException("no free slot" + (any ? " with none in flight" : ""));
    }
}
