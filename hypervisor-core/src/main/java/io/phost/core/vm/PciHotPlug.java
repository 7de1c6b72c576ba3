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
 * PCI hot-plug of vhost-user-blk disks, vhost-user-scsi controllers and vhost-user-net NICs into a running QEMU over
 * QMP, for {@link VmPartition}:
 * <pre>
 *   plug    chardev-add {id, backend: socket, client, reconnect 1 (not for scsi, as on the command line)}
 *           then (net: netdev_add vhost-user ID-net)
 *           device_add vhost-user-blk-pci | vhost-user-scsi-pci | virtio-net-pci on a free spare pcie-root-port
 *           (q35: hp0..hp3) or the root bus (pc); a refused step undoes the ones before it
 *   unplug  device_del ID-dev, wait for DEVICE_DELETED (the guest releases it), chardev-remove (net: netdev_del,
 *           which deletes the netdev's chardev too)
 * </pre>
 * The spare ports a QEMU has are free again when it restarts ({@link #reset}).
 */
final class PciHotPlug {
    private static final Logger LOG = System.getLogger("phost.partitions");

    private final String partition;
    private final boolean q35;
    private final boolean kvm;
    private final Duration commandTimeout;
    /** Hot-plugged disks and NICs of the running QEMU: device id -> the spare port it took ("" on machine pc). */
    private final Map<String, String> ports = new ConcurrentHashMap<>();
    /** device_del requests waiting for their DEVICE_DELETED event, by QEMU device id. */
    private final Map<String, CompletableFuture<Void>> deletions = new ConcurrentHashMap<>();

    PciHotPlug(String partition, VmSpec.Machine machine, boolean kvm, Duration commandTimeout) {
        this.partition = partition;
        this.q35 = machine == VmSpec.Machine.Q35;
        this.kvm = kvm;
        this.commandTimeout = commandTimeout;
    }

    /** A new QEMU starts with every spare port free (the disks hot-plugged before are in its command line now). */
    void reset() {
        ports.clear();
    }

    void plug(QmpClient q, VmDevice d) {
        String port = q35 ? freePort() : "";
        Map<String, Object> socket = new LinkedHashMap<>();
        socket.put("addr", Map.of("type", "unix", "data", Map.of("path", d.socket().toString())));
        socket.put("server", false);
        if (d.type() != VmDevice.Type.SCSI) { // QEMU 7.2 cannot reconnect vhost-user-scsi (QemuCommandLine.reconnect)
            socket.put("reconnect", 1);
        }
        q.execute("chardev-add", Map.of("id", d.id(), "backend", Map.of("type", "socket", "data", socket)), commandTimeout);
        boolean net = d.type() == VmDevice.Type.NET;
        boolean netdev = false;
        try {
            if (net) {
                q.execute("netdev_add", Map.of("type", "vhost-user", "id", d.id() + "-net", "chardev", d.id(),
                    "queues", d.queues()), commandTimeout);
                netdev = true;
            }
            q.execute("device_add", deviceArgs(d, port), commandTimeout);
        } catch (RuntimeException e) {
            // a vhost-user netdev deletes its chardev with itself (QEMU's net_vhost_user_cleanup)
            quietly(q, netdev ? "netdev_del" : "chardev-remove", d.id() + (netdev ? "-net" : ""), e);
            throw e;
        }
        ports.put(d.id(), port);
        LOG.log(Level.INFO, "hot-plugged partition=" + partition + " device=" + d.id() + " socket=" + d.socket()
            + (port.isEmpty() ? "" : " port=" + port));
    }

    /** The device_add arguments: as {@link QemuCommandLine} puts the same device on a command line. */
    private Map<String, Object> deviceArgs(VmDevice d, String port) {
        Map<String, Object> args = new LinkedHashMap<>();
        args.put("id", d.id() + "-dev");
        if (d.type() == VmDevice.Type.NET) {
            args.put("driver", "virtio-net-pci");
            args.put("netdev", d.id() + "-net");
            args.put("mac", d.mac());
            boolean mq = d.queues() > 1;
            if (mq) {
                args.put("mq", true);
            }
            if (!kvm) { // QEMU 7.2 segfaults with vhost-user-net under TCG when MSI-X is on (see QemuCommandLine)
                args.put("vectors", 0);
            } else if (mq) {
                args.put("vectors", 2 * d.queues() + 2);
            }
        } else if (d.type() == VmDevice.Type.SCSI) {
            args.put("driver", "vhost-user-scsi-pci");
            args.put("chardev", d.id());
            args.put("num_queues", d.queues());
        } else {
            args.put("driver", "vhost-user-blk-pci");
            args.put("chardev", d.id());
            args.put("num-queues", d.queues());
        }
        if (!port.isEmpty()) {
            args.put("bus", port);
        }
        return args;
    }

    private void quietly(QmpClient q, String command, String id, RuntimeException failure) {
        try {
            q.execute(command, Map.of("id", id), commandTimeout);
        } catch (RuntimeException again) {
            failure.addSuppressed(again);
        }
    }

    /** True when device {@code id} was hot-plugged into the running QEMU (so it sits where it can be unplugged). */
    boolean plugged(String id) {
        return ports.containsKey(id);
    }

    /** Throws when the guest did not release the device within {@code timeout} (QEMU may still remove it later). */
    void unplug(QmpClient q, String id, boolean net, Duration timeout) {
        var gone = new CompletableFuture<Void>();
        deletions.put(id + "-dev", gone);
        try {
            q.execute("device_del", Map.of("id", id + "-dev"), commandTimeout);
            gone.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("partition " + partition + ": the guest did not release device " + id
                + " within " + timeout.toSeconds() + " s (no DEVICE_DELETED)");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for DEVICE_DELETED of " + id, e);
        } catch (ExecutionException e) {
            throw new IllegalStateException("waiting for DEVICE_DELETED of " + id + ": " + e.getCause(), e);
        } finally {
            deletions.remove(id + "-dev");
        }
        if (net) { // the vhost-user netdev deletes its chardev with itself (QEMU's net_vhost_user_cleanup)
            q.execute("netdev_del", Map.of("id", id + "-net"), commandTimeout);
        } else {
            q.execute("chardev-remove", Map.of("id", id), commandTimeout);
        }
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
            + " hot-plug ports of this QEMU are taken; restart the partition (its disks and NICs then get their own ports)");
    }
}
