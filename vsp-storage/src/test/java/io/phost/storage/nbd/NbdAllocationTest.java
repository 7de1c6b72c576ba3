package io.phost.storage.nbd;

import io.phost.core.tools.AllocationWindows;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.management.ManagementFactory;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An NBD connection allocates nothing per request once warm: 4 KiB WRITEs and READs through the whole path
 * (request decode, core block request, QoS, the engine on a tmpfs file, reply batch, socket write), with the
 * connection thread's allocated-bytes counter read before and after. The client's own allocations are on
 * the test thread and not counted.
 */
@Timeout(120)
class NbdAllocationTest {
    @Test
    void shouldNotAllocatePerRequestOnTheConnectionThread() throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), "nbd-alloc", ".raw");
        Path sock = Files.createTempDirectory("nbd-alloc").resolve("nbd.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             NbdServer server = NbdServer.unix(sock, List.of(new NbdServer.Export("disk", disk, false)))) {
            Set<Thread> before = connectionThreads();
            try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(sock))) {
                NbdServerTest.go(ch, "disk");
                Thread conn = connectionThreads().stream().filter(t -> !before.contains(t)).findFirst()
                    .orElseThrow(() -> new AssertionError("no connection thread"));
                ByteBuffer request = ByteBuffer.allocateDirect(28 + 4096);
                ByteBuffer reply = ByteBuffer.allocateDirect(16 + 4096);
                run(ch, request, reply, 20_000); // warm-up: JIT, engine setup, payload buffers
                var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
                AllocationWindows.Result w = AllocationWindows.measure(5_000, () -> {
                    try {
                        run(ch, request, reply, 5_000);
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                }, () -> mx.getThreadAllocatedBytes(conn.threadId()));
                System.out.println("nbd connection bytes per 5000-request window:" + w.windows());
                assertTrue(w.withinJdkSlice(), "connection thread " + w.describe("requests"));
            }
        } finally {
            Files.deleteIfExists(file);
            Files.deleteIfExists(sock);
            Files.deleteIfExists(sock.getParent());
        }
    }

    private static Set<Thread> connectionThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("nbd-conn")).collect(Collectors.toSet());
    }

    /** Alternates 4 KiB WRITE and READ at QD1; every reply must be a success. */
    private static void run(SocketChannel ch, ByteBuffer request, ByteBuffer reply, int n) throws Exception {
        for (int i = 0; i < n; i++) {
            boolean write = (i & 1) == 0;
            request.clear();
            request.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0)
                .putShort((short) (write ? NbdDescriptor.CMD_WRITE : NbdDescriptor.CMD_READ))
                .putLong(i).putLong((i % 4000) * 4096L).putInt(4096);
            request.limit(write ? 28 + 4096 : 28).position(0);
            while (request.hasRemaining()) {
                ch.write(request);
            }
            reply.clear().limit(write ? 16 : 16 + 4096);
            while (reply.hasRemaining()) {
                if (ch.read(reply) < 0) {
                    throw new AssertionError("server closed");
                }
            }
            assertEquals(NbdDescriptor.SIMPLE_REPLY_MAGIC, reply.getInt(0));
            assertEquals(0, reply.getInt(4), "error of request " + i);
        }
    }
}
