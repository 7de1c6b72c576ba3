package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.NicBinder.NicDraft;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static io.phost.appliance.config.BindSupport.hint;
import static io.phost.appliance.config.BindSupport.path;

/** Binds [[partition]] tables: resources, disk attachments, workload and the VM keys; NICs go to {@link NicBinder}. */
final class PartitionBinder {
    /** Guest memory is mapped in pages. */
    private static final long PAGE = 4096;

    private PartitionBinder() {
    }

    /** A partition whose NIC MACs may still need generating. */
    static final class PartitionDraft {
        final String name;
        final int vcpus;
        final long memory;
        final List<DiskAttachment> disks;
        final List<NicDraft> nics;
        final List<String> command;
        final Workload workload;
        final boolean autostart;
        final VmConfig vm;
        final String onCrash;
        final List<Integer> cpus;

        PartitionDraft(String name, int vcpus, long memory, List<DiskAttachment> disks, List<NicDraft> nics,
                       List<String> command, Workload workload, boolean autostart, VmConfig vm, String onCrash,
                       List<Integer> cpus) {
            this.cpus = cpus;
            this.vm = vm;
            this.onCrash = onCrash;
            this.name = name;
            this.vcpus = vcpus;
            this.memory = memory;
            this.disks = disks;
            this.nics = nics;
            this.command = command;
            this.workload = workload;
            this.autostart = autostart;
        }

        PartitionConfig build() {
            List<NicConfig> built = new ArrayList<>(nics.size());
            for (NicDraft d : nics) {
                built.add(d.build());
            }
            return new PartitionConfig(name, vcpus, memory, disks, built, command, workload, autostart, vm, onCrash, cpus);
        }
    }

