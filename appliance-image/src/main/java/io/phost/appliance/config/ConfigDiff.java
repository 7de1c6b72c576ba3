package io.phost.appliance.config;

import io.phost.appliance.config.ConfigChange.Op;
import io.phost.appliance.config.ConfigChange.Subject;
import io.phost.vhdx.DiskFormat;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * What it takes to go from the running config to a new one without a restart ({@code phost apply}): the changes
 * a running host can make, in the order to make them, and the refusals (each at its position in the new file,
 * with the reason). A live apply goes ahead only when there is no refusal.
 *
 * <p>Order: partitions leave first (freeing their ports), then QoS policies, switches and partitions are added
 * or changed, then disks move to their new policies and ports take their new settings, and last the switches and
 * policies nothing uses any more are removed.
 */
public record ConfigDiff(List<ConfigChange> changes, List<ConfigError> refusals) {
    /** NIC keys that are part of the port's identity or of the adapter built at start. */
    private static final Set<String> NIC_FIXED = Set.of("switch", "mac", "mtu");

    public ConfigDiff {
        changes = List.copyOf(changes);
        refusals = List.copyOf(refusals);
    }

    public boolean isEmpty() {
        return changes.isEmpty() && refusals.isEmpty();
    }

    /** The plan: one line per change. */
    public List<String> plan() {
        return changes.stream().map(ConfigChange::planLine).toList();
    }

    /**
     * @param running  the config the host runs now (the last one applied)
     * @param next     the new config, already valid on its own ({@link ConfigLoader})
     * @param nextText the new config's text, for positions
     */
    public static ConfigDiff between(ApplianceConfig running, ApplianceConfig next, String nextText) {
        return new Differ(running, next, new ConfigPositions(nextText), next.source().toString()).diff();
    }

    private static final class Differ {
        private final ApplianceConfig running;
        private final ApplianceConfig next;
        private final ConfigPositions positions;
        private final String file;
        private final List<ConfigChange> removedPartitions = new ArrayList<>();
        private final List<ConfigChange> addsAndChanges = new ArrayList<>();
        private final List<ConfigChange> settings = new ArrayList<>();
        private final List<ConfigChange> lastRemovals = new ArrayList<>();
        private final List<ConfigError> refusals = new ArrayList<>();

        Differ(ApplianceConfig running, ApplianceConfig next, ConfigPositions positions, String file) {
            this.running = running;
            this.next = next;
            this.positions = positions;
            this.file = file;
        }

        ConfigDiff diff() {
            String host = firstDifference(running.host(), next.host());
            if (host != null) {
                refuse("host." + host, "the [host] section is read at start only; restart phost to change it");
            }
            if (!running.cluster().peers().equals(next.cluster().peers())) {
                refuse("peer", "the [[peer]] tables are read at start only; restart phost to change them");
            }
            qosPolicies();
            List<ConfigChange> switchRemovals = switches();
            disks();
            partitions();
            List<ConfigChange> all = new ArrayList<>(removedPartitions);
            all.addAll(addsAndChanges);
            all.addAll(settings);
            all.addAll(switchRemovals);
            all.addAll(lastRemovals);
            refusals.sort(ConfigError.BY_POSITION);
            return new ConfigDiff(all, refusals);
        }

        private void qosPolicies() {
            for (QosPolicyConfig p : next.qosPolicies()) {
                var old = running.qosPolicy(p.name());
                if (old.isEmpty()) {
                    addsAndChanges.add(new ConfigChange(Op.ADD, Subject.QOS_POLICY, p.name(), -1, null, p, ""));
                } else if (!old.get().equals(p)) {
                    addsAndChanges.add(new ConfigChange(Op.CHANGE, Subject.QOS_POLICY, p.name(), -1, old.get(), p,
                        describe(old.get(), p)));
                }
            }
            for (QosPolicyConfig p : running.qosPolicies()) {
                if (next.qosPolicy(p.name()).isEmpty()) {
                    lastRemovals.add(new ConfigChange(Op.REMOVE, Subject.QOS_POLICY, p.name(), -1, p, null, ""));
                }
            }
        }

