package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigChange;
import io.phost.appliance.config.ConfigDiff;
import io.phost.appliance.config.ConfigError;
import io.phost.appliance.config.ConfigException;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.ConfigStanzas;
import io.phost.appliance.config.DiskAttachment;
import io.phost.appliance.config.DiskConfig;
import io.phost.appliance.config.NicConfig;
import io.phost.appliance.config.NicText;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.config.QosPolicyConfig;
import io.phost.appliance.config.SwitchConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.core.text.Json;
import io.phost.vswitch.PortConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * The running config and its live changes ({@code phost apply}, {@code POST /v1/config}): a new config is validated
 * as {@code phost run} validates it, compared with the running one ({@link ConfigDiff}), and either refused as a
 * whole (a change that cannot be made live, named at its position) or made in one step: each change is undone
 * again if a later one fails, so the host runs the old config or the new one, never a mix. The applied config
 * is saved ({@link AppliedConfig}); so is each {@code qos set-policy}.
 */
public final class ConfigComponent implements Component {
    private static final Logger LOG = System.getLogger("phost.config");

    private final QosComponent qos;
    private final NetworkComponent network;
    private final StorageComponent storage;
    private final PartitionsComponent partitions;
    private final VmDisksComponent vmDisks;
    /** Reattaches a partition's change trackers (RCT) when it is built; a live-added one gets them too. */
    private final PartitionsComponent.VspSource tracking;
    private ApplianceConfig running;
    /** The running config's text; null for the embedded demo, which has no file to change. */
    private String runningText;
    private int applied;

    ConfigComponent(ApplianceConfig cfg, String text, QosComponent qos, NetworkComponent network, StorageComponent storage,
                    PartitionsComponent partitions, VmDisksComponent vmDisks,
                    PartitionsComponent.VspSource tracking) {
        this.running = cfg;
        this.runningText = text == null ? null : AppliedConfig.withoutHeader(text);
        this.qos = qos;
        this.network = network;
        this.storage = storage;
        this.partitions = partitions;
        this.vmDisks = vmDisks;
        this.tracking = tracking;
        qos.onPolicySet(this::savePolicy);
        network.onPortChange(this::savePort);
    }

