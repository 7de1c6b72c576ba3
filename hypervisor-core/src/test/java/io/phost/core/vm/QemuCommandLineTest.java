package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

class QemuCommandLineTest {
    private static final Accelerator TCG = new Accelerator(Accelerator.Type.TCG, "test");
    private static final Accelerator KVM = new Accelerator(Accelerator.Type.KVM, "test");
    private static final Path QMP = Path.of("/run/phost/vm1.qmp");
    private static final Path QGA = Path.of("/run/phost/vm1.qga");

    private static VmSpec spec(BootSource boot, List<VmDevice> devices) {
        return new VmSpec("vm1", 2, 256L << 20, VmSpec.Machine.Q35, boot, devices, VmSpec.CrashPolicy.RESTART,
            Duration.ofSeconds(30));
    }

    private static BootSource kernel(String cmdline) {
        return new BootSource.Kernel(Path.of("/boot/vmlinuz"), Path.of("/boot/initrd.img"), cmdline);
    }

    /** The value that follows {@code option} (the first occurrence). */
    private static String after(List<String> argv, String option) {
        int i = argv.indexOf(option);
        assertTrue(i >= 0 && i + 1 < argv.size(), option + " missing in " + argv);
        return argv.get(i + 1);
    }

    private static List<String> valuesOf(List<String> argv, String option) {
        java.util.ArrayList<String> v = new java.util.ArrayList<>();
        for (int i = 0; i + 1 < argv.size(); i++) {
            if (argv.get(i).equals(option)) {
                v.add(argv.get(i + 1));
            }
        }
        return v;
    }

    @Test
    void shouldPutGuestRamInASharedMemfdBackend() {
        List<String> a = QemuCommandLine.build("qemu", spec(kernel(""), List.of()), TCG, QMP, QGA);
        assertEquals("memory-backend-memfd,id=ram0,size=256M,share=on", after(a, "-object"));
        assertTrue(after(a, "-machine").contains("memory-backend=ram0"), a.toString());
        assertEquals("256M", after(a, "-m"));
        assertEquals("2", after(a, "-smp"));
    }

    @Test
    void shouldGiveEveryVmTheGuestAgentsVirtioSerialPortOnItsOwnSocket() {
        List<String> a = QemuCommandLine.build("qemu", spec(kernel(""), List.of()), TCG, QMP, QGA);
        assertTrue(a.contains("virtio-serial-pci,id=vser0"), a.toString());
        assertTrue(a.contains("socket,id=qga0,path=/run/phost/vm1.qga,server=on,wait=off"), a.toString());
        assertTrue(a.contains("virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"), a.toString());
    }

    @Test
    void shouldConfineQemuWithSandboxNoDefaultsAndHeldVcpus() {
        List<String> a = QemuCommandLine.build("qemu", spec(kernel(""), List.of()), TCG, QMP, QGA);
        assertTrue(after(a, "-sandbox").startsWith("on,"), a.toString());
        assertTrue(after(a, "-sandbox").contains("spawn=deny") && after(a, "-sandbox").contains("elevateprivileges=deny"));
        assertTrue(a.contains("-nodefaults") && a.contains("-no-user-config"));
        assertEquals("none", after(a, "-display"));
        assertEquals("-S", a.getLast(), "vCPUs must wait for phost's cont");
        assertEquals("unix:/run/phost/vm1.qmp,server=on,wait=off", after(a, "-qmp"));
        assertEquals("chardev:console0", after(a, "-serial"));
    }

    @Test
    void shouldUseTcgWithABoundedTranslationCacheWithoutKvm() {
        List<String> tcg = QemuCommandLine.build("qemu", spec(kernel(""), List.of()), TCG, QMP, QGA);
        assertEquals("q35,memory-backend=ram0", after(tcg, "-machine"));
        assertEquals("tcg,tb-size=64", after(tcg, "-accel"));
        assertEquals("max", after(tcg, "-cpu"));
        List<String> kvm = QemuCommandLine.build("qemu", spec(kernel(""), List.of()), KVM, QMP, QGA);
        assertEquals("kvm", after(kvm, "-accel"));
        assertEquals("host", after(kvm, "-cpu"));
    }

    @Test
    void shouldPassTheKernelCommandLineAsOneArgumentUntouched() {
        List<String> a = QemuCommandLine.build("qemu", spec(kernel("console=ttyS0 phost.run=dd,bs=4k quiet"), List.of()), TCG, QMP, QGA);
        assertEquals("/boot/vmlinuz", after(a, "-kernel"));
        assertEquals("/boot/initrd.img", after(a, "-initrd"));
        assertEquals("console=ttyS0 phost.run=dd,bs=4k quiet", after(a, "-append"));
    }