        private List<ConfigChange> switches() {
            List<ConfigChange> removals = new ArrayList<>();
            for (int i = 0; i < next.switches().size(); i++) {
                SwitchConfig s = next.switches().get(i);
                var old = running.switchConfig(s.name());
                if (old.isEmpty()) {
                    addsAndChanges.add(new ConfigChange(Op.ADD, Subject.SWITCH, s.name(), -1, null, s, ""));
                } else {
                    String key = firstDifference(old.get(), s);
                    if (key != null) {
                        refuse("switch[" + i + "]." + key, "a switch's " + key + " is fixed while the switch exists; "
                            + "remove the switch (with its ports) in one apply and add it back in the next");
                    }
                }
            }
            for (SwitchConfig s : running.switches()) {
                if (next.switchConfig(s.name()).isEmpty()) {
                    removals.add(new ConfigChange(Op.REMOVE, Subject.SWITCH, s.name(), -1, s, null, ""));
                }
            }
            return removals;
        }

        private void disks() {
            for (int i = 0; i < next.disks().size(); i++) {
                DiskConfig d = next.disks().get(i);
                var old = running.disk(d.name());
                if (old.isEmpty()) {
                    String why = hotAddable(d);
                    if (why != null) {
                        refuse("disk[" + i + "]", "adding " + why + " to a running host is not supported yet; restart phost");
                    } else {
                        addsAndChanges.add(new ConfigChange(Op.ADD, Subject.DISK, d.name(), -1, null, d, ""));
                    }
                    continue;
                }
                String key = firstDifference(withPolicy(old.get(), d.qosPolicy()), d);
                if (key != null) {
                    refuse("disk[" + i + "]." + key, "a disk's " + key + " is fixed while the host runs (its image "
                        + "is open); restart phost to change it");
                } else if (!Objects.equals(old.get().qosPolicy(), d.qosPolicy())) {
                    settings.add(new ConfigChange(Op.CHANGE, Subject.DISK_POLICY, d.name(), -1, old.get(), d,
                        "qos_policy " + show(old.get().qosPolicy()) + " -> " + show(d.qosPolicy())));
                }
            }
            for (DiskConfig d : running.disks()) {
                if (next.disk(d.name()).isEmpty()) {
                    String why = hotAddable(d);
                    if (why != null) {
                        refuse("disk", "removing " + why.replace("a disk", "disk '" + d.name() + "'") + " from a running "
                            + "host is not supported yet (it is served until phost stops); keep its [[disk]] table, or restart phost");
                    } else {
                        lastRemovals.add(new ConfigChange(Op.REMOVE, Subject.DISK, d.name(), -1, d, null, ""));
                    }
                }
            }
        }

        /**
         * Null when disk {@code d} can be opened or closed live, else what it is (for the refusal). An RBD disk can (a
         * partition moving between appliances brings its disks along).
         */
        private String hotAddable(DiskConfig d) {
            if (d.nbdExport() || d.vhostUser()) {
                return "a disk exported over NBD or vhost-user";
            }
            if (d.format() == DiskFormat.PASSTHROUGH) {
                return "an " + d.format().name().toLowerCase(java.util.Locale.ROOT) + " disk";
            }
            return null;
        }

        private void partitions() {
            for (PartitionConfig p : running.partitions()) {
                if (next.partition(p.name()).isEmpty()) {
                    removedPartitions.add(new ConfigChange(Op.REMOVE, Subject.PARTITION, p.name(), -1, p, null, ""));
                }
            }
            for (int i = 0; i < next.partitions().size(); i++) {
                PartitionConfig p = next.partitions().get(i);
                String at = "partition[" + i + "]";
                var old = running.partition(p.name());
                if (old.isEmpty()) {
                    addsAndChanges.add(new ConfigChange(Op.ADD, Subject.PARTITION, p.name(), -1, null, p, ""));
                    continue;
                }
                partition(at, old.get(), p);
            }
        }

