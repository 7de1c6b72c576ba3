package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserBackend;
import io.phost.core.vmbus.PollingMode;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.vhdx.VirtualDisk;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * Exports one {@link VirtualDisk} as a vhost-user-blk device on a Unix socket, for QEMU
 * ({@code -chardev socket,id=c0,path=SOCK -device vhost-user-blk-pci,chardev=c0}; guest RAM must be
 * {@code memory-backend-memfd,share=on}) or any other vhost-user front-end. The disk's I/O goes through
 * the storage core exactly as VMBus I/O does: its QoS flow, read-only flag, engine and statistics.
 *
 * <pre>
 *   VhostUserBlkExport e = VhostUserBlkExport.start("vm1-os", disk, Path.of("/run/phost/vhost/os.sock"),
 *       VhostUserBlkExport.Options.defaults().withReadOnly(false).withQos(flow));
 *   ... e.connected(), e.stats(), e.lastError() ...
 *   e.close();    // stops serving; does not close the disk (the caller owns it)
 * </pre>
 */
public final class VhostUserBlkExport extends VhostUserExport {
    /** Largest number of queues a device offers (QEMU asks for one per vCPU by default). */
    public static final int MAX_QUEUES = 64;

    /**
     * How the disk is exported.
     *
     * @param readOnly reject writes (advertised as VIRTIO_BLK_F_RO); a read-only disk is always exported read-only
     * @param qos      the flow every I/O is admitted through ({@link QosFlow#UNLIMITED} for none)
     * @param queues   queues offered (1..{@value #MAX_QUEUES}); each started queue gets its own worker thread
     * @param engine   the I/O engine kind for this disk
     * @param serial   the GET_ID answer (up to 20 ASCII bytes; longer is cut), null for the export's name
     * @param cpus     CPUs the queue workers are pinned to ({@code [host] vsp_cpus}); empty = no pinning
     * @param polling  how a queue worker with nothing in flight waits for the next request ({@code [host] polling}):
     *                 {@code latency} polls the avail ring ~50 µs with the driver's kicks off before it sleeps,
     *                 {@code adaptive} does so while its governor says it pays, {@code efficiency} sleeps at once
     */
    public record Options(boolean readOnly, QosFlow qos, int queues, IoEngines.Kind engine, String serial, List<Integer> cpus,
                          PollingMode polling) {
        public Options {
            Objects.requireNonNull(qos, "qos");
            Objects.requireNonNull(polling, "polling");
            Objects.requireNonNull(engine, "engine");
            cpus = List.copyOf(cpus);
            if (queues < 1 || queues > MAX_QUEUES) {
                throw new IllegalArgumentException("vhost-user-blk queues " + queues + ": must be 1 to " + MAX_QUEUES);
            }
        }

        /** The options without pinning (the first published shape of this record). */
        public Options(boolean readOnly, QosFlow qos, int queues, IoEngines.Kind engine, String serial) {
            this(readOnly, qos, queues, engine, serial, List.of());
        }

        /** The options before the polling mode (the host's default, {@link PollingMode#ADAPTIVE}). */
        public Options(boolean readOnly, QosFlow qos, int queues, IoEngines.Kind engine, String serial, List<Integer> cpus) {
            this(readOnly, qos, queues, engine, serial, cpus, PollingMode.ADAPTIVE);
        }

        /**
         * Writable, unlimited QoS, {@value #MAX_QUEUES} queues offered, automatic engine, serial = export name,
         * no pinning, {@code adaptive} polling (the host's default). Offering many queues costs nothing until the front-end starts them (a worker and 128
         * request slots per started queue); QEMU starts its own num-queues (default: one per vCPU) and refuses
         * to start when that exceeds what the back-end offers.
         */
        public static Options defaults() {
            return new Options(false, QosFlow.UNLIMITED, MAX_QUEUES, IoEngines.Kind.AUTO, null, List.of(), PollingMode.ADAPTIVE);
        }

        public Options withPolling(PollingMode mode) {
            return new Options(readOnly, qos, queues, engine, serial, cpus, mode);
        }

        public Options withCpus(List<Integer> list) {
            return new Options(readOnly, qos, queues, engine, serial, list, polling);
        }

        public Options withReadOnly(boolean ro) {
            return new Options(ro, qos, queues, engine, serial, cpus, polling);
        }

        public Options withQos(QosFlow flow) {
            return new Options(readOnly, flow, queues, engine, serial, cpus, polling);
        }

        public Options withQueues(int n) {
            return new Options(readOnly, qos, n, engine, serial, cpus, polling);
        }

        public Options withEngine(IoEngines.Kind kind) {
            return new Options(readOnly, qos, queues, kind, serial, cpus, polling);
        }

        public Options withSerial(String s) {
            return new Options(readOnly, qos, queues, engine, s, cpus, polling);
        }
    }

    private final VhostUserBlkDevice device;

    private VhostUserBlkExport(String name, VhostUserBlkDevice device, VhostUserBackend backend) {
        super(name, backend);
        this.device = device;
    }

    /**
     * Starts serving {@code disk} on {@code socketPath} (created, with its parent directories; a stale
     * socket there is replaced). Returns at once; front-ends may connect from then on.
     */
    public static VhostUserBlkExport start(String name, VirtualDisk disk, Path socketPath, Options options) {
        Objects.requireNonNull(disk, "disk");
        return start(name, new ScsiLun(name, disk, options.qos(), options.readOnly(), options.engine()), socketPath, options);
    }

    /**
     * Serves an existing LUN (one an NBD export of the same disk shares, say): its disk, QoS flow, read-only flag
     * and engine are the LUN's; of {@code options} only the queues, serial, CPUs and polling mode apply.
     */
    public static VhostUserBlkExport start(String name, ScsiLun lun, Path socketPath, Options options) {
        VhostUserBlkDevice device = new VhostUserBlkDevice(lun, options.queues(), options.serial() == null ? name : options.serial());
        VhostUserBackend backend = VhostUserBackend.start(name, socketPath, device, options.cpus(), options.polling());
        return new VhostUserBlkExport(name, device, backend);
    }

    /** The disk served now (a checkpoint may have switched the LUN to another). */
    public VirtualDisk disk() {
        return device.lun().disk();
    }

    /** The storage-core LUN behind the export (a checkpoint switches its disk under an I/O pause). */
    public ScsiLun lun() {
        return device.lun();
    }

    /** True when the disk is exported read-only (asked for, or the disk itself is read-only). */
    public boolean readOnly() {
        return device.lun().readOnly();
    }

    /** The disk's I/O counters (reads, writes, flushes, unmaps, errors, latency histogram). */
    public DiskStats stats() {
        return device.lun().stats();
    }
}
