package io.phost.core.ic;

import io.phost.core.sys.Poll;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.VmbusClient;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * The guest side of the integration services: opens heartbeat, shutdown, time sync, KVP and backup (VSS) when
 * offered and serves them from one thread that sleeps in poll(2) on their doorbells when idle. A freeze request
 * goes to the program's {@link WriteQuiescer} (none set: answered "unsupported"); a frozen guest thaws by itself
 * when the request's timeout passes without a thaw, so a host that dies mid-checkpoint cannot hold it forever.
 */
public final class GuestIntegration implements AutoCloseable {
    private final VmbusClient bus;
    private final Consumer<String> onShutdown;
    private final List<ClientChannel> channels = new ArrayList<>();
    private ClientChannel heartbeat;
    private ClientChannel shutdown;
    private ClientChannel timesync;
    private ClientChannel kvp;
    private ClientChannel vss;
    private volatile WriteQuiescer quiescer;
    private volatile long freezeGeneration;
    private final Map<String, String> hostValues = new ConcurrentHashMap<>();
    private final MemorySegment reply = Arena.ofAuto().allocate(IcMessage.MAX_MESSAGE, 8);
    private final MemorySegment pollFds;
    private final Thread thread;
    private volatile boolean running = true;
    private volatile boolean answerHeartbeats = true;
    private volatile long heartbeatsAnswered;
    private volatile long clockOffsetNanos;
    private volatile long timeSamples;

    /**
     * Opens every integration service the host offered and starts serving them.
     *
     * @param onShutdown called (on the service thread) with the reason after the request was acknowledged
     */
    public GuestIntegration(VmbusClient bus, Consumer<String> onShutdown) {
        this.bus = bus;
        this.onShutdown = onShutdown;
        heartbeat = openIfOffered(IcMessage.HEARTBEAT_TYPE);
        shutdown = openIfOffered(IcMessage.SHUTDOWN_TYPE);
        timesync = openIfOffered(IcMessage.TIMESYNC_TYPE);
        kvp = openIfOffered(IcMessage.KVP_TYPE);
        vss = openIfOffered(IcMessage.VSS_TYPE);
        pollFds = Arena.ofAuto().allocate(Poll.POLLFD_SIZE * Math.max(1, channels.size()), 8);
        thread = new Thread(this::serve, "guest-ic");
        thread.setDaemon(true);
        thread.start();
    }

    private ClientChannel openIfOffered(UUID type) {
        for (ChannelOffer o : bus.offers()) {
            if (o.interfaceType().equals(type) && o.subChannelIndex() == 0) {
                ClientChannel ch = bus.open(o, 4, null);
                channels.add(ch);
                return ch;
            }
        }
        return null;
    }

    /** The program's freeze/thaw of its writes, for the host's application-consistent checkpoints. */
    public void quiescer(WriteQuiescer q) {
        quiescer = q;
    }

    /** Tests: stop answering heartbeats (simulates a hung guest). */
    public void answerHeartbeats(boolean answer) {
        answerHeartbeats = answer;
    }

    public long heartbeatsAnswered() {
        return heartbeatsAnswered;
    }

    /** Host wall clock minus ours at the last sample (ns); the guest adds it to correct its clock. */
    public long clockOffsetNanos() {
        return clockOffsetNanos;
    }

    public long timeSamples() {
        return timeSamples;
    }

    /** Pairs the host set in our external pool. */
    public Map<String, String> hostValues() {
        return Map.copyOf(hostValues);
    }

    /** Publishes a guest pair to the host (thread-safe). */
    public void publish(String key, String value) {
        if (kvp == null) {
            throw new IllegalStateException("host offers no KVP service");
        }
        byte[] k = key.getBytes(StandardCharsets.UTF_8);
        byte[] v = value.getBytes(StandardCharsets.UTF_8);
        MemorySegment m = Arena.ofAuto().allocate(IcMessage.KVP_KEY + k.length + v.length, 8);
        IcMessage.header(m, IcMessage.KVP, IcMessage.KVP_KEY - IcMessage.PAYLOAD + k.length + v.length, 0);
        m.set(ValueLayout.JAVA_BYTE, IcMessage.KVP_OP, (byte) IcMessage.KVP_GUEST_SET);
        m.set(IcMessage.U16, IcMessage.KVP_KEY_LEN, (short) k.length);
        m.set(IcMessage.U16, IcMessage.KVP_VALUE_LEN, (short) v.length);
        MemorySegment.copy(k, 0, m, ValueLayout.JAVA_BYTE, IcMessage.KVP_KEY, k.length);
        MemorySegment.copy(v, 0, m, ValueLayout.JAVA_BYTE, IcMessage.KVP_KEY + k.length, v.length);
        synchronized (kvp) {
            kvp.write(PacketDescriptor.TYPE_INBAND, 0, 0, m, 0, (int) m.byteSize(), Duration.ofSeconds(5));
        }
    }