        private void partition(String at, PartitionConfig old, PartitionConfig p) {
            if (!old.disks().equals(p.disks())) {
                attachments(at, old, p);
            }
            int common = Math.min(old.nics().size(), p.nics().size());
            for (int n = 0; n < common; n++) {
                nic(at + ".nic[" + n + "]", p.name(), n, old.nics().get(n), p.nics().get(n));
            }
            // NICs are hot-added and hot-removed at the end of the list (a VMBus offer or rescind, or a VM's virtio-net
            // PCI hot-plug; guests number NICs in arrival order, so one in the middle would renumber the rest):
            // removals first, highest index first, and additions where the partition's other changes are made.
            for (int n = old.nics().size() - 1; n >= common; n--) {
                removedPartitions.add(new ConfigChange(Op.REMOVE, Subject.NIC, p.name(), n, old.nics().get(n), null, ""));
            }
            for (int n = common; n < p.nics().size(); n++) {
                addsAndChanges.add(new ConfigChange(Op.ADD, Subject.NIC, p.name(), n, null, p.nics().get(n), ""));
            }
            PartitionConfig sameButNicsDisks = new PartitionConfig(old.name(), old.vcpus(), old.memory(), p.disks(), p.nics(),
                old.command(), old.workload(), p.autostart(), old.vm(), old.onCrash(), old.cpus());
            String key = firstDifference(sameButNicsDisks, p);
            if (key != null) {
                refuse(at + "." + key, "a partition's " + key + " is fixed while the partition exists (a running "
                    + (p.isVm() ? "VM's" : "process partition's") + " " + key + " cannot change); remove the "
                    + "partition in one apply and add it back in the next");
            }
            if (old.autostart() != p.autostart()) {
                settings.add(new ConfigChange(Op.CHANGE, Subject.AUTOSTART, p.name(), -1, old, p,
                    "autostart " + old.autostart() + " -> " + p.autostart() + " (takes effect at the next start of phost)"));
            }
        }

        /**
         * A process partition's disks are hot-added and hot-removed as LUNs of its existing controllers (removals first,
         * so a LUN can change disks in one apply); a VM's as {@link #vmAttachments} says.
         */
        private void attachments(String at, PartitionConfig old, PartitionConfig p) {
            if (p.isVm()) {
                vmAttachments(at, old, p);
                return;
            }
            Set<Integer> controllers = new java.util.HashSet<>();
            old.disks().forEach(a -> controllers.add(a.controller()));
            for (DiskAttachment a : old.disks()) {
                if (!p.disks().contains(a)) {
                    removedPartitions.add(new ConfigChange(Op.REMOVE, Subject.ATTACHMENT, p.name(), -1, a, null, ""));
                }
            }
            for (int n = 0; n < p.disks().size(); n++) {
                DiskAttachment a = p.disks().get(n);
                if (old.disks().contains(a)) {
                    continue;
                }
                if (!controllers.contains(a.controller())) {
                    refuse(at + ".disk[" + n + "].controller", "a new controller cannot be added to a running "
                        + "partition (its VMBus offer is made when the partition is built); attach the disk to controller "
                        + controllers.stream().sorted().map(String::valueOf).collect(java.util.stream.Collectors.joining(" or "))
                        + ", or remove the partition and add it back");
                    continue;
                }
                DiskConfig d = next.disk(a.disk()).orElseThrow();
                String what = d.format() == DiskFormat.RBD ? "an rbd disk (its lock follows the partition, taken at its "
                    + "start)" : hotAddable(d);
                if (what != null) {
                    refuse(at + ".disk[" + n + "]", "hot-adding " + what + " is not supported yet; restart phost");
                    continue;
                }
                settings.add(new ConfigChange(Op.ADD, Subject.ATTACHMENT, p.name(), -1, null, a, ""));
            }
        }

