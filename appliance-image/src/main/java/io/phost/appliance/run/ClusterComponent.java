package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ClusterConfig.Peer;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.mgmt.ManagementServer;
import io.phost.appliance.util.Query;
import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.PartitionState;
import io.phost.core.sys.Librbd;
import io.phost.core.text.Json;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;

/**
 * This appliance among its {@code [[peer]]}s on one Ceph cluster (docs/cluster.md):
 * <ul>
 *   <li><b>Quick Migration</b> ({@code POST /v1/partitions/move?name=N&to=PEER}): stop the partition here
 *       (graceful, then its disks flushed and their RBD locks released), then ask the peer to start it. A peer
 *       that has its own copy of the {@code [[partition]]} table (an {@code ha} partition needs one on every
 *       appliance) starts that; to one without it this appliance hands its table and its disks' tables over
 *       ({@code POST /v1/partitions/receive}, a live apply there) and drops them from its own config (a live
 *       apply here); both applied configs are saved, so restarts come back right. Both applies are dry-run first,
 *       before anything stops. The lock is the arbiter: the peer cannot start it while it still runs here, so
 *       there is no moment with two writers.</li>
 *   <li><b>Heartbeat and HA restart</b>: every second each peer's {@code /health} is asked; a peer silent for its
 *       {@code lease} is dead, and when every peer is dead this appliance restarts the {@code ha = true} partitions whose lock another
 *       client still holds, breaking that lock (librbd blocklists the holder: a frozen peer that wakes up
 *       cannot write). A partition whose lock this appliance lost is turned off (it was fenced).</li>
 * </ul>
 */
