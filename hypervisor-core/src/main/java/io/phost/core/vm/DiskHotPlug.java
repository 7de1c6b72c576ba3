package io.phost.core.vm;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * PCI hot-plug of vhost-user-blk disks into a running QEMU over QMP, for {@link VmPartition}:
 * <pre>
 *   plug    chardev-add {id, backend: socket, client, reconnect 1}  then  device_add vhost-user-blk-pci
 *           on a free spare pcie-root-port (q35: hp0..hp3) or the root bus (pc); a refused device_add removes the chardev
 *   unplug  device_del ID-dev, wait for DEVICE_DELETED (the guest releases it), chardev-remove
 * </pre>
 * The spare ports a QEMU has are free again when it restarts ({@link #reset}).
 */
final class DiskHotPlug {
    private static final Logger LOG = System.getLogger("phost.partitions");

    private final String partition;
    private final boolean q35;
    private final Duration commandTimeout;
    /** Hot-plugged disks of the running QEMU: device id -> the spare port it took ("" on machine pc). */
    private final Map<String, String> ports = new ConcurrentHashMap<>();
    /** device_del requests waiting for their DEVICE_DELETED event, by QEMU device id. */
    private final Map<String, CompletableFuture<Void>> deletions = new ConcurrentHashMap<>();

    DiskHotPlug(String partition, VmSpec.Machine machine, Duration commandTimeout) {
        this.partition = partition;
        this.q35 = machine == VmSpec.Machine.Q35;
        this.commandTimeout = commandTimeout;
    }

    /** A new QEMU starts with every spare port free (the disks hot-plugged before are in its command line now). */
    void reset() {
        ports.clear();
    }

    void plug(QmpClient q, VmDevice d) {
        String port = q35 ? freePort() : "";
        q.execute("chardev-add", Map.of("id", d.id(), "backend", Map.of("type", "socket", "data", Map.of(
            "addr", Map.of("type", "unix", "data", Map.of("path", d.socket().toString())), "server", false, "reconnect", 1))),
            commandTimeout);
        try {
            Map<String, Object> args = new LinkedHashMap<>();
            args.put("driver", "vhost-user-blk-pci");
            args.put("id", d.id() + "-dev");
            args.put("chardev", d.id());
            args.put("num-queues", d.queues());
            if (!port.isEmpty()) {
                args.put("bus", port);
            }
            q.execute("device_add", args, commandTimeout);
        } catch (RuntimeException e) {
            try {
                q.execute("chardev-remove", Map.of("id", d.id()), commandTimeout);
            } catch (RuntimeException again) {
                e.addSuppressed(again);
            }
            throw e;
        }
        ports.put(d.id(), port);
        LOG.log(Level.INFO, "hot-plugged partition=" + partition + " device=" + d.id() + " socket=" + d.socket()
            + (port.isEmpty() ? "" : " port=" + port));
    }

    /** Throws when the guest did not release the device within {@code timeout} (QEMU may still remove it later). */
    void unplug(QmpClient q, String id, Duration timeout) {
        var gone = new CompletableFuture<Void>();
        deletions.put(id + "-dev", gone);
        try {
            q.execute("device_del", Map.of("id", id + "-dev"), commandTimeout);
            gone.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("partition " + partition + ": the guest did not release disk device " + id
                + " within " + timeout.toSeconds() + " s (no DEVICE_DELETED)");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for DEVICE_DELETED of " + id, e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("waiting for DEVICE_DELETED of " + id + ": " + e.getCause(), e);
        } finally {
            deletions.remove(id + "-dev");
        }
        q.execute("chardev-remove", Map.of("id", id), commandTimeout);
        ports.remove(id);
        LOG.log(Level.INFO, "hot-unplugged partition=" + partition + " device=" + id);
    }

    /** A QMP event (on the QMP reader thread): completes the wait of a device_del. */
    void event(Map<String, Object> e) {
        if ("DEVICE_DELETED".equals(e.get("event")) && e.get("data") instanceof Map<?, ?> d && d.get("device") instanceof String id) {
            var waiting = deletions.get(id);
            if (waiting != null) {
                waiting.complete(null);
            }
        }
    }

    private String freePort() {
        for (String port : QemuCommandLine.hotPlugPorts()) {
            if (!ports.containsValue(port)) {
                return port;
            }
        }
        throw new IllegalStateException("partition " + partition + ": all " + QemuCommandLine.HOT_PLUG_PORTS
            + " hot-plug ports of this QEMU are taken; restart the partition (its disks then get their own ports)");
    }
}