    private final PacketHandler heartbeatHandler = (buf, off, len, type, flags, transId) -> {
        if (!answerHeartbeats) {
            return true;
        }
        long d = PacketDescriptor.dataOffset(buf, off);
        long seq = buf.get(IcMessage.U64, d + IcMessage.PAYLOAD);
        IcMessage.header(reply, IcMessage.HEARTBEAT, 8, seq);
        reply.set(IcMessage.U64, IcMessage.PAYLOAD, seq + 1);
        if (!heartbeat.tryWrite(PacketDescriptor.TYPE_COMPLETION, 0, transId, reply, 0, IcMessage.PAYLOAD + 8)) {
            return false;
        }
        heartbeatsAnswered++;
        return true;
    };

    private final PacketHandler timeHandler = (buf, off, len, type, flags, transId) -> {
        long d = PacketDescriptor.dataOffset(buf, off);
        long host = buf.get(IcMessage.U64, d + IcMessage.PAYLOAD);
        java.time.Instant now = java.time.Instant.now();
        clockOffsetNanos = host - (now.getEpochSecond() * 1_000_000_000L + now.getNano());
        timeSamples++;
        return true;
    };

    private final PacketHandler kvpHandler = (buf, off, len, type, flags, transId) -> {
        long d = PacketDescriptor.dataOffset(buf, off);
        int n = PacketDescriptor.dataLength(buf, off, len);
        int kl = buf.get(IcMessage.U16, d + IcMessage.KVP_KEY_LEN) & 0xffff;
        int vl = buf.get(IcMessage.U16, d + IcMessage.KVP_VALUE_LEN) & 0xffff;
        if (n < IcMessage.KVP_KEY || kl > IcMessage.MAX_KEY || vl > IcMessage.MAX_VALUE || IcMessage.KVP_KEY + kl + vl > n) {
            return true; // a guest ignores malformed host messages
        }
        byte[] k = new byte[kl];
        byte[] v = new byte[vl];
        MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, d + IcMessage.KVP_KEY, k, 0, kl);
        MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, d + IcMessage.KVP_KEY + kl, v, 0, vl);
        String key = new String(k, StandardCharsets.UTF_8);
        if (buf.get(ValueLayout.JAVA_BYTE, d + IcMessage.KVP_OP) == IcMessage.KVP_DELETE) {
            hostValues.remove(key);
        } else {
            hostValues.put(key, new String(v, StandardCharsets.UTF_8));
        }
        return true;
    };

    private String shutdownReason;
    private final PacketHandler shutdownHandler = (buf, off, len, type, flags, transId) -> {
        long d = PacketDescriptor.dataOffset(buf, off);
        int n = PacketDescriptor.dataLength(buf, off, len);
        int tl = Math.max(0, Math.min(n - IcMessage.PAYLOAD - 4, 256));
        byte[] text = new byte[tl];
        MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, d + IcMessage.PAYLOAD + 4, text, 0, tl);
        IcMessage.header(reply, IcMessage.SHUTDOWN, 0, 0);
        if (!shutdown.tryWrite(PacketDescriptor.TYPE_COMPLETION, 0, transId, reply, 0, IcMessage.PAYLOAD)) {
            return false;
        }
        shutdownReason = new String(text, StandardCharsets.UTF_8);
        return true;
    };

    private final PacketHandler vssHandler = (buf, off, len, type, flags, transId) -> {
        long d = PacketDescriptor.dataOffset(buf, off);
        int n = PacketDescriptor.dataLength(buf, off, len);
        int status;
        if (n < IcMessage.PAYLOAD + 8) {
            status = IcMessage.VSS_FAILED; // a guest ignores malformed host messages, but answers them
        } else {
            int op = buf.get(IcMessage.U32, d + IcMessage.VSS_OP);
            long holdMillis = Math.max(1, buf.get(IcMessage.U32, d + IcMessage.VSS_TIMEOUT_MS) & 0xffffffffL);
            status = vssRequest(op, holdMillis);
        }
        IcMessage.header(reply, IcMessage.VSS, 0, 0);
        reply.set(IcMessage.U16, IcMessage.STATUS, (short) status);
        vss.tryWrite(PacketDescriptor.TYPE_COMPLETION, 0, transId, reply, 0, IcMessage.PAYLOAD);
        return true; // a full ring drops the answer: the host times out and says so, never holding us
    };

    private int vssRequest(int op, long holdMillis) {
        WriteQuiescer q = quiescer;
        if (q == null) {
            return IcMessage.VSS_UNSUPPORTED;
        }
        if (op == IcMessage.VSS_THAW) {
            freezeGeneration++;
            return q.thaw() ? IcMessage.VSS_OK : IcMessage.VSS_NOT_FROZEN;
        }
        if (op != IcMessage.VSS_FREEZE) {
            return IcMessage.VSS_FAILED;
        }
        if (!q.freeze(Duration.ofMillis(Math.min(holdMillis, 5000)))) {
            return IcMessage.VSS_FAILED;
        }
        long generation = ++freezeGeneration;
        Thread.ofVirtual().start(() -> { // the guest's own limit: thaw if the host never does
            try {
                Thread.sleep(holdMillis);
            } catch (InterruptedException e) {
                return;
            }
            if (freezeGeneration == generation && q.thaw()) {
                System.err.println("guest integration: writes thawed by the freeze timeout (" + holdMillis + " ms)");
            }
        });
        return IcMessage.VSS_OK;
    }

    private void serve() {
        int idle = 0;
        try {
            while (running) {
                int work = 0;
                if (heartbeat != null) {
                    work += heartbeat.tryRead(heartbeatHandler, 16);
                }
                if (timesync != null) {
                    work += timesync.tryRead(timeHandler, 16);
                }
                if (kvp != null) {
                    work += kvp.tryRead(kvpHandler, 16);
                }
                if (shutdown != null) {
                    work += shutdown.tryRead(shutdownHandler, 1);
                }
                if (vss != null) {
                    work += vss.tryRead(vssHandler, 1);
                }
                if (shutdownReason != null) {
                    String r = shutdownReason;
                    shutdownReason = null;
                    onShutdown.accept(r);
                }
                if (work > 0) {
                    idle = 0;
                    continue;
                }
                if (++idle < 100) {
                    Thread.onSpinWait();
                    continue;
                }
                sleepOnDoorbells();
                idle = 0;
            }
        } catch (RuntimeException e) {
            if (running) {
                System.err.println("guest integration services stopped: " + e);
            }
        }
    }

    /** Arms every inbound ring, then sleeps in poll(2) on all doorbells unless a packet raced in. */
    private void sleepOnDoorbells() {
        int n = 0;
        boolean empty = true;
        for (ClientChannel ch : channels) {
            if (!ch.isOpen()) {
                continue;
            }
            empty &= ch.inbound().armInterrupt();
            pollFds.set(ValueLayout.JAVA_INT, Poll.POLLFD_SIZE * n, ch.hostDoorbellFd());
            pollFds.set(ValueLayout.JAVA_SHORT, Poll.POLLFD_SIZE * n + 4, (short) Poll.POLLIN);
            pollFds.set(ValueLayout.JAVA_SHORT, Poll.POLLFD_SIZE * n + 6, (short) 0);
            n++;
        }
        if (empty && n > 0) {
            Poll.poll(pollFds, n, 500);
        } else if (n == 0) {
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        for (ClientChannel ch : channels) {
            if (ch.isOpen()) {
                ch.clearHostDoorbell();
                ch.inbound().maskInterrupts();
            }
        }
    }

    @Override
    public void close() {
        running = false;
        try {
            thread.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
