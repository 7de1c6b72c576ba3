package io.phost.storage.nbd;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.storage.backend.MemoryDisk;
import java.io.IOException;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fuzzes both NBD phases against one server (issue 16, going further): random option sequences (well-framed
 * options with random codes and payloads, and raw garbage) and, after a real GO, random request streams
 * (random types, flags, offsets and lengths around the interesting edges, write payloads, garbage). Each
 * case half-closes and drains: the server must end the conversation within 5 s (never hang), keep
 * accepting, report no problem, and at the end hold no connection and no buffer. Default 1,000 cases per
 * phase (~10 s on 2 idle cores: every case is a connection); {@code -Dphost.soak=true} runs 100,000 per phase.
 * A failing case prints its seed.
 */
class NbdFuzzTest {
    /** Cases per phase; {@code -Dphost.nbd.fuzzCases=N} overrides (e.g. a shorter soak). */
    private static final int CASES = Integer.getInteger("phost.nbd.fuzzCases", Boolean.getBoolean("phost.soak") ? 100_000 : 1_000);
    private static final long SIZE = 4L << 20;
    private static final long[] LENGTHS = {0, 1, 511, 512, 4096, 65536, 1 << 20, NbdServer.MAX_PAYLOAD,
        NbdServer.MAX_PAYLOAD + 1L, 0x7FFF_FFFFL, 0xFFFF_FFFFL};
    private static final long[] OFFSETS = {0, 512, 4096, SIZE - 512, SIZE, SIZE + 512, -1, Long.MIN_VALUE, 1L << 62};
    private static final int[] OPTIONS = {NbdDescriptor.OPT_EXPORT_NAME, NbdDescriptor.OPT_ABORT, NbdDescriptor.OPT_LIST,
        NbdDescriptor.OPT_STARTTLS, NbdDescriptor.OPT_INFO, NbdDescriptor.OPT_GO, NbdDescriptor.OPT_STRUCTURED_REPLY,
        NbdDescriptor.OPT_LIST_META_CONTEXT, NbdDescriptor.OPT_SET_META_CONTEXT, 0, 4, 11, 0x7FFF_FFFF, -1};

    @TempDir
    Path dir;
    MemoryDisk disk;
    NbdServer server;
    Path sock;
    final ScheduledExecutorService watchdog = Executors.newSingleThreadScheduledExecutor();

    @BeforeEach
    void start() throws IOException {
        disk = MemoryDisk.ram(SIZE, 512, false);
        sock = dir.resolve("nbd.sock");
        server = NbdServer.unix(sock, List.of(new NbdServer.Export("disk", disk, false)),
            new NbdServer.Limits(64, 5_000, 0));
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        disk.close();
        watchdog.shutdownNow();
    }

    @Test
    void shouldEndEveryFuzzedOptionHaggleWithoutHangingOrFailing() throws Exception {
        Random seeds = new Random(16);
        for (int i = 0; i < CASES; i++) {
            long seed = seeds.nextLong();
            runCase(seed, false);
        }
        System.out.println("nbd fuzz: " + CASES + " option-phase cases");
        assertServerClean();
    }

    @Test
    void shouldEndEveryFuzzedRequestStreamWithoutHangingOrFailing() throws Exception {
        Random seeds = new Random(61);
        for (int i = 0; i < CASES; i++) {
            long seed = seeds.nextLong();
            runCase(seed, true);
        }
        System.out.println("nbd fuzz: " + CASES + " transmission-phase cases");
        assertServerClean();
    }

