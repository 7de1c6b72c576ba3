package io.phost.storage.nbd;

import io.phost.core.sys.SocketFiles;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NBD server's resource bounds (issue 16, defects 1, 2 and 6): a flood of idle clients cannot take
 * memory or slots from a real client, buffers are freed on disconnect, and the socket never costs a file.
 */
@Timeout(60)
class NbdServerLimitsTest {
    private static final long SIZE = 64L << 20;
    private static final NbdServer.Limits TIGHT = new NbdServer.Limits(8, 500, 0);

    @TempDir
    Path dir;
    RawDisk disk;
    Path sock;

    @BeforeEach
    void open() throws IOException {
        Path img = dir.resolve("export.raw");
        RawDisk.createSparse(img, SIZE);
        disk = RawDisk.openFile(img, false, true);
        sock = dir.resolve("nbd.sock");
    }

    @AfterEach
    void close() throws IOException {
        disk.close();
    }

    private NbdServer serve(NbdServer.Limits limits) throws IOException {
        return NbdServer.unix(sock, List.of(new NbdServer.Export("disk", disk, false)), limits);
    }

    private SocketChannel connect() throws IOException {
        return SocketChannel.open(UnixDomainSocketAddress.of(sock));
    }

    @Test
    void shouldServeAFreshClientWhileFarMoreIdleClientsThanTheLimitHoldConnections() throws Exception {
        try (NbdServer server = serve(TIGHT)) {
            List<SocketChannel> flood = new ArrayList<>();
            try {
                for (int i = 0; i < 300; i++) {
                    flood.add(connect()); // never answers the greeting
                    assertTrue(server.connectionCount() <= 8, "connections=" + server.connectionCount());
                }
                assertTrue(server.refusedConnections() > 0, "connections past the limit are refused at accept");
                // The handshake timeout frees the slots the flood holds; a real client then gets in.
                long deadline = System.nanoTime() + 10_000_000_000L;
                byte[] data = new byte[4096];
                java.util.Arrays.fill(data, (byte) 0x5a);
                while (true) {
                    try (SocketChannel ch = connect()) {
                        NbdServerTest.go(ch, "disk");
                        NbdServerTest.writeAll(ch, ByteBuffer.allocate(28 + 4096).putInt(NbdDescriptor.REQUEST_MAGIC)
                            .putShort((short) 0).putShort((short) NbdDescriptor.CMD_WRITE).putLong(77).putLong(8192)
                            .putInt(4096).put(data).flip());
                        ByteBuffer r = NbdServerTest.readAll(ch, 16);
                        assertEquals(NbdDescriptor.SIMPLE_REPLY_MAGIC, r.getInt());
                        assertEquals(0, r.getInt());
                        break;
                    } catch (IOException | AssertionError refused) {
                        assertTrue(System.nanoTime() < deadline, "a fresh client was not served within 10 s: " + refused);
                        Thread.sleep(50);
                    }
                }
                byte[] back = new byte[4096];
                disk.read(8192, java.lang.foreign.MemorySegment.ofArray(back));
                assertArrayEquals(data, back);
                // Every flooding client that got in was dropped by the handshake timeout (EOF), none hangs.
                for (SocketChannel ch : flood) {
                    ch.configureBlocking(true);
                    ByteBuffer b = ByteBuffer.allocate(64);
                    int n;
                    while ((n = ch.read(b)) > 0) {
                        b.clear();
                    }
                    assertEquals(-1, n);
                }
            } finally {
                for (SocketChannel ch : flood) {
                    ch.close();
                }
            }
            assertEquals(null, server.problem(), "the export stays healthy");
        }
    }

    @Test
    void shouldFreeEveryBufferWhenAClientThatReadLargeBlocksDisconnects() throws Exception {
        try (NbdServer server = serve(new NbdServer.Limits(8, 10_000, 0))) {
            long idle = server.bufferBytes();
            assertEquals(0, idle);
            try (SocketChannel ch = connect()) {
                NbdServerTest.go(ch, "disk");
                // 64 pipelined 8 MiB reads: unbounded, every slot kept an 8 MiB buffer (512 MiB per connection).
                ByteBuffer reqs = ByteBuffer.allocate(64 * 28);
                for (int i = 0; i < 64; i++) {
                    reqs.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0).putShort((short) NbdDescriptor.CMD_READ)
                        .putLong(i).putLong(0).putInt(8 << 20);
                }
                NbdServerTest.writeAll(ch, reqs.flip());
                ByteBuffer sink = ByteBuffer.allocateDirect(1 << 20);
                long want = 64L * (16 + (8 << 20));
                long peak = 0;
                while (want > 0) {
                    sink.clear();
                    if (sink.capacity() > want) {
                        sink.limit((int) want);
                    }
                    int n = ch.read(sink);
                    assertTrue(n > 0);
                    want -= n;
                    peak = Math.max(peak, server.bufferBytes());
                }
                long bound = NbdServer.MAX_PAYLOAD + (2 << 20); // budget (= MAX_PAYLOAD here) + fixed buffers
                assertTrue(peak <= bound, "peak buffer bytes " + peak + " > " + bound);
                assertTrue(peak > 0);
            }
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (server.bufferBytes() != 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertEquals(0, server.bufferBytes(), "buffers of a closed connection are freed at once");
        }
    }

    @Test
    void shouldRefuseASocketPathThatIsARegularFileAndLeaveTheFileIntact() throws Exception {
        Files.writeString(sock, "a disk image lives here");
        IOException e = assertThrows(FileAlreadyExistsException.class, () -> serve(TIGHT));
        assertTrue(e.getMessage().contains("not a socket"), e.getMessage());
        assertEquals("a disk image lives here", Files.readString(sock));
    }

    @Test
    void shouldReplaceAStaleSocketAndRefuseALiveOne() throws Exception {
        try (var stale = java.nio.channels.ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            stale.bind(UnixDomainSocketAddress.of(sock));
        } // closed: the file stays, nobody listens
        assertTrue(SocketFiles.isSocket(sock));
        try (NbdServer server = serve(TIGHT)) {
            try (SocketChannel ch = connect()) {
                NbdServerTest.go(ch, "disk");
            }
            assertThrows(FileAlreadyExistsException.class, () -> serve(TIGHT));
        }
        assertTrue(!Files.exists(sock), "the server removes its own socket at close");
    }

    @Test
    void shouldCreateTheSocketOwnerOnlyWhateverTheUmask() throws Exception {
        try (NbdServer server = serve(TIGHT)) {
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(sock)));
        }
    }
}
