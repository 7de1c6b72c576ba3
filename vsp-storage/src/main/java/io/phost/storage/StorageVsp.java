package io.phost.storage;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.vmbus.StorvscDescriptor;
import io.phost.storage.vmbus.StorvspChannel;
import io.phost.vhdx.VirtualDisk;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The storage VSP for one partition: a virtual SCSI controller (storvsc protocol) with up to 64 LUNs,
 * each a {@link VirtualDisk} (VHDX, VHD, raw file, pass-through device) with its own QoS flow,
 * read-only flag and I/O engine. Register with {@code partition.offer(vsp)}; the guest's channel and
 * each sub-channel get their own queue and agent. Disks can be added and removed while it runs (the
 * guest is told to rescan). Per-disk counters ({@link DiskStats}) feed /status and /metrics.
 *
 * <pre>
 *   StorageVsp vsp = new StorageVsp("vm1", 4);                    // up to 4 sub-channels (5 queues)
 *   vsp.attach(0, "os", RawDisk.openFile(path, false, true), QosFlow.UNLIMITED, false);
 *   partition.offer(vsp);
 *   ... vsp.disks()  ->  name, format, engine, stats ...
 * </pre>
 */
public final class StorageVsp implements VirtualServiceProvider {
    /** Commands in flight per queue. */
    public static final int QUEUE_DEPTH = 128;

    private final String partition;
    private final UUID instance;
    private final int subChannels;
    private final ScsiTarget target = new ScsiTarget();
    /** The guest's I_T nexus: its primary channel and sub-channels share unit attentions. */
    private volatile ScsiTarget.Initiator initiator;
    private final List<StorvspChannel> channels = new CopyOnWriteArrayList<>();

    /** One attached disk, as /status shows it. */
    public record DiskInfo(int lun, String name, String format, long sizeBytes, boolean readOnly, DiskStats stats) {
    }

    public StorageVsp(String partition, int subChannels) {
        this(partition, UUID.nameUUIDFromBytes(("phost-storage-" + partition).getBytes(StandardCharsets.UTF_8)), subChannels);
    }

    public StorageVsp(String partition, UUID instance, int subChannels) {
        this.partition = partition;
        this.instance = instance;
        this.subChannels = Math.max(0, Math.min(subChannels, 63));
    }

    @Override
    public UUID interfaceType() {
        return StorvscDescriptor.SCSI_INTERFACE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "vsp-storage";
    }

    public ScsiTarget target() {
        return target;
    }

    /** Attaches {@code disk} at {@code lun} (hot-add when the partition runs); the engine is chosen automatically. */
    public ScsiLun attach(int lun, String name, VirtualDisk disk, QosFlow qos, boolean readOnly) {
        return attach(lun, name, disk, qos, readOnly, IoEngines.Kind.AUTO);
    }

    public ScsiLun attach(int lun, String name, VirtualDisk disk, QosFlow qos, boolean readOnly, IoEngines.Kind engine) {
        return attach(lun, new ScsiLun(lunName(partition, name), disk, qos, readOnly, engine));
    }

    /** Attaches a LUN made elsewhere: the disk's one LUN that another transport (an NBD export) serves too. */
    public ScsiLun attach(int lun, ScsiLun unit) {
        target.add(lun, unit);
        rescan();
        return unit;
    }

    /** The name of the LUN serving disk {@code disk} to {@code partition} (its INQUIRY serial derives from it). */
    public static String lunName(String partition, String disk) {
        return partition + "-" + disk;
    }

    /**
     * Hot-removes the disk at {@code lun}: new commands fail at once, in-flight ones finish (up to
     * {@code timeoutMillis}); returns the disk so the caller can close it, or null if the LUN was empty.
     */
    public VirtualDisk detach(int lun, long timeoutMillis) throws InterruptedException {
        ScsiLun unit = target.remove(lun);
        if (unit == null) {
            return null;
        }
        ScsiTarget.awaitIdle(unit, timeoutMillis);
        rescan();
        return unit.disk();
    }

    private void rescan() {
        for (StorvspChannel c : channels) {
            c.requestBusRescan();
        }
    }

    /** Attached disks with their counters. */
    public List<DiskInfo> disks() {
        List<DiskInfo> out = new ArrayList<>();
        for (int i = 0; i < ScsiTarget.MAX_LUNS; i++) {
            ScsiLun u = target.lun(i);
            if (u != null) {
                out.add(new DiskInfo(i, u.name(), u.disk().format(), u.disk().size(), u.readOnly(), u.stats()));
            }
        }
        return out;
    }

    /** Counters as flat metric names: {@code storage_<lun>_reads} etc. */
    public Map<String, Long> metrics() {
        Map<String, Long> m = new LinkedHashMap<>();
        for (DiskInfo d : disks()) {
            d.stats().snapshot().forEach((k, v) -> m.put("storage_lun" + d.lun() + "_" + k, v));
        }
        return m;
    }

    /** Open queues (primary + sub-channels) across the partition's guests. */
    public int openChannels() {
        return channels.size();
    }

    @Override
    public ChannelHandler open(ChannelContext ctx) {
        StorvspChannel[] self = new StorvspChannel[1];
        if (ctx.subChannelIndex() == 0 || initiator == null) {
            initiator = target.newInitiator(); // a guest (re)connecting: its sub-channels follow
        }
        StorvspChannel ch = new StorvspChannel(ctx, target, initiator, QUEUE_DEPTH, subChannels, () -> channels.remove(self[0]));
        self[0] = ch;
        channels.add(ch);
        return ch;
    }
}
