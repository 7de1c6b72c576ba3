package io.phost.core.vm;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds QEMU's argv from a {@link VmSpec}: no string a user wrote reaches QEMU except as a checked, escaped
 * option value (see {@link QemuValues}), and argv is never passed through a shell.
 * <pre>
 *  qemu-system-x86_64 -name NAME,process=phost-NAME -no-user-config -nodefaults -display none
 *    -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
 *    -machine q35,memory-backend=ram0   -accel kvm | -accel tcg,tb-size=64   -cpu host|max
 *    -smp N -m M -object memory-backend-memfd,id=ram0,size=M,share=on    guest RAM visible to the backends
 *    -qmp unix:SOCK,server=on,wait=off   -chardev stdio,id=console0,signal=off -serial chardev:console0
 *    -kernel K -initrd I -append CMDLINE | -bios OVMF.fd (uefi) | SeaBIOS (bios, QEMU's default)
 *    per device: -chardev socket,id=ID,path=SOCK[,reconnect=1] + -device vhost-user-blk-pci|vhost-user-scsi-pci|virtio-net-pci
 *      (q35: each blk disk behind its own -device pcie-root-port,id=ID-port, so it can be hot-unplugged)
 *    q35: -device pcie-root-port,id=hp0..hp3   spare ports for disks hot-plugged later (VmPartition.addDisk)
 *    -device virtio-serial-pci  -chardev socket,id=qga0,path=AGENT,server=on,wait=off
 *    -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0     the guest agent's channel
 *    -S                                   vCPUs held until phost has confined QEMU and sends "cont"
 * </pre>
 * The console is QEMU's stdout, which phost reads and writes to a rotated log ({@link ConsoleLog}).
 */
public final class QemuCommandLine {
    public static final String QEMU = "qemu-system-x86_64";
    /** TCG's translation cache; QEMU's default (1 GiB on 64-bit hosts) would dwarf a small guest's RAM. */
    static final int TCG_TB_SIZE_MIB = 64;
    /** Where Debian's {@code ovmf} package puts the combined firmware image (first existing wins). */
    static final List<Path> OVMF = List.of(Path.of("/usr/share/ovmf/OVMF.fd"), Path.of("/usr/share/qemu/OVMF.fd"));

    /** Spare {@code pcie-root-port}s per QEMU start on q35, for disks hot-plugged while it runs. */
    public static final int HOT_PLUG_PORTS = 4;

    private QemuCommandLine() {}

    /** The spare ports' ids. */
    static List<String> hotPlugPorts() {
        return java.util.stream.IntStream.range(0, HOT_PLUG_PORTS).mapToObj(i -> "hp" + i).toList();
    }

    /**
     * {@code ,reconnect=1} for blk and net: a restarted back-end is reconnected within a second, and QEMU 7.2
     * resumes the rings from the inflight region (blk) or the last avail index (net). Not for vhost-user-scsi:
     * QEMU 7.2 cannot reconnect it (added in 8.2) and with the option its realize does not wait for the socket.
     */
    static String reconnect(VmDevice d) {
        return d.type() == VmDevice.Type.SCSI ? "" : ",reconnect=1";
    }

    /** argv for {@code spec} on {@code accel}, QMP listening on {@code qmpSocket}; {@code qemu} is the binary. */
    /** The virtio-serial port name qemu-guest-agent opens in the guest. */
    public static final String AGENT_PORT = "org.qemu.guest_agent.0";

    /**
     * argv for {@code spec} on {@code accel}, QMP listening on {@code qmpSocket}, the guest agent's port on
     * {@code agentSocket}; {@code qemu} is the binary.
     */
    public static List<String> build(String qemu, VmSpec spec, Accelerator accel, Path qmpSocket, Path agentSocket) {
        return build(qemu, spec, accel, qmpSocket, agentSocket, OVMF);
    }

    static List<String> build(String qemu, VmSpec spec, Accelerator accel, Path qmpSocket, Path agentSocket,
                              List<Path> ovmf) {
        QemuValues.requirePath("QMP socket", qmpSocket);
        QemuValues.requirePath("guest agent socket", agentSocket);
        long mib = spec.memoryBytes() / VmSpec.MIB;
        boolean kvm = accel.type() == Accelerator.Type.KVM;
        List<String> a = new ArrayList<>(64);
        a.add(qemu);
        add(a, "-name", spec.name() + ",process=phost-" + spec.name());
        a.add("-no-user-config");
        a.add("-nodefaults");
        add(a, "-display", "none");
        add(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        add(a, "-machine", spec.machine().qemuName + ",memory-backend=ram0");
        add(a, "-accel", kvm ? "kvm" : "tcg,tb-size=" + TCG_TB_SIZE_MIB); // QEMU refuses -accel with -machine accel=
        add(a, "-cpu", kvm ? "host" : "max");
        add(a, "-smp", Integer.toString(spec.vcpus()));
        add(a, "-m", mib + "M");
        add(a, "-object", "memory-backend-memfd,id=ram0,size=" + mib + "M,share=on");
        add(a, "-qmp", "unix:" + QemuValues.escape(qmpSocket.toString()) + ",server=on,wait=off");
        add(a, "-chardev", "stdio,id=console0,signal=off");
        add(a, "-serial", "chardev:console0");
        switch (spec.boot()) {
            case BootSource.Kernel k -> {
                // -kernel/-initrd/-append take the whole argument as one value: no comma splitting
                add(a, "-kernel", k.kernel().toString());
                if (k.initrd() != null) {
                    add(a, "-initrd", k.initrd().toString());
                }
                if (!k.cmdline().isEmpty()) {
                    add(a, "-append", k.cmdline());
                }
            }
            case BootSource.Firmware f when f.type() == BootSource.Firmware.Type.UEFI ->
                add(a, "-bios", firstExisting(ovmf).toString());
            case BootSource.Firmware f -> {
                // SeaBIOS is QEMU's built-in default
            }
        }
        boolean firstDisk = spec.boot() instanceof BootSource.Firmware;
        boolean q35 = spec.machine() == VmSpec.Machine.Q35;
        int chassis = 0;
        for (VmDevice d : spec.devices()) {
            add(a, "-chardev", "socket,id=" + d.id() + ",path=" + QemuValues.escape(d.socket().toString()) + reconnect(d));
            switch (d.type()) {
                case BLK -> {
                    if (q35) { // q35's root complex cannot hot-unplug: a root port of its own can
                        add(a, "-device", "pcie-root-port,id=" + d.id() + "-port,chassis=" + ++chassis);
                    }
                    add(a, "-device", "vhost-user-blk-pci,id=" + d.id() + "-dev,chardev=" + d.id()
                        + ",num-queues=" + d.queues() + (q35 ? ",bus=" + d.id() + "-port" : "") + (firstDisk ? ",bootindex=0" : ""));
                    firstDisk = false;
                }
                case SCSI -> {
                    add(a, "-device", "vhost-user-scsi-pci,id=" + d.id() + "-dev,chardev=" + d.id()
                        + ",num_queues=" + d.queues() + (firstDisk ? ",bootindex=0" : ""));
                    firstDisk = false;
                }
                case NET -> {
                    add(a, "-netdev", "vhost-user,id=" + d.id() + "-net,chardev=" + d.id() + ",queues=" + d.queues());
                    // vectors=0: QEMU 7.2 segfaults with vhost-user-net under TCG when MSI-X is on (a KVM-only path);
                    // with KVM and N queue pairs, 2N+2 vectors (one per queue, config, control) as QEMU's docs say
                    boolean mq = d.queues() > 1;
                    if (q35) { // as a disk: on a root port of its own, so `phost apply` can hot-unplug it
                        add(a, "-device", "pcie-root-port,id=" + d.id() + "-port,chassis=" + ++chassis);
                    }
                    add(a, "-device", "virtio-net-pci,id=" + d.id() + "-dev,netdev=" + d.id() + "-net,mac=" + d.mac()
                        + (mq ? ",mq=on" : "") + (!kvm ? ",vectors=0" : mq ? ",vectors=" + (2 * d.queues() + 2) : "")
                        + (q35 ? ",bus=" + d.id() + "-port" : ""));
                }
            }
        }
        if (q35) {
            for (String port : hotPlugPorts()) {
                add(a, "-device", "pcie-root-port,id=" + port + ",chassis=" + ++chassis);
            }
        }
        add(a, "-device", "virtio-serial-pci,id=vser0");
        add(a, "-chardev", "socket,id=qga0,path=" + QemuValues.escape(agentSocket.toString()) + ",server=on,wait=off");
        add(a, "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=" + AGENT_PORT);
        a.add("-S");
        return a;
    }

    /** The OVMF image to use, or an error that says which package provides it. */
    static Path firstExisting(List<Path> candidates) {
        for (Path p : candidates) {
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        throw new IllegalStateException("firmware = \"uefi\" needs OVMF, found none of " + candidates
            + " (Debian: apt-get install ovmf)");
    }

    private static void add(List<String> a, String option, String value) {
        a.add(option);
        a.add(value);
    }
}
