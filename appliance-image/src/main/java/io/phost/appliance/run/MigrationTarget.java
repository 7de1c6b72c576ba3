package io.phost.appliance.run;

import io.phost.appliance.config.HostConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.core.partition.ChildPartition;
import io.phost.core.sys.Librbd;
import io.phost.core.text.Json;
import io.phost.core.vm.VmPartition;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The target side of a VM's live migration between appliances ({@code POST /v1/partitions/incoming?name=VM}, asked
 * by the peer that runs the VM, after it handed the VM's tables over without starting it): QEMU starts paused with
 * {@code -incoming tcp:HOST:PORT} (HOST: this appliance's management address, 127.0.0.1 for a Unix one), and the
 * answer ({@code {"uri": ...}}) comes once it listens. When the whole state has arrived the VM's RBD locks are
 * taken (retried while the source still flushes and releases them) and the guest resumes here.
 * <p>{@code POST /v1/partitions/incoming/abort?name=VM} is the source's rollback of a failed migration: unless the
 * guest has already resumed here, QEMU is ended, the locks released and the tables the source handed over dropped
 * (a live apply), so this appliance is as it was before.
 */
final class MigrationTarget {
    private static final Logger LOG = System.getLogger("phost.cluster");
    /** How long the source may take to give the locks up after its QEMU's switch-over. */
    private static final long LOCK_WAIT_MS = 30_000;

    private final HostConfig host;
    private final PartitionsComponent partitions;
    private final ConfigComponent config;
    /** VMs whose guest resumed here after an incoming migration: from then on the migration is done, no abort. */
    private final Set<String> resumed = java.util.concurrent.ConcurrentHashMap.newKeySet();

    MigrationTarget(HostConfig host, PartitionsComponent partitions, ConfigComponent config) {
        this.host = host;
        this.partitions = partitions;
        this.config = config;
    }

    /**
     * The source's rollback: 200 once this appliance has no QEMU, no lock and no tables of VM {@code name} left
     * (404: it had none); 409 when its guest has resumed here (the migration happened: the source must not run it again).
     * One abort at a time: the source's abort, queued while this appliance did not answer, and a second one (the
     * source's retry, an operator's) would otherwise both find the partition and the second fail to release tables
     * the first just dropped (500 "no partition in the running config"; RunVmMoveTest's soak, after a SIGCONT).
     */
    synchronized HttpResponse abort(String query) {
        String name = Query.parse(query).getOrDefault("name", "");
        String from = Query.parse(query).getOrDefault("from", "the source");
        ChildPartition p = partitions.partition(name);
        if (p == null) {
            return HttpResponse.text(404, "no partition named '" + name + "' here (nothing to roll back)\n");
        }
        if (!(p instanceof VmPartition)) {
            return HttpResponse.text(409, "partition " + name + " is not a VM arriving here\n");
        }
        // A VM arriving here is STARTING (QEMU on -incoming) or not started; one that runs was not rolled back.
        if (resumed.contains(name) || p.state().live() && p.state() != io.phost.core.partition.PartitionState.STARTING) {
            return HttpResponse.text(409, "partition " + name + " is " + p.state() + " here (resumed: the migration is done)\n");
        }
        partitions.turnOff(p, "live migration from " + from + " failed; rolled back");
        ConfigComponent.Outcome dropped = config.release(name, from + " (rollback)", false);
        if (dropped.status() != 200) {
            return HttpResponse.text(500, "partition " + name + " is off here but its tables stay: "
                + String.join("; ", dropped.errors()) + "\n");
        }
        LOG.log(Level.INFO, "incoming migration rolled back partition=" + name + " from=" + from);
        return HttpResponse.text(200, "partition " + name + " removed\n");
    }

    HttpResponse incoming(String query) {
        String name = Query.parse(query).getOrDefault("name", "");
        ChildPartition p = partitions.partition(name);
        if (!(p instanceof VmPartition vm)) {
            return HttpResponse.text(404, "no VM partition named '" + name + "' here\n");
        }
        if (p.state().live()) {
            return HttpResponse.text(409, "partition " + name + " is " + p.state() + " here\n");
        }
        resumed.remove(name);
        String uri;
        try {
            String h = listenHost();
            uri = "tcp:" + (h.contains(":") ? "[" + h + "]" : h) + ":" + freePort();
        } catch (IOException e) {
            return HttpResponse.text(500, "no TCP port for the migration: " + e.getMessage() + "\n");
        }
        CompletableFuture<Void> listening = new CompletableFuture<>();
        // librbd's lock calls want a big stack (see RbdDisk).
        Thread t = new Thread(null, () -> {
            try {
                partitions.startIncoming(vm, uri, () -> listening.complete(null), LOCK_WAIT_MS);
                resumed.add(name);
            } catch (IOException | RuntimeException e) {
                listening.completeExceptionally(e);
                LOG.log(Level.WARNING, "incoming migration failed partition=" + name + " reason=\"" + e.getMessage() + "\"");
            }
        }, "vm-incoming-" + name, Librbd.CEPH_STACK_BYTES);
        t.setDaemon(true);
        t.start();
        try {
            listening.get(60, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            return HttpResponse.text(502, "partition " + name + ": QEMU did not start for the migration: "
                + e.getCause().getMessage() + "\n");
        } catch (TimeoutException e) {
            vm.turnOff("no incoming migration listener within 60 s");
            return HttpResponse.text(502, "partition " + name + ": QEMU did not listen within 60 s\n");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return HttpResponse.text(500, "interrupted\n");
        }
        LOG.log(Level.INFO, "incoming migration partition=" + name + " uri=" + uri);
        return HttpResponse.json(Json.write(Map.of("partition", name, "uri", uri)));
    }

    /** This appliance's management host (what its peers reach it on); loopback for a Unix socket. */
    private String listenHost() {
        return host.managementIsUnix() ? "127.0.0.1" : host.managementHost();
    }

    /** A free port on that host (released again: QEMU binds it a moment later). */
    private int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress(InetAddress.getByName(listenHost()), 0));
            return s.getLocalPort();
        }
    }
}