    /** What an apply answered: the plan, the errors (config errors or refusals, as FILE:LINE:COL lines), the outcome. */
    public record Outcome(int status, String result, List<String> plan, List<String> errors) {
        Map<String, Object> json() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("result", result);
            m.put("plan", plan);
            m.put("errors", errors);
            return m;
        }
    }

    /**
     * Validates {@code text} (named {@code file} in positions), and unless {@code dryRun} makes the difference live.
     * Results: {@code applied}, {@code unchanged}, {@code dry_run}, {@code invalid} (400), {@code refused} (409),
     * {@code failed} (500, every step undone).
     */
    public synchronized Outcome apply(String file, String text, boolean dryRun) {
        if (runningText == null) {
            return new Outcome(409, "refused", List.of(), List.of("the embedded demo has no config file to change; "
                + "run phost run --config FILE to change a host live"));
        }
        ApplianceConfig next;
        try {
            next = ConfigLoader.parse(file, text);
        } catch (ConfigException e) {
            return new Outcome(400, "invalid", List.of(), e.errors().stream().map(ConfigError::toString).toList());
        }
        if (next.needsDataDir()) {
            next = next.withDataDir(running.host().dataDir());
        }
        ConfigDiff diff = ConfigDiff.between(running, next, text);
        List<String> plan = diff.plan();
        if (!diff.refusals().isEmpty()) {
            return new Outcome(409, "refused", plan, diff.refusals().stream().map(ConfigError::toString).toList());
        }
        if (dryRun) {
            return new Outcome(200, "dry_run", plan, List.of());
        }
        if (diff.changes().isEmpty() && text.equals(runningText)) {
            return new Outcome(200, "unchanged", plan, List.of());
        }
        Deque<Runnable> undo = new ArrayDeque<>();
        ConfigChange current = null;
        try {
            for (ConfigChange c : diff.changes()) {
                current = c;
                undo.push(make(c, next));
            }
            current = null; // a failure from here is the save's, not the last change's
            AppliedConfig.save(running.host().dataDir(), text, file);
        } catch (IOException | RuntimeException e) {
            String what = current == null ? "saving the applied config" : current.planLine();
            LOG.log(Level.ERROR, "apply failed, undoing step=\"" + what + "\" error=\"" + e.getMessage() + "\"");
            while (!undo.isEmpty()) {
                try {
                    undo.pop().run();
                } catch (RuntimeException u) {
                    LOG.log(Level.ERROR, "undo failed: " + u);
                }
            }
            partitions.config(running); // an added partition's step had already moved it on
            return new Outcome(500, "failed", plan, List.of(what + ": " + e.getMessage()
                + " (every change was undone; the host runs the previous config)"));
        }
        running = next;
        runningText = text;
        partitions.config(next);
        applied++;
        plan.forEach(line -> LOG.log(Level.INFO, "applied change=\"" + line + "\""));
        LOG.log(Level.INFO, "config applied file=" + file + " changes=" + plan.size() + " saved=" + AppliedConfig.path(next.host().dataDir()));
        return new Outcome(200, "applied", plan, List.of());
    }

    // ---- a partition's definition moving between appliances (phost partition move) ----

    /**
     * The text of partition {@code name}'s table and of its disks' tables, as this host's config has them (what a
     * move hands to the peer); null on the embedded demo.
     */
    synchronized String stanzas(String name) {
        PartitionConfig p = running.partition(name).orElse(null);
        if (runningText == null || p == null) {
            return null;
        }
        List<String> disks = p.disks().stream().map(DiskAttachment::disk).distinct().toList();
        // The QoS policies its disks name go along (the peer adds those it lacks); switches do not: they bind host NICs
        List<String> policies = disks.stream().map(running::disk).flatMap(java.util.Optional::stream)
            .map(DiskConfig::qosPolicy).filter(java.util.Objects::nonNull).distinct().toList();
        return ConfigStanzas.of(runningText, name, disks, policies);
    }

    /**
     * A peer hands over a partition ({@code stanzas}: its table and its disks' tables): they are added to this
     * host's config and applied live as one {@code phost apply}. A disk table this host has already must be the
     * same disk (it is used as it is); one of the same name that differs is refused.
     */
    public synchronized Outcome receive(String from, String stanzas, boolean dryRun) {
        return receive(from, stanzas, dryRun, true);
    }

    /**
     * As above; {@code start} false builds the partition without starting it, whatever its {@code autostart}: a VM
     * that arrives by live migration ({@link MigrationTarget}) starts from the source's state instead.
     */
    public synchronized Outcome receive(String from, String stanzas, boolean dryRun, boolean start) {
        holdAdded = !start;
        try {
            return receiveAndApply(from, stanzas, dryRun);
        } finally {
            holdAdded = false;
        }
    }

    /** True while {@link #receive} adds a partition that must not start yet (a live migration's target). */
    private boolean holdAdded;

    private Outcome receiveAndApply(String from, String stanzas, boolean dryRun) {
        if (runningText == null) {
            return apply(from, "", dryRun); // the demo's refusal
        }
        int tables = ConfigStanzas.partitions(stanzas).size();
        if (tables != 1) {
            return new Outcome(400, "invalid", List.of(), List.of("body: one [[partition]] table expected, found " + tables));
        }
        StringBuilder text = new StringBuilder(runningText.endsWith("\n") ? runningText : runningText + "\n");
        String partitionOnly = stanzas;
        for (Map.Entry<String, String> d : ConfigStanzas.disks(stanzas).entrySet()) {
            DiskConfig mine = running.disk(d.getKey()).orElse(null);
            if (mine == null) {
                continue;
            }
            String differs = sameDisk(mine, d.getValue());
            if (differs != null) {
                return new Outcome(409, "refused", List.of(), List.of("disk '" + d.getKey() + "': this host has a "
                    + "different disk of that name (" + differs + "); rename one of them"));
            }
            partitionOnly = ConfigStanzas.without(partitionOnly, "", List.of(d.getKey()));
        }
        for (Map.Entry<String, String> q : ConfigStanzas.policies(stanzas).entrySet()) {
            QosPolicyConfig mine = running.qosPolicy(q.getKey()).orElse(null);
            if (mine == null) {
                continue; // added with the partition
            }
            String differs = sameTable(c -> c.qosPolicy(mine.name()).orElseThrow(), mine, q.getValue());
            if (differs != null) {
                return new Outcome(409, "refused", List.of(), List.of("qos policy '" + q.getKey() + "': this host has a "
                    + "different policy of that name (" + differs + "); rename one of them"));
            }
            partitionOnly = ConfigStanzas.withoutPolicies(partitionOnly, List.of(q.getKey()));
        }
        text.append('\n').append(partitionOnly.strip()).append('\n');
        return apply(from, text.toString(), dryRun);
    }

    /** Null when {@code table} (one {@code [[disk]]} table) describes {@code mine}, else the first key that differs. */
    private String sameDisk(DiskConfig mine, String table) {
        return sameTable(c -> c.disk(mine.name()).orElseThrow(), mine, table);
    }

    /** Null when {@code table}, parsed alone, gives what {@code pick} takes from it equal to {@code mine}, else why not. */
    private String sameTable(java.util.function.Function<ApplianceConfig, Object> pick, Object mine, String table) {
        try {
            String probe = "[host]\nname = \"probe\"\ndata_dir = \"" + running.host().dataDir() + "\"\n\n" + table;
            return pick.apply(ConfigLoader.parse("<peer's table>", probe)).equals(mine) ? null : "its table differs";
        } catch (ConfigException e) {
            return e.errors().getFirst().toString();
        }
    }

    /**
     * This host gives partition {@code name} away (it moved to a peer): its table, and those of its disks no other
     * partition uses, leave the config, applied live (the partition is stopped already) and saved.
     */
    public synchronized Outcome release(String name, String to, boolean dryRun) {
        PartitionConfig p = running.partition(name).orElse(null);
        if (runningText == null || p == null) {
            return new Outcome(404, "refused", List.of(), List.of("no partition '" + name + "' in the running config"));
        }
        List<String> own = p.disks().stream().map(DiskAttachment::disk).distinct()
            .filter(d -> running.partitions().stream().noneMatch(o -> !o.name().equals(name)
                && o.disks().stream().anyMatch(a -> a.disk().equals(d))))
            .toList();
        return apply("partition move of " + name + " to " + to, ConfigStanzas.without(runningText, name, own), dryRun);
    }

    /** Makes one change live and returns how to undo it. */
    private Runnable make(ConfigChange c, ApplianceConfig next) throws IOException {
        var service = qos.service();
        return switch (c.subject()) {
            case QOS_POLICY -> {
                QosPolicyConfig before = (QosPolicyConfig) c.before();
                if (c.after() == null) {
                    service.removePolicy(c.name());
                } else {
                    service.updatePolicy(QosComponent.toPolicy((QosPolicyConfig) c.after()));
                }
                yield before == null ? () -> service.removePolicy(c.name()) : () -> service.updatePolicy(QosComponent.toPolicy(before));
            }
            case SWITCH -> {
                if (c.after() != null) {
                    network.addSwitch((SwitchConfig) c.after());
                    yield () -> network.removeSwitch(c.name());
                }
                network.removeSwitch(c.name());
                yield () -> network.addSwitch((SwitchConfig) c.before());
            }
            case PARTITION -> {
                if (c.after() != null) {
                    PartitionConfig p = (PartitionConfig) c.after();
                    addPartition(next, p, p.autostart() && !holdAdded);
                    yield () -> removePartition(p);
                }
                PartitionConfig p = (PartitionConfig) c.before();
                var child = partitions.partition(p.name());
                boolean wasRunning = child != null && child.state().live();
                ApplianceConfig before = running;
                removePartition(p);
                yield () -> {
                    try {
                        addPartition(before, p, wasRunning);
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                };
            }
            case DISK_POLICY -> {
                DiskConfig before = (DiskConfig) c.before();
                DiskConfig after = (DiskConfig) c.after();
                List<PartitionConfig> users = next.partitionsUsing(after);
                users.forEach(p -> service.changeFlowPolicy(p.name(), after.name(), after.qosPolicy()));
                yield () -> users.forEach(p -> service.changeFlowPolicy(p.name(), before.name(), before.qosPolicy()));
            }
            case PORT -> {
                NicConfig after = (NicConfig) c.after();
                PortConfig before = network.reconfigurePort(c.name(), c.nic(), after);
                yield () -> network.restorePort(c.name(), c.nic(), after.switchName(), before);
            }
            case AUTOSTART -> () -> { }; // read at the next start of phost
            case DISK -> {
                DisksComponent disks = storage.disks();
                if (c.after() != null) {
                    DiskConfig d = (DiskConfig) c.after();
                    Path file = d.rbd() == null ? d.resolvedPath(next.host().dataDir()) : null;
                    boolean made = file != null && !Files.exists(file); // opening it creates it (create = {...})
                    disks.openLive(d, next);
                    yield () -> {
                        closeQuietly(disks, c.name());
                        if (made) {
                            deleteQuietly(file); // an undone add leaves no image behind
                        }
                    };
                }
                disks.closeLive(c.name());
                yield () -> {
                    try {
                        disks.openLive((DiskConfig) c.before(), running);
                    } catch (IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                };
            }
            case NIC -> {
                if ((c.after() != null ? next : running).partition(c.name()).orElseThrow().isVm()) {
                    yield vmNic(c);
                }
                if (c.after() != null) {
                    addNic(c.name(), c.nic(), (NicConfig) c.after());
                    yield () -> removeNic(c.name(), c.nic());
                }
                removeNic(c.name(), c.nic());
                yield () -> addNic(c.name(), c.nic(), (NicConfig) c.before());
            }
            case ATTACHMENT -> {
                if ((c.after() != null ? next : running).partition(c.name()).orElseThrow().isVm()) {
                    yield vmAttachment(c, next);
                }
                if (c.after() != null) {
                    DiskAttachment a = (DiskAttachment) c.after();
                    storage.hotAdd(c.name(), a);
                    yield () -> storage.hotRemove(c.name(), a);
                }
                DiskAttachment a = (DiskAttachment) c.before();
                storage.hotRemove(c.name(), a);
                yield () -> storage.hotAdd(c.name(), a);
            }
        };
    }

    /**
     * Hot-adds a NIC to a process partition (Add-VMNetworkAdapter on a running VM): its port joins the switch, then
     * the running guest gets the VMBus offer (a stopped partition gets it at its next start).
     */
    private void addNic(String partition, int index, NicConfig n) {
        var vsp = network.attachNic(partition, index, n);
        try {
            if (partitions.partition(partition) instanceof io.phost.core.partition.Partition p) {
                p.offer(vsp);
            }
        } catch (RuntimeException e) {
            network.detachNic(partition, index);
            throw e;
        }
    }

    /**
     * A VM's NIC: its vhost-user-net port listens and joins the switch before QEMU gets the device (chardev-add,
     * netdev_add, device_add virtio-net-pci); removal waits for the guest to let go (DEVICE_DELETED) before the port
     * closes. A VM that is not running gets it at its next start.
     */
    private Runnable vmNic(ConfigChange c) throws IOException {
        if (c.after() != null) {
            plugInNic(c.name(), c.nic(), (NicConfig) c.after());
            return () -> unplugNic(c.name(), c.nic());
        }
        unplugNic(c.name(), c.nic());
        return () -> {
            try {
                plugInNic(c.name(), c.nic(), (NicConfig) c.before());
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        };
    }

    private void plugInNic(String partition, int index, NicConfig n) throws IOException {
        io.phost.core.vm.VmDevice device = network.attachVmNic(partition, index, n);
        try {
            if (partitions.partition(partition) instanceof io.phost.core.vm.VmPartition vm) {
                vm.addNic(device);
            }
        } catch (RuntimeException e) {
            network.detachVmNic(partition, index);
            throw e;
        }
    }

    private void unplugNic(String partition, int index) {
        if (partitions.partition(partition) instanceof io.phost.core.vm.VmPartition vm) {
            vm.removeNic("nic" + index, UNPLUG_TIMEOUT);
        }
        network.detachVmNic(partition, index);
    }

    /** How long a guest has to release a hot-unplugged disk (ACPI eject, or PCIe's 5 s attention button under TCG). */
    private static final java.time.Duration UNPLUG_TIMEOUT = java.time.Duration.ofSeconds(60);

    /**
     * A VM's blk disk: plugged in as its export starts and QEMU gets the device (PCI hot-plug), or unplugged as QEMU
     * lets go of it (DEVICE_DELETED) and then its export closes. A VM's SCSI LUN: added to or removed from its running
     * vhost-user-scsi controller, which tells the guest with a virtio-scsi hot-plug event (QEMU is not involved); a LUN
     * on a controller the VM does not have brings a new controller, hot-plugged as a blk disk is, and the removal of
     * a hot-plugged controller's last LUN unplugs it. A VM that is not running gets it at its next start.
     */
    private Runnable vmAttachment(ConfigChange c, ApplianceConfig next) throws IOException {
        io.phost.core.vm.VmPartition vm = partitions.partition(c.name()) instanceof io.phost.core.vm.VmPartition v ? v : null;
        if (c.after() != null) {
            DiskAttachment a = (DiskAttachment) c.after();
            plugIn(vm, next.partition(c.name()).orElseThrow(), a);
            return () -> unplug(vm, c.name(), a.disk(), false);
        }
        DiskAttachment a = (DiskAttachment) c.before();
        // a controller the next config still has LUNs on stays (one disk replacing another at its LUN, say)
        boolean controllerKept = a.bus() == DiskAttachment.Bus.SCSI && next.partition(c.name()).orElseThrow().disks().stream()
            .anyMatch(o -> o.bus() == DiskAttachment.Bus.SCSI && o.controller() == a.controller());
        unplug(vm, c.name(), a.disk(), controllerKept);
        PartitionConfig p = running.partition(c.name()).orElseThrow();
        return () -> {
            try {
                plugIn(vm, p, a);
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        };
    }

    private void plugIn(io.phost.core.vm.VmPartition vm, PartitionConfig p, DiskAttachment a) throws IOException {
        io.phost.core.vm.VmDevice device = vmDisks.hotAdd(p, a);
        if (device == null) {
            return; // a SCSI LUN: its controller's event told the guest
        }
        try {
            if (vm != null) {
                vm.addDisk(device);
            }
        } catch (RuntimeException e) {
            vmDisks.hotRemove(p.name(), a.disk(), true); // a new SCSI controller's export closes with its LUN
            throw e;
        }
    }

    /** Hot-removes a process partition's NIC: the guest gets the rescind first, then the port leaves the switch. */
    private void removeNic(String partition, int index) {
        var vsp = network.nicVsp(partition, index);
        if (vsp != null && partitions.partition(partition) instanceof io.phost.core.partition.Partition p) {
            p.rescind(vsp);
        }
        network.detachNic(partition, index);
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /**
     * A blk disk: QEMU lets go of it, then its export closes. A SCSI LUN leaves its controller; when it was the last
     * one and {@code controllerKept} is false, QEMU first lets go of the controller if it can (one hot-plugged
     * into this QEMU: device_del, DEVICE_DELETED) and the controller's export closes after the LUN. A failure in
     * QEMU's step leaves the LUN served.
     */
    private void unplug(io.phost.core.vm.VmPartition vm, String partition, String disk, boolean controllerKept) {
        String id = vmDisks.deviceId(partition, disk); // null for a SCSI LUN
        if (id != null && vm != null) {
            vm.removeDisk(id, UNPLUG_TIMEOUT);
        }
        String controller = controllerKept ? null : vmDisks.soleLunController(partition, disk);
        boolean controllerGone = controller != null && (vm == null || vm.removeController(controller, UNPLUG_TIMEOUT));
        vmDisks.hotRemove(partition, disk, controllerGone);
    }

    private static void closeQuietly(DisksComponent disks, String name) {
        try {
            disks.closeLive(name);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private void addPartition(ApplianceConfig cfg, PartitionConfig p, boolean start) throws IOException {
        try {
            partitions.addLive(cfg, p, List.of(storage, tracking, network), start);
        } catch (IOException | RuntimeException e) {
            network.detach(p);
            storage.forget(p.name());
            throw e;
        }
    }

    private void removePartition(PartitionConfig p) {
        partitions.removeLive(p.name());
        network.detach(p);
        storage.forget(p.name());
    }

    /** A {@code qos set-policy} made live: written into the running config's text and saved. */
    private synchronized void savePolicy(QosPolicyConfig p) {
        if (runningText == null) {
            return; // the demo: nothing to save to
        }
        String text = QosPolicyText.upsert(runningText, p);
        try {
            ApplianceConfig next = ConfigLoader.parse(running.source().toString(), text);
            AppliedConfig.save(running.host().dataDir(), text, "phost qos set-policy " + p.name());
            running = next.needsDataDir() ? next.withDataDir(running.host().dataDir()) : next;
            runningText = text;
            partitions.config(running);
            LOG.log(Level.INFO, "policy saved name=" + p.name() + " config=" + AppliedConfig.path(running.host().dataDir()));
        } catch (ConfigException | IOException e) {
            LOG.log(Level.WARNING, "policy not saved (lost at restart) name=" + p.name() + " error=\"" + e.getMessage() + "\"");
        }
    }

    /**
     * A {@code POST /v1/switches/port} change of a partition's NIC: its config keys are written into the running
     * config's text ({@link NicText}) and saved, so a restart comes back to them. {@code link} is state, not config.
     */
    private synchronized void savePort(String partition, int nic, Map<String, String> q) {
        if (runningText == null) {
            return;
        }
        int index = running.partitions().stream().map(PartitionConfig::name).toList().indexOf(partition);
        Map<String, String> values = nicValues(q);
        if (index < 0 || values.isEmpty()) {
            return;
        }
        try {
            String text = NicText.set(runningText, index, nic, values);
            ApplianceConfig next = ConfigLoader.parse(running.source().toString(), text);
            AppliedConfig.save(running.host().dataDir(), text, "POST /v1/switches/port " + partition + " nic " + nic);
            running = next.needsDataDir() ? next.withDataDir(running.host().dataDir()) : next;
            runningText = text;
            partitions.config(running);
            LOG.log(Level.INFO, "port change saved partition=" + partition + " nic=" + nic + " config="
                + AppliedConfig.path(running.host().dataDir()));
        } catch (ConfigException | IOException | IllegalArgumentException e) {
            LOG.log(Level.WARNING, "port change not saved (lost at restart) partition=" + partition + " nic=" + nic
                + " error=\"" + e.getMessage() + "\"");
        }
    }

    /** The NIC keys (TOML value text; null = remove the key) a port change query sets. */
    static Map<String, String> nicValues(Map<String, String> q) {
        Map<String, String> v = new LinkedHashMap<>();
        if (q.containsKey("vlan_access")) {
            int vlan = Integer.parseInt(q.get("vlan_access"));
            v.put("vlan_access", vlan == 0 ? null : Integer.toString(vlan)); // 0: untagged, no VLAN key
            v.put("vlan_trunk", null);
            v.put("native_vlan", null);
        }
        for (String key : List.of("mac_spoofing", "dhcp_guard", "router_guard", "min_bandwidth_weight")) {
            if (q.containsKey(key)) {
                v.put(key, q.get(key));
            }
        }
        for (String key : List.of("max_bandwidth", "max_bandwidth_in", "min_bandwidth")) {
            String b = q.get(key);
            if (b != null) { // bytes/s as an integer, "100Mbps" as the string the config reads (checked before)
                v.put(key, b.strip().matches("\\d+") ? b.strip() : "\"" + b.strip() + "\"");
            }
        }
        for (String key : List.of("acl", "ip_addresses")) {
            if (q.containsKey(key)) {
                v.put(key, NicText.strings(java.util.Arrays.stream(q.get(key).split(",")).map(String::strip)
                    .filter(x -> !x.isEmpty()).toList()));
            }
        }
        return v;
    }

    @Override
    public String name() {
        return "config";
    }

    @Override
    public synchronized Object status() {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("source", running.source().toString());
        s.put("applied_changes", applied);
        s.put("saved", runningText == null ? null : AppliedConfig.path(running.host().dataDir()).toString());
        return s;
    }

    /**
     * POST /v1/config[?dry_run=true][&file=NAME]: the body is the new appliance.toml. POST
     * /v1/partitions/receive?from=HOST[&dry_run=true]: the body is a partition's table and its disks' tables, handed
     * over by a peer moving the partition here ({@link #receive}).
     */
    @Override
    public Map<String, BiFunction<String, byte[], HttpResponse>> bodyRoutes() {
        return Map.of("POST /v1/config", (query, body) -> {
            Map<String, String> q = Query.parse(query);
            return answer(apply(q.getOrDefault("file", "<request>"), utf8(body), dryRun(q)));
        }, "POST /v1/partitions/receive", (query, body) -> {
            Map<String, String> q = Query.parse(query);
            String from = q.getOrDefault("from", "");
            if (from.isBlank()) {
                throw new IllegalArgumentException("from: the peer handing the partition over is required");
            }
            return answer(receive("partition moved from " + from, utf8(body), dryRun(q),
                !"false".equals(q.getOrDefault("start", "true"))));
        });
    }

    private static boolean dryRun(Map<String, String> q) {
        String dry = q.getOrDefault("dry_run", "false");
        if (!dry.equals("true") && !dry.equals("false")) {
            throw new IllegalArgumentException("dry_run: must be true or false, not '" + dry + "'");
        }
        return dry.equals("true");
    }

    private static String utf8(byte[] body) {
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(body)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new IllegalArgumentException("body: the config is not UTF-8");
        }
    }

    private static HttpResponse answer(Outcome o) {
        return new HttpResponse(o.status(), "application/json", (Json.pretty(o.json()) + "\n").getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public void close() {
    }
}
