package io.phost.storage.nbd;

import io.phost.storage.engine.IoEngines;
import io.phost.vhdx.RawDisk;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Interop with real NBD clients. Recipe: a 64 MiB sparse raw file exported as "disk" on a Unix socket;
 * qemu-io / qemu-img / nbdinfo / nbdcopy / fio (--ioengine=nbd) talk to {@code nbd+unix:///disk?socket=...}.
 */
@Timeout(120)
class NbdServerTest {
    private static final long SIZE = 64L << 20;

    @TempDir
    Path dir;
    RawDisk disk;
    NbdServer server;
    String uri;

    @BeforeEach
    void start() throws IOException {
        Path img = dir.resolve("export.raw");
        RawDisk.createSparse(img, SIZE);
        disk = RawDisk.openFile(img, false, true);
        server = NbdServer.unix(dir.resolve("nbd.sock"), List.of(new NbdServer.Export("disk", disk, false)));
        uri = server.uri("disk");
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        disk.close();
    }

    @Test
    void shouldDescribeTheExportToNbdinfo() throws Exception {
        assumeTrue(Proc.exists("nbdinfo"), "nbdinfo (libnbd-bin) not installed");
        String json = Proc.ok(30, "nbdinfo", "--json", uri);
        assertTrue(json.contains("\"export-size\": " + SIZE), json);
        assertTrue(json.contains("base:allocation"), json);
        String list = Proc.ok(30, "nbdinfo", "--list", "nbd+unix://?socket=" + dir.resolve("nbd.sock"));
        assertTrue(list.contains("disk"), list);
    }

    @Test
    void shouldRoundTripQemuIoWritesAndReportAllocationMap() throws Exception {
        assumeTrue(Proc.exists("qemu-io"), "qemu-io (qemu-utils) not installed");
        Proc.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 1M", "-c", "flush", uri);
        Proc.ok(30, "qemu-io", "-f", "raw", "-c", "read -P 0xab 1M 1M", "-c", "read -P 0 0 1M", uri);
        Proc.ok(30, "qemu-io", "-f", "raw", "-c", "write -z 1M 64k", "-c", "discard 1600k 64k", uri);
        Proc.ok(30, "qemu-io", "-f", "raw", "-c", "read -P 0 1M 64k", "-c", "read -P 0 1600k 64k",
            "-c", "read -P 0xab 1088k 64k", uri);
        if (Proc.exists("nbdinfo")) {
            String map = Proc.ok(30, "nbdinfo", "--map", uri);
            assertTrue(map.contains("hole,zero"), map);
            assertTrue(map.matches("(?s).*\\s0\\s+data.*"), map);
        }
    }

    @Test
    void shouldConvertAndCompareWithQemuImgAndCopyWithNbdcopy() throws Exception {
        assumeTrue(Proc.exists("qemu-img"), "qemu-img not installed");
        Path src = dir.resolve("src.raw");
        byte[] data = new byte[(int) SIZE];
        Random rnd = new Random(42);
        for (int i = 0; i < data.length; i += 1 << 20) {
            if (rnd.nextBoolean()) {
                byte[] chunk = new byte[1 << 20];
                rnd.nextBytes(chunk);
                System.arraycopy(chunk, 0, data, i, chunk.length);
            }
        }
        Files.write(src, data);
        Proc.ok(120, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src.toString(), uri);
        Proc.ok(120, "qemu-img", "compare", "-f", "raw", "-F", "raw", src.toString(), uri);
        if (Proc.exists("nbdcopy")) {
            Path back = dir.resolve("back.raw");
            Proc.ok(120, "nbdcopy", uri, back.toString());
            assertArrayEquals(data, Files.readAllBytes(back));
        }
    }

    @Test
    void shouldPassFioVerifyThroughTheNbdEngine() throws Exception {
        assumeTrue(Proc.exists("fio"), "fio not installed");
        String out = Proc.ok(120, "fio", "--name=nbdverify", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite",
            "--bs=4k", "--size=8M", "--iodepth=16", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
            "--verify_state_save=0", // no local-*-verify.state file left in the working directory
            "--output-format=terse");
        assertTrue(out.contains("nbdverify"), out);
    }

    @Test
    void shouldDropHostileClientsAndKeepServingOthers() throws Exception {
        Path sock = dir.resolve("nbd.sock");
        // 1: garbage client flags.
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            readGreeting(ch);
            ch.write(ByteBuffer.allocate(4).putInt(0xFFFF_FFFF).flip());
            assertEquals(-1, ch.read(ByteBuffer.allocate(16)), "server closes on unknown client flags");
        }
        // 2: huge option length.
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            readGreeting(ch);
            ch.write(ByteBuffer.allocate(20).putInt(3).putLong(NbdDescriptor.IHAVEOPT).putInt(NbdDescriptor.OPT_GO)
                .putInt(0x7FFF_FFFF).flip());
            assertEquals(-1, ch.read(ByteBuffer.allocate(16)), "server closes rather than allocating 2 GiB");
        }
        // 3: GO with a name length past the option, then an unknown export, then transmission garbage.
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            readGreeting(ch);
            ch.write(ByteBuffer.allocate(4 + 16 + 10).putInt(3).putLong(NbdDescriptor.IHAVEOPT)
                .putInt(NbdDescriptor.OPT_GO).putInt(10).putInt(1000).putShort((short) 0).putInt(0).flip());
            assertEquals(NbdDescriptor.REP_ERR_INVALID, optionReplyType(ch));
            byte[] nm = "nope".getBytes();
            ch.write(ByteBuffer.allocate(16 + 4 + nm.length + 2).putLong(NbdDescriptor.IHAVEOPT)
                .putInt(NbdDescriptor.OPT_GO).putInt(4 + nm.length + 2).putInt(nm.length).put(nm).putShort((short) 0).flip());
            assertEquals(NbdDescriptor.REP_ERR_UNKNOWN, optionReplyType(ch));
            byte[] ok = "disk".getBytes();
            ch.write(ByteBuffer.allocate(16 + 4 + ok.length + 2).putLong(NbdDescriptor.IHAVEOPT)
                .putInt(NbdDescriptor.OPT_GO).putInt(4 + ok.length + 2).putInt(ok.length).put(ok).putShort((short) 0).flip());
            int t;
            while ((t = optionReplyType(ch)) == NbdDescriptor.REP_INFO) {
                // skip info replies
            }
            assertEquals(NbdDescriptor.REP_ACK, t);
            // A read past the end, an unaligned read, a write to offset 2^63: errors, not crashes.
            assertEquals(NbdDescriptor.EINVAL, request(ch, NbdDescriptor.CMD_READ, SIZE, 4096));
            assertEquals(NbdDescriptor.EINVAL, request(ch, NbdDescriptor.CMD_READ, 1, 4096));
            assertEquals(NbdDescriptor.EINVAL, request(ch, 99, 0, 0));
            assertEquals(NbdDescriptor.ENOSPC, request(ch, NbdDescriptor.CMD_TRIM, Long.MIN_VALUE, 4096));
            ch.write(ByteBuffer.allocate(28).putInt(0xDEADBEEF).position(28).flip());
            ByteBuffer rest = ByteBuffer.allocate(64);
            assertEquals(-1, ch.read(rest), "bad request magic closes the connection");
        }
        assumeTrue(Proc.exists("qemu-io"), "qemu-io not installed");
        Proc.ok(30, "qemu-io", "-f", "raw", "-c", "read 0 4k", uri);
    }

    @Test
    void shouldServeQemuIoOverLoopbackTcpWithNoDelay() throws Exception {
        assumeTrue(Proc.exists("qemu-io"), "qemu-io (qemu-utils) not installed");
        try (NbdServer tcp = NbdServer.tcp(0, List.of(new NbdServer.Export("disk", disk, false)))) {
            String u = tcp.uri("disk");
            assertTrue(u.startsWith("nbd://127.0.0.1:"), u);
            Proc.ok(30, "qemu-io", "-f", "raw", "-c", "write -P 0x5e 2M 64k", "-c", "read -P 0x5e 2M 64k", u);
        }
    }

    @Test
    void shouldAnswerEveryPipelinedRequestOnceWithItsOwnCookieAndData() throws Exception {
        pipelinedBurst(dir.resolve("nbd.sock"));
    }

    @Test
    void shouldAnswerPipelinedRequestsRunOnTheThreadPoolEngine() throws Exception {
        // The export's I/O runs on the disk's engine: threads complete out of order, io_uring (the default
        // above) in batches; each reply must still carry its own cookie and data.
        Path sock = dir.resolve("threads.sock");
        NbdServer.Export export = new NbdServer.Export("disk", disk, false).withEngine(IoEngines.Kind.THREADS);
        try (NbdServer threads = NbdServer.unix(sock, List.of(export))) {
            pipelinedBurst(sock);
        }
        assertTrue(export.stats().writes() >= 48 && export.stats().reads() >= 48,
            "the core LUN counted the export's I/O: " + export.stats().writes() + " writes, " + export.stats().reads() + " reads");
    }

    @Test
    void shouldHoldNbdWritesWhileTheLunIsPausedAndRunThemOnResume() throws Exception {
        // NBD I/O goes through the storage core: a checkpoint's pauseIo holds it as it holds a guest's.
        Path sock = dir.resolve("pause.sock");
        NbdServer.Export export = new NbdServer.Export("disk", disk, false);
        try (NbdServer paused = NbdServer.unix(sock, List.of(export))) {
            assertTrue(export.lun().pauseIo(1000));
            CompletableFuture<Integer> write = CompletableFuture.supplyAsync(() -> {
                try {
                    return NbdTestClient.write(sock, "disk", 0, 4096);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
            Thread.sleep(300);
            assertFalse(write.isDone(), "the write must wait while the LUN is paused");
            assertEquals(0, export.stats().writes());
            export.lun().resumeIo();
            assertEquals(0, write.get(10, TimeUnit.SECONDS));
            assertEquals(1, export.stats().writes());
        }
    }

    @Test
    void shouldEndAConnectionWhoseEngineThrowsAnErrorAndKeepServingTheOthers() throws Exception {
        // An Error while opening the engine at the first I/O (as when Agrona fails to initialise in a JVM without
        // its --add-exports) once left the connection pumping forever for a request no engine held.
        Path sock = dir.resolve("error.sock");
        java.util.concurrent.atomic.AtomicBoolean armed = new java.util.concurrent.atomic.AtomicBoolean();
        io.phost.vhdx.VirtualDisk broken = new io.phost.vhdx.VirtualDisk() {
            public long size() { return disk.size(); }
            public int logicalSectorSize() { return disk.logicalSectorSize(); }
            public int physicalSectorSize() { return disk.physicalSectorSize(); }
            public boolean readOnly() { return false; }
            public void read(long offset, java.lang.foreign.MemorySegment dst) throws IOException { disk.read(offset, dst); }
            public void write(long offset, java.lang.foreign.MemorySegment src) throws IOException { disk.write(offset, src); }
            public void flush() throws IOException { disk.flush(); }
            public void writeZeroes(long offset, long length) throws IOException { disk.writeZeroes(offset, length); }
            public String format() { return "raw"; }
            public void close() { }

            @Override
            public io.phost.vhdx.DiskCapabilities capabilities() {
                if (armed.get() && StackWalker.getInstance().walk(f -> f.anyMatch(
                    frame -> frame.getClassName().equals(IoEngines.class.getName())))) { // the queue opens its engine
                    throw new NoClassDefFoundError("test: the engine's class failed to initialise");
                }
                return io.phost.vhdx.VirtualDisk.super.capabilities();
            }
        };
        NbdServer.Export bad = new NbdServer.Export("bad", broken, false).withEngine(IoEngines.Kind.INLINE);
        try (NbdServer both = NbdServer.unix(sock, List.of(bad, new NbdServer.Export("disk", disk, false)))) {
            armed.set(true);
            CompletableFuture<Object> write = CompletableFuture.supplyAsync(() -> {
                try {
                    return NbdTestClient.write(sock, "bad", 0, 4096);
                } catch (IOException | AssertionError e) {
                    return e; // the server closed the connection without a reply
                }
            });
            Object outcome = write.get(15, TimeUnit.SECONDS);
            assertTrue(outcome instanceof Throwable, "the connection ends without an answer: " + outcome);
            for (int i = 0; i < 250 && both.connectionCount() > 0; i++) {
                Thread.sleep(20);
            }
            assertEquals(0, both.connectionCount(), "the connection thread ended and left the server");
            assertEquals(0, NbdTestClient.write(sock, "disk", 0, 4096), "the server still serves other clients");
        }
    }

    private void pipelinedBurst(Path sock) throws Exception {
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(sock));
            go(ch, "disk");
            int n = 48;
            // One burst: n writes of 4 KiB (pattern = index), an oversized write the server must skip, then a
            // lone read so the burst's tail is served too.
            ByteBuffer burst = ByteBuffer.allocate(n * (28 + 4096));
            for (int i = 0; i < n; i++) {
                burst.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0).putShort((short) NbdDescriptor.CMD_WRITE)
                    .putLong(1000 + i).putLong(i * 4096L).putInt(4096);
                for (int k = 0; k < 4096; k++) {
                    burst.put((byte) i);
                }
            }
            writeAll(ch, burst.flip());
            int big = NbdServer.MAX_PAYLOAD + 4096;
            writeAll(ch, ByteBuffer.allocate(28).putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0)
                .putShort((short) NbdDescriptor.CMD_WRITE).putLong(5000).putLong(0).putInt(big).flip());
            ByteBuffer zeros = ByteBuffer.allocate(1 << 20);
            for (int left = big; left > 0; left -= zeros.capacity()) {
                writeAll(ch, zeros.clear().limit(Math.min(left, zeros.capacity())));
            }
            boolean[] seen = new boolean[n];
            for (int i = 0; i <= n; i++) {
                ByteBuffer r = readAll(ch, 16);
                assertEquals(NbdDescriptor.SIMPLE_REPLY_MAGIC, r.getInt());
                int err = r.getInt();
                long cookie = r.getLong();
                if (cookie == 5000) {
                    assertEquals(NbdDescriptor.EINVAL, err, "an oversized write is refused, its payload skipped");
                } else {
                    assertEquals(0, err);
                    assertTrue(cookie >= 1000 && cookie < 1000 + n && !seen[(int) (cookie - 1000)], "cookie " + cookie);
                    seen[(int) (cookie - 1000)] = true;
                }
            }
            // The reads, again in one burst; replies may come in any order but each carries its own data.
            ByteBuffer reads = ByteBuffer.allocate(n * 28);
            for (int i = 0; i < n; i++) {
                reads.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0).putShort((short) NbdDescriptor.CMD_READ)
                    .putLong(2000 + i).putLong(i * 4096L).putInt(4096);
            }
            writeAll(ch, reads.flip());
            java.util.Arrays.fill(seen, false);
            for (int i = 0; i < n; i++) {
                ByteBuffer r = readAll(ch, 16);
                assertEquals(NbdDescriptor.SIMPLE_REPLY_MAGIC, r.getInt());
                assertEquals(0, r.getInt());
                int idx = (int) (r.getLong() - 2000);
                assertTrue(idx >= 0 && idx < n && !seen[idx], "cookie index " + idx);
                seen[idx] = true;
                ByteBuffer data = readAll(ch, 4096);
                for (int k = 0; k < 4096; k++) {
                    assertEquals((byte) idx, data.get(k), "read " + idx + " byte " + k);
                }
            }
            assertEquals(0, request(ch, NbdDescriptor.CMD_FLUSH, 0, 0), "the connection is still in step");
        }
    }

    /** Newstyle fixed handshake with NBD_OPT_GO (no structured replies). */
    static void go(SocketChannel ch, String name) throws IOException {
        readGreeting(ch);
        byte[] nm = name.getBytes();
        writeAll(ch, ByteBuffer.allocate(4 + 16 + 4 + nm.length + 2).putInt(3).putLong(NbdDescriptor.IHAVEOPT)
            .putInt(NbdDescriptor.OPT_GO).putInt(4 + nm.length + 2).putInt(nm.length).put(nm).putShort((short) 0).flip());
        int t;
        while ((t = optionReplyType(ch)) == NbdDescriptor.REP_INFO) {
            // skip info replies
        }
        assertEquals(NbdDescriptor.REP_ACK, t);
    }

    static void writeAll(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    static ByteBuffer readAll(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            assertTrue(ch.read(b) > 0, "server closed early");
        }
        return b.flip();
    }

    static void readGreeting(SocketChannel ch) throws IOException {
        ByteBuffer g = ByteBuffer.allocate(18);
        while (g.hasRemaining()) {
            assertTrue(ch.read(g) > 0);
        }
        g.flip();
        assertEquals(NbdDescriptor.NBDMAGIC, g.getLong());
        assertEquals(NbdDescriptor.IHAVEOPT, g.getLong());
    }

    static int optionReplyType(SocketChannel ch) throws IOException {
        ByteBuffer h = ByteBuffer.allocate(20);
        while (h.hasRemaining()) {
            assertTrue(ch.read(h) > 0);
        }
        h.flip();
        assertEquals(NbdDescriptor.OPTION_REPLY_MAGIC, h.getLong());
        h.getInt();
        int type = h.getInt();
        int len = h.getInt();
        ByteBuffer skip = ByteBuffer.allocate(len);
        while (skip.hasRemaining()) {
            ch.read(skip);
        }
        return type;
    }

    static int request(SocketChannel ch, int type, long offset, int length) throws IOException {
        ch.write(ByteBuffer.allocate(28).putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) 0).putShort((short) type)
            .putLong(77).putLong(offset).putInt(length).flip());
        ByteBuffer r = ByteBuffer.allocate(16);
        while (r.hasRemaining()) {
            assertTrue(ch.read(r) > 0);
        }
        r.flip();
        assertEquals(NbdDescriptor.SIMPLE_REPLY_MAGIC, r.getInt());
        int err = r.getInt();
        assertEquals(77, r.getLong());
        return err;
    }
}