    static PartitionDraft partition(TomlNode n, String name, Map<String, Defined<DiskConfig>> disks,
                                     Map<String, Defined<SwitchConfig>> switches, Map<String, String> macOwners,
                                     Map<String, String> writableDiskOwner) {
        Long vcpus = n.integer("vcpus");
        Long memory = n.size("memory");
        Boolean autostart = n.bool("autostart");
        String kind = n.word("kind");
        boolean isVm = "vm".equals(kind);
        String onCrash = isVm ? null : n.word("on_crash"); // a VM's is read with its other keys (VmConfig)
        if (memory != null && memory % PAGE != 0) {
            n.error("memory", Reason.INVALID_VALUE, memory + " bytes is not a multiple of the 4KiB page size");
            memory = null;
        } else if (memory != null && isVm && memory % Units.MIB != 0) {
            n.error("memory", Reason.INVALID_VALUE, memory + " bytes is not a whole number of MiB (QEMU's -m for a VM)");
            memory = null;
        }
        boolean ok = kind != null;
        VmConfig vm = null;
        if (isVm) {
            vm = vm(n, name);
            ok &= vm != null;
            for (String key : List.of("command", "workload")) {
                if (n.has(key)) {
                    n.error(key, Reason.CONFLICT, "a VM partition runs its guest's own software; " + key
                        + " is for kind = \"process\"");
                    ok = false;
                }
            }
        } else if (kind != null) {
            for (String key : VM_ONLY_KEYS) {
                if (n.has(key)) {
                    n.error(key, Reason.CONFLICT, key + " is only for kind = \"vm\"");
                    ok = false;
                }
            }
        }
        List<String> command = isVm ? null : n.strings("command");
        if (command != null) {
            if (command.isEmpty()) {
                n.error("command", Reason.INVALID_VALUE,
                    "an empty command; give the program and its arguments, e.g. [\"/bin/sh\", \"-c\", \"...\"]");
                ok = false;
            } else if (command.getFirst().isEmpty()) {
                n.error("command", Reason.INVALID_VALUE, "the program (first element) is empty");
                ok = false;
            }
        } else if (n.has("command") && !isVm) {
            ok = false;
        }
        Workload workload = null;
        TomlNode w = isVm ? null : n.table("workload");
        if (isVm) {
            // checked above
        } else if (w != null) {
            String workloadKind = w.word("kind");
            List<String> args = w.strings("args");
            if (command != null || n.has("command")) {
                n.error("workload", Reason.CONFLICT, "set either command or workload, not both");
                ok = false;
            }
            if (workloadKind == null || args == null) {
                ok = false;
            } else {
                WorkloadArguments.Problem problem = WorkloadArguments.check(workloadKind, args);
                if (problem != null) {
                    if (problem.index() >= 0) {
                        w.elementError("args", problem.index(), Reason.INVALID_VALUE, problem.message());
                    } else {
                        w.error("args", Reason.INVALID_VALUE, problem.message());
                    }
                    ok = false;
                } else {
                    workload = new Workload(workloadKind, args);
                }
            }
        } else if (n.has("workload")) {
            ok = false;
        } else if (!n.has("command")) {
            workload = Workload.IDLE;
        }

        List<DiskAttachment> attachments = new ArrayList<>();
        Map<Long, Integer> usedSlots = new HashMap<>(); // controller << 8 | lun -> attachment index
        Set<String> attachedHere = new HashSet<>();
        List<TomlNode> diskNodes = n.tables("disk");
        Long[] controllers = new Long[diskNodes.size()];
        Long[] luns = new Long[diskNodes.size()];
        // Explicit LUNs first, so that defaulted ones fill the gaps around them.
        for (int i = 0; i < diskNodes.size(); i++) {
            TomlNode a = diskNodes.get(i);
            controllers[i] = a.integer("controller");
            luns[i] = a.integer("lun");
            if (controllers[i] != null && luns[i] != null) {
                Integer other = usedSlots.putIfAbsent(controllers[i] << 8 | luns[i], i);
                if (other != null) {
                    a.error("lun", Reason.DUPLICATE, "controller " + controllers[i] + " LUN " + luns[i]
                        + " is already used by " + diskNodes.get(other).path());
                    ok = false;
                }
            } else if ((a.has("controller") && controllers[i] == null) || (a.has("lun") && luns[i] == null)) {
                ok = false; // present but invalid: already reported
            }
        }
        for (int i = 0; i < diskNodes.size(); i++) {
            TomlNode a = diskNodes.get(i);
            String diskName = a.string("disk");
            if (controllers[i] != null && luns[i] == null && !a.has("lun")) {
                long lun = 0;
                while (lun <= 63 && usedSlots.containsKey(controllers[i] << 8 | lun)) {
                    lun++;
                }
                if (lun > 63) {
                    a.errorHere(Reason.OUT_OF_RANGE,
                        "controller " + controllers[i] + " has no free LUN left (0..63 are used)");
                    ok = false;
                } else {
                    luns[i] = lun;
                    usedSlots.put(controllers[i] << 8 | lun, i);
                }
            }
            if (diskName == null) {
                ok = false;
                continue;
            }
            Defined<DiskConfig> d = disks.get(diskName);
            if (d == null) {
                a.error("disk", Reason.DANGLING_REFERENCE,
                    "no [[disk]] named '" + diskName + "'" + hint(diskName, disks.keySet()));
                ok = false;
                continue;
            }
            if (!attachedHere.add(diskName)) {
                a.error("disk", Reason.DUPLICATE, "disk '" + diskName + "' is attached to this partition twice");
                ok = false;
                continue;
            }
            if (d.value() != null && !d.value().readOnly() && d.value().vhostUser()) {
                a.error("disk", Reason.CONFLICT, "disk '" + diskName + "' is exported writable over vhost-user (a VM's "
                    + "disk); only read_only disks can also be attached to a partition");
                ok = false;
                continue;
            }
            if (d.value() != null && !d.value().readOnly()) {
                // A partition whose name is invalid (reported already) still owns what it attaches, under its
                // position, so its other mistakes never hide a second writer.
                String who = name != null ? name : n.path();
                String owner = writableDiskOwner.putIfAbsent(diskName, who);
                if (owner != null && !owner.equals(who)) {
                    a.error("disk", Reason.CONFLICT,
                        "disk '" + diskName + "' is already attached to partition '" + owner
                        + "'; only read_only disks can be shared");
                    ok = false;
                }
            }
            String bus = a.word("bus");
            if (a.has("bus") && bus == null) {
                ok = false; // invalid: already reported
            }
            if (controllers[i] != null && luns[i] != null) {
                attachments.add(new DiskAttachment(diskName, controllers[i].intValue(), luns[i].intValue(),
                    "scsi".equals(bus) ? DiskAttachment.Bus.SCSI : DiskAttachment.Bus.BLK));
            }
        }

        List<NicDraft> nics = new ArrayList<>();
        List<TomlNode> nicNodes = n.tables("nic");
        for (int i = 0; i < nicNodes.size(); i++) {
            NicDraft d = NicBinder.nic(nicNodes.get(i), name, i, switches, macOwners);
            if (d == null) {
                ok = false;
            } else if (!isVm && d.nic().queues() > 1) {
                nicNodes.get(i).error("queues", Reason.CONFLICT, "queues is for a VM's NIC (virtio-net multi-queue); "
                    + "a process partition's synthetic NIC has one channel");
                ok = false;
            } else {
                nics.add(d);
            }
        }
        List<Integer> cpus = cpus(n);
        if (!ok || name == null || vcpus == null || memory == null || autostart == null || (!isVm && onCrash == null)
            || cpus == null) {
            return null;
        }
        return new PartitionDraft(name, vcpus.intValue(), memory, attachments, nics, command, workload, autostart, vm,
            onCrash, cpus);
    }