        /**
         * A VM's {@code bus = "blk"} disks are hot-plugged as PCI devices (QMP device_add and device_del); its SCSI LUNs
         * are added to and removed from the running vhost-user-scsi controller, which tells the guest with virtio-scsi
         * hot-plug events. A LUN on a controller the VM does not have brings a new controller (a PCI hot-plug of
         * vhost-user-scsi-pci), and the removal of the last LUN of a hot-plugged controller unplugs it (one made when
         * QEMU started stays, with no LUNs, while the partition exists). Removals come first, so a LUN can change
         * disks in one apply.
         */
        private void vmAttachments(String at, PartitionConfig old, PartitionConfig p) {
            for (DiskAttachment a : old.disks()) {
                if (!p.disks().contains(a)) {
                    removedPartitions.add(new ConfigChange(Op.REMOVE, Subject.ATTACHMENT, p.name(), -1, a, null, ""));
                }
            }
            for (int n = 0; n < p.disks().size(); n++) {
                DiskAttachment a = p.disks().get(n);
                if (old.disks().contains(a)) {
                    continue;
                }
                DiskConfig d = next.disk(a.disk()).orElseThrow();
                if (hotAddable(d) != null) {
                    refuse(at + ".disk[" + n + "]", "hot-adding " + hotAddable(d) + " is not supported yet; restart phost");
                } else {
                    settings.add(new ConfigChange(Op.ADD, Subject.ATTACHMENT, p.name(), -1, null, a, ""));
                }
            }
        }

        private void nic(String at, String partition, int index, NicConfig old, NicConfig n) {
            if (old.equals(n)) {
                return;
            }
            for (String key : differences(old, n)) {
                if (NIC_FIXED.contains(key)) {
                    refuse(at + "." + key, "a NIC's " + key + " is fixed while its partition exists (it names the "
                        + "port and the adapter built at start); remove the partition and add it back");
                    return;
                }
            }
            settings.add(new ConfigChange(Op.CHANGE, Subject.PORT, partition, index, old, n, describe(old, n)));
        }

        private void refuse(String keyPath, String reason) {
            int[] p = positions.of(keyPath);
            refusals.add(new ConfigError(file, p[0], p[1], keyPath, ConfigError.Reason.CONFLICT,
                "cannot change on a running host: " + reason));
        }

        private static DiskConfig withPolicy(DiskConfig d, String policy) {
            return new DiskConfig(d.name(), d.path(), d.format(), d.create(), d.parent(), policy, d.readOnly(), d.ioEngine(),
                d.nbdExport(), d.vhostUser(), d.rbd());
        }
    }

    /** The config key of the first record component that differs, or null when equal. */
    static String firstDifference(Record a, Record b) {
        List<String> d = differences(a, b);
        return d.isEmpty() ? null : d.getFirst();
    }

    /** The config keys (snake_case) of the record components that differ. */
    static List<String> differences(Record a, Record b) {
        List<String> keys = new ArrayList<>();
        for (RecordComponent c : a.getClass().getRecordComponents()) {
            if (!Objects.equals(value(c, a), value(c, b))) {
                keys.add(key(c.getName()));
            }
        }
        return keys;
    }

    /** {@code key old -> new, ...} for every differing component. */
    static String describe(Record a, Record b) {
        List<String> parts = new ArrayList<>();
        for (RecordComponent c : a.getClass().getRecordComponents()) {
            Object x = value(c, a);
            Object y = value(c, b);
            if (!Objects.equals(x, y)) {
                parts.add(key(c.getName()) + " " + show(x) + " -> " + show(y));
            }
        }
        return String.join(", ", parts);
    }

    private static Object value(RecordComponent c, Record r) {
        try {
            return c.getAccessor().invoke(r);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The TOML key of a record component: camelCase to snake_case, and {@code switchName} is {@code switch}. */
    static String key(String component) {
        if (component.equals("switchName")) {
            return "switch";
        }
        return component.replaceAll("([a-z0-9])([A-Z])", "$1_$2").toLowerCase(java.util.Locale.ROOT);
    }

    private static String show(Object v) {
        return v == null ? "none" : v instanceof String s ? "\"" + s + "\"" : String.valueOf(v);
    }
}
