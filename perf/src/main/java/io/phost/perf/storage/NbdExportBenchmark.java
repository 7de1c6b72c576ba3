package io.phost.perf.storage;

import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.nbd.NbdServer;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * 4 KiB NBD READ and WRITE round trips against {@link NbdServer} over a Unix socket, from a client whose
 * buffers are all preallocated, on a RAM disk: the export's per-request cost (decode, dispatch, disk view,
 * reply) with the socket hop included. With {@code -prof gc} the {@code gc.alloc.rate.norm} line counts
 * every thread of the JVM, so it covers the server's connection thread and engine threads too; the steady
 * path should show about 0 B/op. {@code qd8} sends eight requests in one write (a pipelined burst) and reads
 * eight replies. {@code engine} is the export's I/O engine: AUTO (inline for a RAM disk, on the connection's
 * thread) or THREADS (the thread-pool engine: a hop to a worker and back per request).
 * <pre>
 *   phost bench jmh NbdExportBenchmark --prof gc
 * </pre>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED", "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED"})
public class NbdExportBenchmark {
    // Protocol constants (NbdDescriptor is package-private to the server): see its layout diagram.
    private static final long IHAVEOPT = 0x49484156454F5054L;
    private static final int OPT_GO = 7;
    private static final int REP_ACK = 1;
    private static final int REQUEST_MAGIC = 0x25609513;
    private static final int SIMPLE_REPLY_MAGIC = 0x67446698;
    private static final int CMD_READ = 0;
    private static final int CMD_WRITE = 1;
    private static final int BLOCK = 4096;
    private static final int BURST = 8;
    private static final long DISK = 64L << 20;

    @Param({"AUTO", "THREADS"})
    public String engine;

    private Path dir;
    private MemoryDisk disk;
    private NbdServer server;
    private SocketChannel ch;
    private final ByteBuffer request = ByteBuffer.allocateDirect(BURST * (28 + BLOCK)).order(ByteOrder.BIG_ENDIAN);
    private final ByteBuffer reply = ByteBuffer.allocateDirect(BURST * (16 + BLOCK)).order(ByteOrder.BIG_ENDIAN);
    private long cookie;
    private long offset;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        dir = Files.createTempDirectory("nbd-bench");
        disk = MemoryDisk.ram(DISK, 512, false);
        NbdServer.Export export = new NbdServer.Export("bench", disk, false).withEngine(IoEngines.Kind.valueOf(engine));
        server = NbdServer.unix(dir.resolve("nbd.sock"), List.of(export));
        ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(dir.resolve("nbd.sock")));
        handshake();
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        ch.close();
        server.close();
        disk.close();
        Files.deleteIfExists(dir.resolve("nbd.sock"));
        Files.deleteIfExists(dir);
    }

    @Benchmark
    public int read4kQd1() throws IOException {
        request.clear();
        putRequest(CMD_READ, false);
        send();
        return receive(1, true);
    }

    @Benchmark
    public int write4kQd1() throws IOException {
        request.clear();
        putRequest(CMD_WRITE, true);
        send();
        return receive(1, false);
    }

    @Benchmark
    @org.openjdk.jmh.annotations.OperationsPerInvocation(BURST)
    public int read4kQd8() throws IOException {
        request.clear();
        for (int i = 0; i < BURST; i++) {
            putRequest(CMD_READ, false);
        }
        send();
        return receive(BURST, true);
    }

    private void putRequest(int type, boolean payload) {
        offset = (offset + BLOCK) & (DISK - 1);
        request.putInt(REQUEST_MAGIC).putShort((short) 0).putShort((short) type).putLong(cookie++).putLong(offset)
            .putInt(BLOCK);
        if (payload) {
            request.position(request.position() + BLOCK); // whatever the buffer holds: the bytes are not checked
        }
    }

    private void send() throws IOException {
        request.flip();
        while (request.hasRemaining()) {
            ch.write(request);
        }
    }

    /** Reads {@code n} simple replies (each with 4 KiB of data for reads); returns the OR of their errors. */
    private int receive(int n, boolean data) throws IOException {
        reply.clear().limit(n * (16 + (data ? BLOCK : 0)));
        while (reply.hasRemaining()) {
            if (ch.read(reply) < 0) {
                throw new IOException("server closed");
            }
        }
        int errors = 0;
        for (int i = 0, at = 0; i < n; i++, at += 16 + (data ? BLOCK : 0)) {
            if (reply.getInt(at) != SIMPLE_REPLY_MAGIC) {
                throw new IOException("bad reply magic at " + at);
            }
            errors |= reply.getInt(at + 4);
        }
        if (errors != 0) {
            throw new IOException("NBD error " + errors);
        }
        return errors;
    }

    private void handshake() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(64).order(ByteOrder.BIG_ENDIAN);
        readFully(b.limit(18));
        byte[] name = "bench".getBytes(StandardCharsets.US_ASCII);
        ByteBuffer go = ByteBuffer.allocate(4 + 16 + 4 + name.length + 2).order(ByteOrder.BIG_ENDIAN);
        go.putInt(3).putLong(IHAVEOPT).putInt(OPT_GO).putInt(4 + name.length + 2).putInt(name.length).put(name)
            .putShort((short) 0).flip();
        while (go.hasRemaining()) {
            ch.write(go);
        }
        while (true) {
            ByteBuffer h = ByteBuffer.allocate(20).order(ByteOrder.BIG_ENDIAN);
            readFully(h);
            h.flip().position(12);
            int type = h.getInt();
            int len = h.getInt();
            readFully(ByteBuffer.allocate(len));
            if (type == REP_ACK) {
                return;
            }
            if (type < 0) {
                throw new IOException("NBD_OPT_GO refused: 0x" + Integer.toHexString(type));
            }
        }
    }

    private void readFully(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new IOException("server closed during handshake");
            }
        }
    }
}