    private void runCase(long seed, boolean transmission) throws Exception {
        // Connections close asynchronously; on a loaded host teardown can lag the fuzzer, which must not
        // then trip the connection limit (a real leak still fails assertServerClean at the end).
        long until = System.nanoTime() + 10_000_000_000L;
        while (server.connectionCount() >= 32 && System.nanoTime() < until) {
            Thread.sleep(1);
        }
        Random r = new Random(seed);
        AtomicBoolean hung = new AtomicBoolean();
        try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(sock))) {
            ScheduledFuture<?> dog = watchdog.schedule(() -> {
                hung.set(true);
                try {
                    ch.close();
                } catch (IOException ignored) {
                    // closing anyway
                }
            }, 5, TimeUnit.SECONDS);
            try {
                ByteBuffer out = ByteBuffer.allocate(1 << 16);
                if (transmission) {
                    try {
                        NbdServerTest.go(ch, "disk");
                    } catch (AssertionError | IOException e) {
                        throw new AssertionError("GO failed before case seed=" + seed + ": connections="
                            + server.connectionCount() + " refused=" + server.refusedConnections() + "\n" + stacks(), e);
                    }
                    requests(out, r);
                } else {
                    options(out, r);
                }
                out.flip();
                try {
                    NbdServerTest.writeAll(ch, out);
                    ch.shutdownOutput();
                } catch (IOException closedEarly) {
                    // the server may drop a hostile client before reading everything: that is allowed
                }
                drain(ch);
            } catch (IOException e) {
                // a reset from a server that dropped us is an acceptable end, a hang is not
            } finally {
                dog.cancel(false);
            }
        }
        assertTrue(!hung.get(), "case seed=" + seed + (transmission ? " (transmission)" : " (options)")
            + " did not end within 5 s");
        assertNull(server.problem(), "server problem after case seed=" + seed);
    }

    private static String stacks() {
        StringBuilder b = new StringBuilder();
        java.util.Map<String, Integer> seen = new java.util.HashMap<>();
        Thread.getAllStackTraces().forEach((t, st) -> {
            if (t.getName().startsWith("nbd")) {
                StringBuilder one = new StringBuilder();
                for (int i = 0; i < Math.min(12, st.length); i++) {
                    one.append("    at ").append(st[i]).append('\n');
                }
                seen.merge(t.getName() + " " + t.getState() + "\n" + one, 1, Integer::sum);
            }
        });
        seen.forEach((k, v) -> b.append(v).append(" x ").append(k));
        return b.toString();
    }

    private final ByteBuffer sink = ByteBuffer.allocateDirect(1 << 20);

    private void drain(SocketChannel ch) throws IOException {
        ByteBuffer b = sink;
        while (ch.read(b.clear()) >= 0) {
            // replies are not checked here (NbdServerTest does); only that the stream ends
        }
    }

    /** Client flags then 1-6 options: well-framed with random codes and payloads, or raw garbage. */
    private static void options(ByteBuffer out, Random r) {
        out.putInt(r.nextInt(8) == 0 ? r.nextInt() : NbdDescriptor.FLAG_C_FIXED_NEWSTYLE | (r.nextBoolean() ? NbdDescriptor.FLAG_C_NO_ZEROES : 0));
        int n = 1 + r.nextInt(6);
        for (int k = 0; k < n && out.remaining() > 4096; k++) {
            if (r.nextInt(10) == 0) {
                garbage(out, r);
                continue;
            }
            int option = OPTIONS[r.nextInt(OPTIONS.length)];
            byte[] payload = switch (r.nextInt(4)) {
                case 0 -> new byte[0];
                case 1 -> exportRequest(r, "disk");
                case 2 -> exportRequest(r, r.nextBoolean() ? "nope" : "");
                default -> randomBytes(r, r.nextInt(128));
            };
            out.putLong(r.nextInt(30) == 0 ? r.nextLong() : NbdDescriptor.IHAVEOPT).putInt(option);
            int declared = r.nextInt(15) == 0 ? (int) LENGTHS[r.nextInt(LENGTHS.length)] : payload.length;
            out.putInt(declared).put(payload, 0, Math.min(payload.length, out.remaining() - 4096));
        }
    }

    /** GO/INFO/META_CONTEXT-shaped payload: u32 name length | name | u16 count | u16/u32 items. */
    private static byte[] exportRequest(Random r, String name) {
        byte[] nm = name.getBytes(StandardCharsets.UTF_8);
        int items = r.nextInt(4);
        ByteBuffer b = ByteBuffer.allocate(4 + nm.length + 4 + items * 24);
        b.putInt(r.nextInt(10) == 0 ? r.nextInt() : nm.length).put(nm);
        if (r.nextBoolean()) {
            b.putShort((short) items);
            for (int i = 0; i < items; i++) {
                b.putShort((short) r.nextInt(5));
            }
        } else {
            b.putInt(items);
            for (int i = 0; i < items; i++) {
                byte[] q = (r.nextBoolean() ? "base:allocation" : "base:").getBytes(StandardCharsets.US_ASCII);
                b.putInt(r.nextInt(10) == 0 ? r.nextInt() : q.length).put(q);
            }
        }
        return java.util.Arrays.copyOf(b.array(), b.position());
    }

    /** 1-24 requests: random types, flags, offsets and lengths, small write payloads, sometimes garbage. */
    private static void requests(ByteBuffer out, Random r) {
        int n = 1 + r.nextInt(24);
        for (int k = 0; k < n && out.remaining() > 8192; k++) {
            if (r.nextInt(20) == 0) {
                garbage(out, r);
                continue;
            }
            int type = r.nextInt(10) == 0 ? r.nextInt(1 << 16) : r.nextInt(9);
            int flags = r.nextInt(4) == 0 ? r.nextInt(1 << 16) : (r.nextBoolean() ? NbdDescriptor.CMD_FLAG_FUA : 0);
            long offset = r.nextBoolean() ? OFFSETS[r.nextInt(OFFSETS.length)] : 512L * r.nextInt((int) (SIZE / 512) + 8);
            long length = r.nextBoolean() ? LENGTHS[r.nextInt(LENGTHS.length)] : 512L * r.nextInt(64);
            if (type == NbdDescriptor.CMD_READ && length > (1 << 20) && length <= NbdServer.MAX_PAYLOAD) {
                length = 1 << 20; // large valid reads cost the test time, not the server coverage
            }
            out.putInt(NbdDescriptor.REQUEST_MAGIC).putShort((short) flags).putShort((short) type).putLong(r.nextLong())
                .putLong(offset).putInt((int) length);
            if (type == NbdDescriptor.CMD_WRITE) {
                int send = (int) Math.min(length, Math.min(4096, out.remaining() - 4096));
                out.put(randomBytes(r, send)); // a short payload leaves the server waiting for the rest until EOF
                if (send < length) {
                    return;
                }
            }
            if (type == NbdDescriptor.CMD_DISC) {
                return;
            }
        }
    }

    private static void garbage(ByteBuffer out, Random r) {
        out.put(randomBytes(r, Math.min(out.remaining() - 4096, 1 + r.nextInt(64))));
    }

    private static byte[] randomBytes(Random r, int n) {
        byte[] b = new byte[Math.max(0, n)];
        r.nextBytes(b);
        return b;
    }

    private void assertServerClean() throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while ((server.connectionCount() > 0 || server.bufferBytes() > 0) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertEquals(0, server.connectionCount(), "connections left behind");
        assertEquals(0, server.bufferBytes(), "buffers left behind");
        assertEquals(SIZE, disk.size());
        try (SocketChannel ch = SocketChannel.open(UnixDomainSocketAddress.of(sock))) {
            NbdServerTest.go(ch, "disk");
            assertEquals(0, NbdServerTest.request(ch, NbdDescriptor.CMD_READ, 0, 4096), "a good client is still served");
        }
    }
}