    @Test
    void shouldRejectControlCharactersInTheKernelCommandLine() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> kernel("quiet\ninit=/bin/sh"));
        assertTrue(e.getMessage().contains("offset 5"), e.getMessage());
    }

    @Test
    void shouldRejectRelativeAndControlCharacterPaths() {
        assertThrows(IllegalArgumentException.class, () -> new BootSource.Kernel(Path.of("vmlinuz"), null, ""));
        assertThrows(IllegalArgumentException.class, () -> VmDevice.blk("d0", Path.of("/tmp/a\u0001b"), 1));
        assertThrows(IllegalArgumentException.class, () -> VmDevice.blk("d0,x=y", Path.of("/tmp/s"), 1));
    }

    @Test
    void shouldDoubleCommasInSocketPathsSoTheyCannotAddOptions() {
        VmDevice d = VmDevice.blk("disk0", Path.of("/tmp/a,server=on/d.sock"), 2);
        List<String> a = QemuCommandLine.build("qemu", spec(kernel(""), List.of(d)), TCG, Path.of("/tmp/x,y/q.sock"), QGA);
        assertTrue(valuesOf(a, "-chardev").contains("socket,id=disk0,path=/tmp/a,,server=on/d.sock,reconnect=1"), a.toString());
        assertEquals("unix:/tmp/x,,y/q.sock,server=on,wait=off", after(a, "-qmp"));
    }

    @Test
    void shouldGiveAMultiQueueNicMqAndItsVectorsUnderKvmAndNoVectorsUnderTcg() {
        List<VmDevice> devs = List.of(new VmDevice("nic0", VmDevice.Type.NET, Path.of("/s/n0"), 4, "02:50:48:00:00:01"));
        VmSpec s = spec(kernel(""), devs);
        List<String> tcg = QemuCommandLine.build("qemu", s, TCG, QMP, QGA);
        assertEquals(List.of("vhost-user,id=nic0-net,chardev=nic0,queues=4"), valuesOf(tcg, "-netdev"));
        assertTrue(valuesOf(tcg, "-device").contains("virtio-net-pci,id=nic0-dev,netdev=nic0-net,mac=02:50:48:00:00:01,mq=on,vectors=0,bus=nic0-port"),
            tcg.toString());
        List<String> kvm = QemuCommandLine.build("qemu", s, KVM, QMP, QGA);
        assertTrue(valuesOf(kvm, "-device").contains("virtio-net-pci,id=nic0-dev,netdev=nic0-net,mac=02:50:48:00:00:01,mq=on,vectors=10,bus=nic0-port"),
            kvm.toString());
    }

    @Test
    void shouldServeDisksAndNicsOnVhostUserOnly() {
        List<VmDevice> devs = List.of(VmDevice.blk("disk0", Path.of("/s/d0"), 2),
            new VmDevice("scsi0", VmDevice.Type.SCSI, Path.of("/s/c0"), 1, null),
            new VmDevice("nic0", VmDevice.Type.NET, Path.of("/s/n0"), 1, "02:50:48:00:00:01"));
        List<String> a = QemuCommandLine.build("qemu", spec(new BootSource.Firmware(BootSource.Firmware.Type.BIOS), devs), TCG, QMP, QGA);
        List<String> devices = valuesOf(a, "-device");
        assertEquals(List.of("pcie-root-port,id=disk0-port,chassis=1",
            "vhost-user-blk-pci,id=disk0-dev,chardev=disk0,num-queues=2,bus=disk0-port,bootindex=0",
            "vhost-user-scsi-pci,id=scsi0-dev,chardev=scsi0,num_queues=1",
            "pcie-root-port,id=nic0-port,chassis=2",
            "virtio-net-pci,id=nic0-dev,netdev=nic0-net,mac=02:50:48:00:00:01,vectors=0,bus=nic0-port",
            "pcie-root-port,id=hp0,chassis=3", "pcie-root-port,id=hp1,chassis=4", "pcie-root-port,id=hp2,chassis=5",
            "pcie-root-port,id=hp3,chassis=6",
            "virtio-serial-pci,id=vser0", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"), devices,
            "the disks and NICs (each on a root port of its own: q35 hot-unplugs only there) on vhost-user, spare ports for "
                + "hot-plugged disks and NICs, and the guest agent's channel: nothing else");
        assertEquals(List.of("vhost-user,id=nic0-net,chardev=nic0,queues=1"), valuesOf(a, "-netdev"));
        assertEquals(List.of("stdio,id=console0,signal=off", "socket,id=disk0,path=/s/d0,reconnect=1", "socket,id=scsi0,path=/s/c0",
            "socket,id=nic0,path=/s/n0,reconnect=1", "socket,id=qga0,path=/run/phost/vm1.qga,server=on,wait=off"), valuesOf(a, "-chardev"), "a restarted back-end is reconnected (not scsi: QEMU 7.2 cannot)");
        assertFalse(a.contains("-drive") || a.contains("-blockdev"), "no QEMU block layer: " + a);
        assertFalse(a.contains("-bios"), "SeaBIOS is QEMU's default");
    }

    @Test
    void shouldNameTheOvmfPackageWhenUefiFirmwareIsMissing() {
        VmSpec s = spec(new BootSource.Firmware(BootSource.Firmware.Type.UEFI), List.of());
        IllegalStateException e = assertThrows(IllegalStateException.class,
            () -> QemuCommandLine.build("qemu", s, TCG, QMP, QGA, List.of(Path.of("/nonexistent/OVMF.fd"))));
        assertTrue(e.getMessage().contains("apt-get install ovmf"), e.getMessage());
    }

    @Test
    void shouldRefuseMemoryThatIsNotWholeMebibytes() {
        assertThrows(IllegalArgumentException.class, () -> new VmSpec("vm1", 1, (256L << 20) + 4096, VmSpec.Machine.Q35,
            kernel(""), List.of(), VmSpec.CrashPolicy.STOP, Duration.ZERO));
    }

    @Test
    void shouldDoubleTheRestartDelayUpToTheCap() {
        RestartBackoff b = new RestartBackoff(Duration.ofMillis(100), Duration.ofMillis(700), Duration.ofSeconds(60), 8);
        assertEquals(List.of(100L, 200L, 400L, 700L, 700L),
            java.util.stream.IntStream.rangeClosed(1, 5).mapToObj(n -> b.delay(n).toMillis()).toList());
        assertEquals(700L, b.delay(Integer.MAX_VALUE).toMillis());
    }
}