    /** {@code cpus}: each must be online on this host (pinning to an offline CPU would fail at start). */
    private static List<Integer> cpus(TomlNode n) {
        List<Long> cpus = n.integers("cpus");
        if (cpus == null) {
            return null;
        }
        if (cpus.isEmpty()) {
            return List.of();
        }
        List<Integer> online;
        try {
            online = io.phost.core.sys.CpuAffinity.online();
        } catch (java.io.IOException e) {
            n.error("cpus", Reason.INVALID_VALUE, "cannot read this host's online CPUs: " + e.getMessage());
            return null;
        }
        boolean ok = true;
        for (int i = 0; i < cpus.size(); i++) {
            if (!online.contains(cpus.get(i).intValue())) {
                n.elementError("cpus", i, Reason.INVALID_VALUE, "CPU " + cpus.get(i) + " is not online on this host (online: "
                    + online + ")");
                ok = false;
            }
        }
        return ok ? cpus.stream().map(Long::intValue).toList() : null;
    }

    /** Keys that only a {@code kind = "vm"} partition may set. */
    private static final List<String> VM_ONLY_KEYS =
        List.of("machine", "kernel", "initrd", "cmdline", "firmware", "console", "stop_timeout",
            "ready_marker");

    /** The VM keys of a {@code kind = "vm"} partition; null (with errors recorded) when any is wrong. */
    private static VmConfig vm(TomlNode n, String name) {
        String machine = n.word("machine");
        String kernel = n.string("kernel");
        String initrd = n.string("initrd");
        String cmdline = n.string("cmdline");
        String firmware = n.word("firmware");
        String console = n.string("console");
        String onCrash = n.word("on_crash");
        Long stopTimeout = n.integer("stop_timeout");
        String readyMarker = n.string("ready_marker");
        boolean ok = machine != null && cmdline != null && onCrash != null && stopTimeout != null
            && (readyMarker != null || !n.has("ready_marker"))
            && (kernel != null || !n.has("kernel")) && (initrd != null || !n.has("initrd"))
            && (firmware != null || !n.has("firmware")) && (console != null || !n.has("console"));
        if (n.has("kernel") && n.has("firmware")) {
            n.error("firmware", Reason.CONFLICT, "boot from either kernel (direct) or firmware (the first disk), not both");
            ok = false;
        } else if (!n.has("kernel") && !n.has("firmware")) {
            n.errorHere(Reason.MISSING_KEY, "a VM needs a boot source: kernel = \"PATH\" (direct boot) or "
                + "firmware = \"uefi\" | \"bios\" (boots the first disk)");
            ok = false;
        }
        for (String key : List.of("initrd", "cmdline")) {
            if (n.has(key) && !n.has("kernel")) {
                n.error(key, Reason.CONFLICT, key + " needs kernel (firmware boots from the disk and ignores it)");
                ok = false;
            }
        }
        if (cmdline != null) {
            if (cmdline.length() > 2048) {
                n.error("cmdline", Reason.INVALID_VALUE, "the kernel command line is " + cmdline.length()
                    + " characters, at most 2048");
                ok = false;
            }
            for (int i = 0; i < cmdline.length(); i++) {
                char c = cmdline.charAt(i);
                if (c < 0x20 || c > 0x7e) {
                    n.error("cmdline", Reason.INVALID_VALUE, String.format(
                        "character %d of the kernel command line is U+%04X; only printable ASCII is passed to the kernel", i, (int) c));
                    ok = false;
                    break;
                }
            }
        }
        if (readyMarker != null && (readyMarker.isEmpty() || readyMarker.length() > 64
            || !readyMarker.chars().allMatch(c -> c >= 0x20 && c < 0x7f))) {
            n.error("ready_marker", Reason.INVALID_VALUE, "the ready marker must be 1..64 printable ASCII characters");
            ok = false;
        }
        Path kernelPath = kernel == null ? null : vmPath(n, "kernel", kernel);
        Path initrdPath = initrd == null ? null : vmPath(n, "initrd", initrd);
        Path consolePath = console == null ? Path.of("partitions", (name == null ? "vm" : name) + ".console.log")
            : vmPath(n, "console", console);
        if (!ok || (kernel != null && kernelPath == null) || (initrd != null && initrdPath == null) || consolePath == null) {
            return null;
        }
        return new VmConfig(machine, kernelPath, initrdPath, cmdline, firmware, consolePath, onCrash, stopTimeout.intValue(),
            readyMarker);
    }

    private static Path vmPath(TomlNode n, String key, String value) {
        for (int i = 0; i < value.length(); i++) {
            if (value.charAt(i) < 0x20 || value.charAt(i) == 0x7f) {
                n.error(key, Reason.INVALID_VALUE, "character " + i + " of the path is a control character");
                return null;
            }
        }
        return path(n, key, value);
    }
}
