package io.phost.core.vm;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;

/**
 * Integration services of a VM partition over qemu-guest-agent: QEMU exposes the guest's virtio-serial port
 * {@code org.qemu.guest_agent.0} as a Unix socket ({@code NAME.qga}), and this class speaks the agent's
 * protocol on it (QMP without the greeting; {@link QmpClient#open}).
 * <pre>
 *   heartbeat thread, every period:  guest-ping ─ answered ─▶ OK (missed in a row = 0)
 *                                                └ no answer ─▶ missed++ ─▶ NO_CONTACT (never answered)
 *                                                                        └▶ LOST_COMMUNICATION (answered before;
 *                                                                           reported once, after LOST_AFTER misses)
 *   on first contact and every INFO_EVERY beats: guest-get-osinfo, guest-get-host-name,
 *                                                guest-network-get-interfaces ─▶ {@link GuestInfo}
 * </pre>
 * The agent runs inside the guest, so it is hostile: every reply line is bounded ({@link #MAX_REPLY}), JSON
 * nesting by {@code Json}'s depth limit, every call times out, and a call that times out or fails closes the
 * connection (the next call reconnects, so unanswered requests never pile up in the socket). Calls run on the
 * caller's thread or the heartbeat's own virtual thread, never on the supervisor's monitor.
 */
public final class GuestAgent implements AutoCloseable {
    private static final Logger LOG = System.getLogger("phost.partitions");
    /** The longest reply line read (guest-network-get-interfaces of a guest with a few dozen NICs fits). */
    static final int MAX_REPLY = 256 * 1024;
    /** Misses in a row after which a guest that answered before has lost communication. */
    static final int LOST_AFTER = 3;
    static final int INFO_EVERY = 12;

    /** Hyper-V's heartbeat states. */
    public enum Heartbeat { NO_CONTACT, OK, LOST_COMMUNICATION }

    /** What the guest says about itself (the KVP counterpart); strings are cleaned and bounded. */
    public record GuestInfo(String os, String hostname, List<String> addresses, String agentVersion, Instant at) {}

    /** Heartbeat events for the supervisor: contact made, lost, regained. */
    public interface Listener {
        void heartbeat(Heartbeat now, String text);
    }

    private final Path socket;
    private final String name;
    private final Duration period;
    private final Duration timeout;
    private final Listener listener;
    private final Object connLock = new Object();
    private QmpClient conn; // guarded by connLock
    private volatile Thread heartbeatThread;
    private volatile boolean closed;
    /** While the VM is paused its agent cannot answer: no beats, so a pause is not a lost heartbeat. */
    private volatile boolean paused;

    private volatile Heartbeat heartbeat = Heartbeat.NO_CONTACT;
    private volatile long missedInARow;
    private volatile long missedTotal;
    private volatile long beats;
    private volatile Instant lastBeat;
    private volatile GuestInfo info;
    private volatile String lastError = "";

    /**
     * @param socket  QEMU's chardev socket of the agent's port
     * @param period  between heartbeats
     * @param timeout of every agent call
     */
    public GuestAgent(Path socket, String name, Duration period, Duration timeout, Listener listener) {
        this.socket = socket;
        this.name = name;
        this.period = period;
        this.timeout = timeout;
        this.listener = listener;
    }

    /** Starts the heartbeat (a virtual thread: it spends its life waiting). */
    public void start() {
        heartbeatThread = Thread.ofVirtual().name("qga-heartbeat-" + name).start(this::heartbeatLoop);
    }