final class ClusterComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.cluster");
    static final long HEARTBEAT_MS = 1000;
    private static final long HEALTH_TIMEOUT_MS = 2000;
    private static final long PEER_CALL_TIMEOUT_MS = 60_000;
    /** One look at the peer while a migrated guest is paused on both sides (the whole wait is 30 s). */
    private static final long AWAIT_LOOK_TIMEOUT_MS = 5_000;
    /** The rollback's request that the peer drop the VM, after the switch-over (the guest waits paused). */
    private static final long ROLLBACK_ABORT_TIMEOUT_MS = 20_000;

    /** The start-time config: this host's name and its peers (fixed while it runs). */
    private final ApplianceConfig cfg;
    /** The running config: partitions come and go with live applies and moves. */
    private final java.util.function.Supplier<ApplianceConfig> running;
    private final ConfigComponent config;
    private final PartitionsComponent partitions;
    private final RbdLocks locks;
    private final Map<String, PeerState> peers = new LinkedHashMap<>();
    private final List<Map<String, Object>> takeovers = new ArrayList<>();
    private final Thread heartbeat;
    private final MigrationTarget target;
    /** VMs live-migrating away: paused after the switch-over with their locks released, not fenced (see checkFenced). */
    private final java.util.Set<String> migratingOut = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private volatile boolean closed;

    /** What this appliance knows of one peer. */
    private static final class PeerState {
        final Peer peer;
        volatile long lastSeenNanos;
        volatile boolean seen;
        volatile boolean dead;

        PeerState(Peer peer, long now) {
            this.peer = peer;
            this.lastSeenNanos = now; // a peer never heard of counts from our own start
        }
    }

    ClusterComponent(ApplianceConfig cfg, java.util.function.Supplier<ApplianceConfig> running, ConfigComponent config,
                     PartitionsComponent partitions, RbdLocks locks) {
        this.cfg = cfg;
        this.running = running;
        this.config = config;
        this.partitions = partitions;
        this.locks = locks;
        this.target = new MigrationTarget(cfg.host(), partitions, config);
        long now = System.nanoTime();
        for (Peer p : cfg.cluster().peers()) {
            peers.put(p.name(), new PeerState(p, now));
        }
        // librbd's lock calls want a big stack (see RbdDisk): the heartbeat may break a lock.
        heartbeat = new Thread(null, this::heartbeatLoop, "phost-cluster-heartbeat", Librbd.CEPH_STACK_BYTES);
        heartbeat.setDaemon(true);
        heartbeat.start();
    }

    @Override
    public String name() {
        return "cluster";
    }

    @Override
    public Object status() {
        Map<String, Object> m = new LinkedHashMap<>();
        List<Object> rows = new ArrayList<>();
        long now = System.nanoTime();
        for (PeerState s : peers.values()) {
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("name", s.peer.name());
            r.put("management", s.peer.management());
            r.put("alive", !s.dead && s.seen);
            r.put("silent_ms", (now - s.lastSeenNanos) / 1_000_000);
            r.put("lease_s", s.peer.leaseSeconds());
            rows.add(r);
        }
        m.put("peers", rows);
        m.put("ha_partitions", running.get().cluster().haPartitions().stream().sorted().toList());
        synchronized (takeovers) {
            m.put("takeovers", List.copyOf(takeovers));
        }
        return m;
    }

    @Override
    public String problem() {
        List<String> dead = peers.values().stream().filter(s -> s.dead).map(s -> s.peer.name()).toList();
        return dead.isEmpty() ? null : "peer(s) not answering: " + String.join(", ", dead);
    }

    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        return Map.of("POST /v1/partitions/move", this::move,
            "POST /v1/partitions/incoming", target::incoming,
            "POST /v1/partitions/incoming/abort", target::abort);
    }

    // ---- Quick Migration ----

    private HttpResponse move(String query) {
        Map<String, String> q = Query.parse(query);
        String name = q.getOrDefault("name", "");
        String to = q.getOrDefault("to", "");
        if (name.isBlank() || to.isBlank()) {
            return HttpResponse.text(400, "move needs name=PARTITION and to=PEER\n");
        }
        java.time.Duration migrateLimit = io.phost.core.vm.VmPartition.MIGRATE_LIMIT;
        String limit = q.get("migrate_timeout_ms");
        if (limit != null) {
            long ms;
            try {
                ms = Long.parseLong(limit);
            } catch (NumberFormatException e) {
                ms = -1;
            }
            if (ms < 1 || ms > migrateLimit.toMillis()) {
                return HttpResponse.text(400, "move " + name + ": migrate_timeout_ms=" + limit + " is not a whole number of"
                    + " milliseconds from 1 to " + migrateLimit.toMillis() + "\n");
            }
            migrateLimit = java.time.Duration.ofMillis(ms);
        }
        ChildPartition p = partitions.partition(name);
        if (p == null) {
            return HttpResponse.text(404, "no partition named '" + name + "'\n");
        }
        PeerState peer = peers.get(to);
        if (peer == null) {
            return HttpResponse.text(404, "no peer named '" + to + "' (peers: "
                + String.join(", ", peers.keySet()) + "; see [[peer]] in the config)\n");
        }
        String refused = refusal(p);
        if (refused != null) {
            return HttpResponse.text(409, "move " + name + ": " + refused + "\n");
        }
        String there;
        try {
            there = peerState(peer.peer, name);
        } catch (IOException e) {
            return HttpResponse.text(409, "move " + name + ": peer '" + to + "' at " + peer.peer.management()
                + " is unreachable: " + e.getMessage() + "; the partition keeps running here\n");
        }
        if (there != null && PartitionState.valueOf(there.toUpperCase(java.util.Locale.ROOT)).live()) {
            return HttpResponse.text(409, "move " + name + ": it is already " + there + " on peer '" + to + "'\n");
        }
        // A peer without the partition gets its definition: both sides' applies are tried first (dry runs).
        String stanzas = there == null ? config.stanzas(name) : null;
        if (there == null) {
            String why = stanzas == null ? "this host has no config file to hand its table over from"
                : handOver(peer.peer, stanzas, true);
            if (why == null) {
                ConfigComponent.Outcome here = config.release(name, to, true);
                why = here.status() == 200 ? null : "this host cannot drop its table: " + String.join("; ", here.errors());
            }
            if (why != null) {
                return HttpResponse.text(409, "move " + name + ": peer '" + to + "' has no partition '" + name
                    + "' and cannot take its definition: " + why + "; the partition keeps running here\n");
            }
        }
        if ("true".equals(q.get("live"))) {
            return migrateLive(p, peer.peer, stanzas, migrateLimit);
        }
        long t0 = System.nanoTime();
        boolean wasRunning = p.state().live();
        partitions.stop(p, partitions.stopTimeout(p)); // graceful, then flush and release the RBD locks
        long stopped = System.nanoTime();
        String failed = stanzas == null ? null : handOver(peer.peer, stanzas, false);
        HttpResponse started = failed != null ? HttpResponse.text(409, failed) : startOnPeer(peer.peer, name);
        if (started.status() != 200) {
            String why = started.bodyText().strip();
            String back = wasRunning ? restartHere(p) : "it stays stopped here";
            LOG.log(Level.WARNING, "move failed partition=" + name + " to=" + to + " reason=\"" + why + "\" here=" + back);
            return HttpResponse.text(502, "move " + name + ": peer '" + to + "' did not " + (failed != null
                ? "take its definition: " : "start it: ") + why + "; " + back + "\n");
        }
        String state = awaitRunning(peer.peer, name);
        long done = System.nanoTime(); // the partition runs there: what follows no longer delays it
        String released = null;
        if (stanzas != null) {
            ConfigComponent.Outcome here = config.release(name, to, false);
            released = here.status() == 200 ? "handed over" : "handed over; still defined (stopped) here: "
                + String.join("; ", here.errors());
        }
        // Only now: until the release removed its NIC's port here, this switch holds the NIC's pinned MAC and drops
        // the peer's RARP arriving on the uplink as a loop (a clean-clone run of RunPartitionMoveTest saw drop_loop).
        int announced = announce(peer.peer, name);
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("partition", name);
        r.put("from", cfg.host().name());
        r.put("to", to);
        r.put("stop_ms", (stopped - t0) / 1_000_000);
        r.put("start_ms", (done - stopped) / 1_000_000);
        r.put("total_ms", (done - t0) / 1_000_000);
        r.put("state", state);
        r.put("definition", released == null ? "the peer's own" : released);
        r.put("nics_announced", announced);
        LOG.log(Level.INFO, "moved partition=" + name + " to=" + to + " stop_ms=" + r.get("stop_ms")
            + " start_ms=" + r.get("start_ms"));
        return HttpResponse.json(Json.pretty(r));
    }

    /**
     * Live migration of running VM {@code p} to {@code peer} (which has no partition of that name: {@code stanzas},
     * dry-run already, are its tables): the peer builds it without starting it, starts QEMU on {@code -incoming}
     * ({@link MigrationTarget}), this QEMU {@code migrate}s to it (vhost-user dirty logging; its rings drain at the
     * switch-over), then QEMU here is ended and the disks flushed and unlocked, and the peer takes the locks and
     * resumes the guest. A failure at any step before the guest resumes there rolls back: the guest runs on here
     * with its disks and locks, and the peer drops its QEMU, locks and the tables it was handed
     * ({@link MigrationTarget#abort}).
     */
    private HttpResponse migrateLive(ChildPartition p, Peer peer, String stanzas, java.time.Duration limit) {
        String name = p.name();
        if (!(p instanceof io.phost.core.vm.VmPartition vm) || p.state() != PartitionState.RUNNING) {
            return HttpResponse.text(409, "move " + name + ": live migration takes a running VM partition\n");
        }
        if (stanzas == null) {
            return HttpResponse.text(409, "move " + name + ": live migration hands the VM's tables over; peer '"
                + peer.name() + "' has a partition '" + name + "' of its own\n");
        }
        long t0 = System.nanoTime();
        String failed = handOver(peer, stanzas, false, false);
        Map<String, Object> migrated;
        try {
            if (failed != null) {
                throw new IOException("the peer did not take its definition: " + failed);
            }
            HttpResponse in = call(peer, "/v1/partitions/incoming?" + Query.encode(Map.of("name", name)), false);
            if (in.status() != 200) {
                throw new IOException("the peer did not start QEMU for it: " + in.bodyText().strip());
            }
            migrated = vm.migrateLive(String.valueOf(((Map<?, ?>) Json.parse(in.bodyText())).get("uri")), limit);
        } catch (IOException | RuntimeException e) {
            // Before the switch-over (or QEMU resumed the guest here after a late failure): the peer is cleaned up.
            String peerSide = failed == null ? "; " + abortOnPeer(peer, name) : "";
            LOG.log(Level.WARNING, "live migration failed partition=" + name + " to=" + peer.name() + " reason=\""
                + e.getMessage() + "\"" + peerSide);
            return HttpResponse.text(502, "move " + name + " (live): " + e.getMessage() + "; "
                + (p.state() == PartitionState.RUNNING ? "the VM runs on here" : "the VM is " + p.state() + " here")
                + peerSide + "\n");
        }
        long switched = System.nanoTime();
        // QEMU here stays paused ("postmigrate") until the peer runs the guest: until then this is the way back.
        migratingOut.add(name);
        String state;
        try {
            locks.release(name); // flush and unlock: the rings were drained at the switch-over
            state = awaitRunning(peer, name);
            if (!state.equals("running")) {
                String back = rollBack(vm, peer, state);
                if (back != null) {
                    LOG.log(Level.WARNING, "live migration failed after the switch-over partition=" + name + " to="
                        + peer.name() + " peer_state=" + state + " " + back);
                    return HttpResponse.text(502, "move " + name + " (live): the peer did not resume the guest (it is "
                        + state + " there); " + back + "\n");
                }
            }
            p.turnOff("migrated to " + peer.name()); // QEMU quits (its locks were released above)
        } finally {
            migratingOut.remove(name);
        }
        long done = System.nanoTime();
        // No announce from here: the target's QEMU sends SEND_RARP through each NIC's vhost-user-net port itself.
        ConfigComponent.Outcome here = config.release(name, peer.name(), false);
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("partition", name);
        r.put("from", cfg.host().name());
        r.put("to", peer.name());
        r.put("mode", "live");
        migrated.forEach((k, v) -> r.put("migration_" + k, v));
        r.put("handover_ms", (done - switched) / 1_000_000);
        r.put("total_ms", (done - t0) / 1_000_000);
        r.put("state", state);
        r.put("definition", here.status() == 200 ? "handed over" : "handed over; still defined (stopped) here: "
            + String.join("; ", here.errors()));
        LOG.log(Level.INFO, "migrated partition=" + name + " to=" + peer.name() + " live=true " + migrated);
        return HttpResponse.json(Json.pretty(r));
    }

    /**
     * After the switch-over the peer did not report the guest running: if the peer confirms it never resumed it and
     * has dropped it, this appliance takes the locks again and resumes its paused QEMU; returns what happened, or
     * null when the peer runs the guest after all (the migration stands).
     */
    private String rollBack(io.phost.core.vm.VmPartition vm, Peer peer, String peerState) {
        String peerSide;
        try {
            HttpResponse r = call(peer, "/v1/partitions/incoming/abort?" + Query.encode(Map.of("name", vm.name(),
                "from", cfg.host().name())), false, ROLLBACK_ABORT_TIMEOUT_MS); // the guest is paused meanwhile
            if (r.status() == 409) {
                return null; // it resumed there: the guest runs on the peer
            }
            if (r.status() != 200 && r.status() != 404) { // 404: nothing of it there
                throw new IOException(r.status() + " " + r.bodyText().strip());
            }
            peerSide = "the peer dropped it";
        } catch (IOException | RuntimeException e) {
            // Unknown whether the peer runs it: the locks decide. Taking them fails while the peer holds them.
            peerSide = "the peer could not be asked to drop it (" + e.getMessage() + ")";
        }
        try {
            locks.acquire(vm.name(), false);
            vm.resume();
            return "rolled back: the VM runs on here; " + peerSide;
        } catch (IOException | RuntimeException e) {
            vm.turnOff("live migration to " + peer.name() + " failed after the switch-over");
            return "the VM could not resume here either (" + e.getMessage() + "); it is stopped; " + peerSide;
        }
    }

    /** Rollback before the switch-over: the peer drops the VM's QEMU, locks and tables; says how that went. */
    private String abortOnPeer(Peer peer, String name) {
        try {
            HttpResponse r = call(peer, "/v1/partitions/incoming/abort?" + Query.encode(Map.of("name", name,
                "from", cfg.host().name())), false);
            return r.status() == 200 || r.status() == 404 ? "peer '" + peer.name() + "' dropped it"
                : "peer '" + peer.name() + "' did not drop it: " + r.status() + " " + r.bodyText().strip();
        } catch (IOException | RuntimeException e) {
            return "peer '" + peer.name() + "' could not be asked to drop it: " + e.getMessage();
        }
    }

    /** Asks the peer to take partition tables {@code stanzas} (a live apply there); null when it did, else why not. */
    private String handOver(Peer peer, String stanzas, boolean dryRun) {
        return handOver(peer, stanzas, dryRun, true);
    }

    /** As above; {@code start} false: the peer builds the partition without starting it (a live migration's target). */
    private String handOver(Peer peer, String stanzas, boolean dryRun, boolean start) {
        try {
            HttpResponse r = call(peer, "/v1/partitions/receive?" + Query.encode(Map.of("from", cfg.host().name(),
                "dry_run", Boolean.toString(dryRun), "start", Boolean.toString(start))),
                stanzas.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            if (r.status() == 200) {
                return null;
            }
            Object errors = r.bodyText().startsWith("{") ? ((Map<?, ?>) Json.parse(r.bodyText())).get("errors") : null;
            return errors instanceof List<?> l && !l.isEmpty()
                ? l.stream().map(String::valueOf).collect(java.util.stream.Collectors.joining("; "))
                : r.status() + " " + r.bodyText().strip();
        } catch (IOException | RuntimeException e) {
            return "peer unreachable: " + e.getMessage();
        }
    }

    /**
     * Asks the peer to announce the partition's NICs (a gratuitous RARP each, so the LAN learns their new port);
     * returns how many, -1 when the peer could not be asked (the move stands: the guest's own traffic teaches the LAN).
     */
    private static int announce(Peer peer, String name) {
        try {
            HttpResponse r = call(peer, "/v1/partitions/announce?" + Query.encode(Map.of("name", name)), false);
            if (r.status() == 404) {
                return 0; // no NIC to announce
            }
            return r.status() == 200 ? ((Number) ((Map<?, ?>) Json.parse(r.bodyText())).get("nics")).intValue() : -1;
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.WARNING, "announce failed partition=" + name + " peer=" + peer.name() + " reason=\"" + e.getMessage() + "\"");
            return -1;
        }
    }

    /** Starts the partition on the peer unless it is running there already (an autostart partition it was handed). */
    private static HttpResponse startOnPeer(Peer peer, String name) {
        try {
            String there = peerState(peer, name);
            if (there != null && PartitionState.valueOf(there.toUpperCase(java.util.Locale.ROOT)).live()) {
                return HttpResponse.text(200, there);
            }
            return call(peer, "/v1/partitions/start?" + Query.encode(Map.of("name", name)), false);
        } catch (IOException e) {
            return HttpResponse.text(502, e.getMessage());
        }
    }

    /** Waits (bounded) until the peer reports the partition running (its guest attached); returns the last state. */
    private static String awaitRunning(Peer peer, String name) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        String state = "unknown";
        while (System.nanoTime() < deadline) {
            try {
                // Each look is bounded by what is left of the 30 s: the guest is paused on both sides meanwhile, and
                // a peer that stopped answering held it there for a whole 60 s call (then 60 s more to abort).
                long left = Math.max(1_000, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()));
                state = String.valueOf(peerState(peer, name, Math.min(left, AWAIT_LOOK_TIMEOUT_MS)))
                    .toLowerCase(java.util.Locale.ROOT);
            } catch (IOException e) {
                state = "unknown";
            }
            if (state.equals("running") || state.equals("stopped") || state.equals("crashed") || state.equals("faulted")) {
                return state;
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return state;
            }
        }
        return state;
    }

    /** Why {@code p} cannot move, or null: only partitions (process or VM) whose every disk is on RBD move. */
    private String refusal(ChildPartition p) {
        if (!locks.movable(p.name())) {
            ApplianceConfig cfg = running.get();
            List<String> local = cfg.partition(p.name()).orElseThrow().disks().stream()
                .map(a -> cfg.disk(a.disk()).orElseThrow())
                .filter(d -> !DisksComponent.followsPartitionLock(cfg, d))
                .map(d -> d.name() + " (" + d.format().name().toLowerCase() + (d.readOnly() ? ", read-only" : "") + ")")
                .toList();
            return "disk " + String.join(", ", local) + " is local to this appliance; only writable rbd disks "
                + "are shared with a peer";
        }
        return null;
    }

    private String restartHere(ChildPartition p) {
        try {
            partitions.start(p, false);
            return "started again here";
        } catch (IOException | RuntimeException e) {
            return "and it could not start here again: " + e.getMessage();
        }
    }

    /** The partition's state on the peer, or null when the peer has no such partition. */
    private static String peerState(Peer peer, String name) throws IOException {
        return peerState(peer, name, PEER_CALL_TIMEOUT_MS);
    }

    private static String peerState(Peer peer, String name, long timeoutMs) throws IOException {
        HttpResponse r = call(peer, "/v1/partitions", true, timeoutMs);
        if (r.status() != 200) {
            throw new IOException("GET /v1/partitions answered " + r.status() + ": " + r.bodyText().strip());
        }
        for (Object o : (List<?>) Json.parse(r.bodyText())) {
            Map<?, ?> m = (Map<?, ?>) o;
            if (name.equals(m.get("name"))) {
                return String.valueOf(m.get("state"));
            }
        }
        return null;
    }

    /** One management call to a peer, bounded in time (a peer that hangs must not hang the caller). */
    private static HttpResponse call(Peer peer, String target, boolean get) throws IOException {
        return call(peer, target, get, PEER_CALL_TIMEOUT_MS);
    }

    private static HttpResponse call(Peer peer, String target, byte[] body) throws IOException {
        return call(peer, target, c -> c.post(target, body), PEER_CALL_TIMEOUT_MS);
    }

    private static HttpResponse call(Peer peer, String target, boolean get, long timeoutMs) throws IOException {
        return call(peer, target, c -> get ? c.get(target) : c.post(target), timeoutMs);
    }

    private interface PeerCall {
        HttpResponse on(ManagementClient c) throws IOException;
    }

    private static HttpResponse call(Peer peer, String target, PeerCall request, long timeoutMs) throws IOException {
        String token = peer.tokenFile() == null ? null : Files.readString(peer.tokenFile()).strip();
        ManagementClient c = new ManagementClient(ManagementAddress.parse(peer.management()), token);
        CompletableFuture<HttpResponse> f = new CompletableFuture<>();
        Thread t = Thread.ofVirtual().name("peer-" + peer.name()).start(() -> {
            try {
                f.complete(request.on(c));
            } catch (Throwable e) {
                f.completeExceptionally(e);
            }
        });
        try {
            return f.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            t.interrupt();
            throw new IOException("no answer within " + timeoutMs + " ms");
        } catch (ExecutionException e) {
            throw new IOException(e.getCause().getMessage() == null ? e.getCause().toString() : e.getCause().getMessage(),
                e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
    }

    // ---- heartbeat, HA restart, fencing ----

    private void heartbeatLoop() {
        while (!closed) {
            for (PeerState s : peers.values()) {
                beat(s);
            }
            try {
                checkFenced();
                // Only when every peer is silent: the lock names a client, not an appliance, so with a live peer
                // the holder could be that peer (safe for any number of peers; a two-appliance cluster loses nothing).
                if (peers.values().stream().allMatch(s -> s.dead)) {
                    takeOver();
                }
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "cluster check failed reason=\"" + e + "\"");
            }
            try {
                Thread.sleep(HEARTBEAT_MS);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private void beat(PeerState s) {
        boolean alive;
        try {
            alive = call(s.peer, ManagementServer.HEALTH, true, HEALTH_TIMEOUT_MS).status() > 0;
        } catch (IOException e) {
            alive = false;
        }
        long now = System.nanoTime();
        if (alive) {
            s.lastSeenNanos = now;
            s.seen = true;
            if (s.dead) {
                s.dead = false;
                LOG.log(Level.INFO, "peer answering again peer=" + s.peer.name());
            }
        } else if (!s.dead && now - s.lastSeenNanos > TimeUnit.SECONDS.toNanos(s.peer.leaseSeconds())) {
            s.dead = true;
            LOG.log(Level.WARNING, "peer lease expired peer=" + s.peer.name() + " silent_ms="
                + (now - s.lastSeenNanos) / 1_000_000);
        }
    }

    /**
     * A dead peer's HA partitions: restart here each one that is stopped here and whose lock another client
     * still holds (it was running elsewhere when the peer died); one nobody holds was stopped on purpose.
     */
    private void takeOver() {
        for (String name : running.get().cluster().haPartitions()) {
            ChildPartition p = partitions.partition(name);
            if (p == null || p.state().live() || p.state() == PartitionState.CRASHED || p.state() == PartitionState.FAULTED) {
                continue;
            }
            try {
                if (locks.holders(name).isEmpty()) {
                    continue;
                }
                long t0 = System.nanoTime();
                List<String> holders = locks.holders(name);
                partitions.start(p, true);
                long ms = (System.nanoTime() - t0) / 1_000_000;
                Map<String, Object> t = new LinkedHashMap<>();
                t.put("partition", name);
                t.put("fenced", holders);
                t.put("start_ms", ms);
                synchronized (takeovers) {
                    takeovers.add(t);
                }
                LOG.log(Level.WARNING, "ha restart partition=" + name + " fenced=\"" + String.join(",", holders)
                    + "\" start_ms=" + ms);
            } catch (IOException | RuntimeException e) {
                LOG.log(Level.ERROR, "ha restart failed partition=" + name + " reason=\"" + e.getMessage() + "\"");
            }
        }
    }

    /** A live partition whose disk lock another appliance broke was fenced: its I/O fails, so it is turned off. */
    private void checkFenced() {
        for (ChildPartition p : partitions.partitions()) {
            // Not while STARTING: a VM receiving a live migration takes its locks only once the state has arrived.
            if (p.state().live() && p.state() != PartitionState.STARTING && !migratingOut.contains(p.name())
                && !locks.disksOf(p.name()).isEmpty()
                && locks.lostLock(p.name())) {
                LOG.log(Level.WARNING, "fenced partition=" + p.name() + ": another appliance took its disks over");
                p.turnOff("fenced: another appliance took its disks over (RBD lock broken)");
            }
        }
    }

    @Override
    public void close() throws InterruptedException {
        closed = true;
        heartbeat.interrupt();
        heartbeat.join(5000);
    }
}
