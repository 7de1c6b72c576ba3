package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserBackend;
import io.phost.core.vmbus.PollingMode;
import io.phost.storage.scsi.ScsiTarget;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * Exports one SCSI controller (a {@link ScsiTarget} with its LUNs: disks, pass-through units) as a
 * vhost-user-scsi device on a Unix socket, for QEMU ({@code -chardev socket,id=c0,path=SOCK
 * -device vhost-user-scsi-pci,chardev=c0}; guest RAM {@code memory-backend-memfd,share=on}). The guest sees
 * target 0 with the target's LUNs; every command runs through the storage core as VMBus storvsc's do
 * (each LUN's QoS flow, read-only flag, engine and statistics).
 * <pre>
 *   ScsiTarget t = new ScsiTarget();  t.add(0, lun0);  t.add(1, lun1);
 *   VhostUserScsiExport e = VhostUserScsiExport.start("vm1-scsi0", t, sock, VhostUserScsiExport.Options.defaults());
 *   e.close();    // stops serving; the LUNs and their disks stay open (the caller owns them)
 * </pre>
 */
public final class VhostUserScsiExport extends VhostUserExport {
    /** Largest number of request queues offered (QEMU asks for one per vCPU by default). */
    public static final int MAX_REQUEST_QUEUES = 64;

    /**
     * @param requestQueues request queues offered (1..{@value #MAX_REQUEST_QUEUES}), besides control and event
     * @param cpus          CPUs the queue workers are pinned to; empty = no pinning
     * @param polling       how a request queue's worker with nothing in flight waits for the next command
     *                      ({@code [host] polling}, as vhost-user-blk's: {@code latency} polls the avail ring ~50 µs
     *                      with the driver's kicks off before it sleeps, {@code adaptive} does so while its governor
     *                      says it pays, {@code efficiency} sleeps at once); control and event queues never poll
     */
    public record Options(int requestQueues, List<Integer> cpus, PollingMode polling) {
        public Options {
            cpus = List.copyOf(cpus);
            Objects.requireNonNull(polling, "polling");
            if (requestQueues < 1 || requestQueues > MAX_REQUEST_QUEUES) {
                throw new IllegalArgumentException("vhost-user-scsi request queues " + requestQueues + ": must be 1 to " + MAX_REQUEST_QUEUES);
            }
        }

        /** The options before the polling mode (the host's default, {@link PollingMode#ADAPTIVE}). */
        public Options(int requestQueues, List<Integer> cpus) {
            this(requestQueues, cpus, PollingMode.ADAPTIVE);
        }

        /** {@value #MAX_REQUEST_QUEUES} request queues offered, no pinning, {@code adaptive} polling (the host's default). */
        public static Options defaults() {
            return new Options(MAX_REQUEST_QUEUES, List.of(), PollingMode.ADAPTIVE);
        }

        public Options withRequestQueues(int n) {
            return new Options(n, cpus, polling);
        }

        public Options withCpus(List<Integer> list) {
            return new Options(requestQueues, list, polling);
        }

        public Options withPolling(PollingMode mode) {
            return new Options(requestQueues, cpus, mode);
        }
    }

    private final ScsiTarget target;
    private final VhostUserScsiDevice device;

    private VhostUserScsiExport(String name, ScsiTarget target, VhostUserScsiDevice device, VhostUserBackend backend) {
        super(name, backend);
        this.target = target;
        this.device = device;
    }

    /** Starts serving {@code target} on {@code socketPath} (created; a stale socket is replaced). */
    public static VhostUserScsiExport start(String name, ScsiTarget target, Path socketPath, Options options) {
        Objects.requireNonNull(target, "target");
        VhostUserScsiDevice device = new VhostUserScsiDevice(target, options.requestQueues());
        return new VhostUserScsiExport(name, target, device, VhostUserBackend.start(name, socketPath, device, options.cpus(), options.polling()));
    }

    /**
     * LUN {@code lun} grew (after {@code ScsiLun.swapGrownDisk}): raises VIRTIO_SCSI_T_PARAM_CHANGE with
     * CAPACITY DATA HAS CHANGED (0x2A/0x09) on the event queue, so a Linux guest rescans the device and sees
     * the new size. Delivered when the driver has an event buffer posted (at once for Linux, which keeps 8);
     * the unit attention the LUN reports to its next command stays. Returns whether a front-end is connected.
     */
    public boolean capacityChanged(int lun) {
        device.capacityChanged(lun);
        return connected();
    }

    /**
     * Adds {@code unit} at LUN {@code lun} of the running controller (it answers commands at once) and raises
     * VIRTIO_SCSI_T_TRANSPORT_RESET / RESCAN for it, so a Linux guest that acked HOTPLUG probes it and a new
     * disk appears without a manual rescan. Throws when the LUN is taken.
     */
    public void addLun(int lun, io.phost.storage.scsi.ScsiLun unit) {
        target.add(lun, unit);
        device.lunChanged(lun, true);
    }

    /**
     * Removes LUN {@code lun} (new commands get CHECK CONDITION / LOGICAL UNIT NOT SUPPORTED from now on) and
     * raises VIRTIO_SCSI_T_TRANSPORT_RESET / REMOVED for it, so the guest drops the disk. Returns the unit (null
     * if none) for the caller to close once {@link io.phost.storage.scsi.ScsiTarget#awaitIdle} says so.
     */
    public io.phost.storage.scsi.ScsiLun removeLun(int lun) {
        io.phost.storage.scsi.ScsiLun unit = target.remove(lun);
        if (unit != null) {
            device.lunChanged(lun, false);
        }
        return unit;
    }

    @Override
    protected void released() {
        device.events.close();
    }

    public ScsiTarget target() {
        return target;
    }
}