    private void heartbeatLoop() {
        while (!closed) {
            beat();
            try {
                // until first contact, look every second: the agent starts late in the guest's boot
                Thread.sleep(heartbeat == Heartbeat.NO_CONTACT ? Duration.ofSeconds(1).compareTo(period) < 0
                    ? Duration.ofSeconds(1) : period : period);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    /** Pauses or resumes the heartbeat with the VM's vCPUs. */
    public void paused(boolean p) {
        paused = p;
    }

    /** One heartbeat: a guest-ping, then guest info when due. */
    void beat() {
        if (paused) {
            return;
        }
        boolean answered = ping(timeout);
        Heartbeat before = heartbeat;
        if (answered) {
            missedInARow = 0;
            lastBeat = Instant.now();
            heartbeat = Heartbeat.OK;
            if (info == null || ++beats % INFO_EVERY == 0) {
                refreshInfo();
            }
            if (before != Heartbeat.OK) {
                LOG.log(Level.INFO, "guest agent answers partition=" + name);
                listener.heartbeat(Heartbeat.OK, before == Heartbeat.NO_CONTACT ? "guest agent answers"
                    : "heartbeat regained");
            }
            return;
        }
        long missed = ++missedInARow;
        missedTotal++;
        if (before != Heartbeat.NO_CONTACT && missed >= LOST_AFTER) {
            heartbeat = Heartbeat.LOST_COMMUNICATION;
            if (before == Heartbeat.OK) {
                String text = "heartbeat lost: " + missed + " guest-pings unanswered (" + lastError + ")";
                LOG.log(Level.WARNING, "heartbeat lost partition=" + name + " missed=" + missed + " reason=\"" + lastError + "\"");
                listener.heartbeat(Heartbeat.LOST_COMMUNICATION, text);
            }
        }
    }

    /** True when the agent answered a guest-ping within {@code t}. */
    public boolean ping(Duration t) {
        try {
            call("guest-ping", Map.of(), t);
            return true;
        } catch (QmpException e) {
            return false;
        }
    }

    /** True while the last heartbeat was answered. */
    public boolean inContact() {
        return heartbeat == Heartbeat.OK;
    }

    /**
     * Asks the guest to power off ({@code guest-shutdown}, mode powerdown). The agent sends no reply when it
     * complies, so a missing reply is not a failure; an error reply is.
     *
     * @return null when the request was delivered to an agent that answered a ping just before, else why not
     */
    public String shutdown() {
        if (!ping(timeout)) {
            return "the guest agent does not answer (" + lastError + ")";
        }
        try {
            call("guest-shutdown", Map.of("mode", "powerdown"), Duration.ofMillis(500));
            return null;
        } catch (QmpException e) {
            return e.reason() == QmpException.Reason.COMMAND_FAILED ? e.getMessage() : null;
        }
    }

    /** Sets the guest's clock to the host's ({@code guest-set-time}, nanoseconds since the epoch). */
    public void syncTime() {
        Instant now = Instant.now();
        long ns = Math.addExact(Math.multiplyExact(now.getEpochSecond(), 1_000_000_000L), now.getNano());
        call("guest-set-time", Map.of("time", ns), timeout);
    }

    /**
     * Freezes the guest's file systems ({@code guest-fsfreeze-freeze}) for a consistent checkpoint; the caller
     * must {@link #thawFileSystems thaw} them (the agent thaws by itself only when it exits).
     *
     * @return how many file systems the guest froze
     */
    public int freezeFileSystems() {
        return count(call("guest-fsfreeze-freeze", Map.of(), timeout), "guest-fsfreeze-freeze");
    }

    /** @return how many file systems the guest thawed */
    public int thawFileSystems() {
        return count(call("guest-fsfreeze-thaw", Map.of(), timeout), "guest-fsfreeze-thaw");
    }

    /** "thawed" or "frozen", as the guest says. */
    public String freezeStatus() {
        return GuestText.clean(String.valueOf(call("guest-fsfreeze-status", Map.of(), timeout)), 32);
    }

    private static int count(Object r, String command) {
        if (r instanceof Long n && n >= 0 && n <= Integer.MAX_VALUE) {
            return n.intValue();
        }
        throw new QmpException(QmpException.Reason.MALFORMED, command + " answered " + GuestText.clean(String.valueOf(r), 64)
            + ", not a count");
    }

    private void refreshInfo() {
        try {
            String version = call("guest-info", Map.of(), timeout) instanceof Map<?, ?> m ? GuestText.field(m, "version", 32) : "";
            String os = call("guest-get-osinfo", Map.of(), timeout) instanceof Map<?, ?> m ? GuestText.os(m) : "";
            String host = call("guest-get-host-name", Map.of(), timeout) instanceof Map<?, ?> m ? GuestText.field(m, "host-name", 255) : "";
            List<String> addrs = GuestText.addresses(call("guest-network-get-interfaces", Map.of(), timeout));
            info = new GuestInfo(os, host, addrs, version, Instant.now());
        } catch (QmpException e) {
            LOG.log(Level.DEBUG, "guest info partition=" + name + " reason=\"" + e.getMessage() + "\"");
        }
    }

    /** One agent call on a connection made when needed; a timeout or failure drops the connection. */
    Object call(String command, Map<String, ?> args, Duration t) {
        if (closed) {
            throw new QmpException(QmpException.Reason.DISCONNECTED, "guest agent closed");
        }
        QmpClient c;
        synchronized (connLock) {
            if (conn == null || !conn.isOpen()) {
                try {
                    conn = QmpClient.open(socket, MAX_REPLY, e -> { }, "qga-" + name);
                } catch (QmpException e) {
                    lastError = e.getMessage();
                    throw e;
                }
            }
            c = conn;
        }
        try {
            return c.execute(command, args, t);
        } catch (QmpException e) {
            lastError = e.getMessage();
            if (e.reason() != QmpException.Reason.COMMAND_FAILED) {
                drop(c);
            }
            throw e;
        }
    }

    private void drop(QmpClient c) {
        synchronized (connLock) {
            if (conn == c) {
                conn = null;
            }
        }
        c.close();
    }

    public Heartbeat heartbeat() {
        return heartbeat;
    }

    /** Guest info from the last refresh, or null when the agent never answered. */
    public GuestInfo info() {
        return info;
    }

    /** The heartbeat as status text: "OK (last beat 2 s ago; missed 0 in a row, 3 in all)". */
    public String describe() {
        Instant last = lastBeat;
        String ago = last == null ? "never answered" : "last beat " + Duration.between(last, Instant.now()).toSeconds() + " s ago";
        String text = switch (heartbeat) {
            case OK -> "OK";
            case NO_CONTACT -> "No contact (no qemu-guest-agent answers in the guest)";
            case LOST_COMMUNICATION -> "Lost communication";
        };
        return text + " (" + ago + "; missed " + missedInARow + " in a row, " + missedTotal + " in all; every "
            + period.toSeconds() + " s)";
    }

    @Override
    public void close() {
        closed = true;
        Thread t = heartbeatThread;
        if (t != null) {
            t.interrupt();
        }
        QmpClient c;
        synchronized (connLock) {
            c = conn;
            conn = null;
        }
        if (c != null) {
            c.close();
        }
    }
}
