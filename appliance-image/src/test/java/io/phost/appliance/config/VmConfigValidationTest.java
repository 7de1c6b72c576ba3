package io.phost.appliance.config;

import static io.phost.appliance.config.ConfigValidationTest.assertErrors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code [[partition]] kind = "vm"}: its keys, defaults and every mistake at its FILE:LINE:COL. */
class VmConfigValidationTest {
    private static final String HOST = """
        [host]
        data_dir = "/srv/phost"
        """; // lines 1-2

    @Test
    void shouldBindADirectBootVmWithItsDefaults() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            memory = "512MiB"
            kernel = "boot/vmlinuz"
            initrd = "/abs/initrd.img"
            cmdline = "console=ttyS0 quiet"
            """);
        PartitionConfig p = c.partition("vm1").orElseThrow();
        assertTrue(p.isVm());
        assertNull(p.command());
        assertNull(p.workload());
        VmConfig v = p.vm();
        assertEquals("q35", v.machine());
        assertEquals(Path.of("/srv/phost/boot/vmlinuz"), v.resolvedKernel(c.host().dataDir()));
        assertEquals(Path.of("/abs/initrd.img"), v.resolvedInitrd(c.host().dataDir()));
        assertEquals("console=ttyS0 quiet", v.cmdline());
        assertEquals(Path.of("/srv/phost/partitions/vm1.console.log"), v.resolvedConsole(c.host().dataDir()));
        assertEquals("stop", v.onCrash());
        assertEquals(30, v.stopTimeout());
        assertNull(v.firmware());
    }

    @Test
    void shouldBindAReadyMarkerAndRefuseAnEmptyOne() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            ready_marker = "PHOST-GUEST-READY"
            """);
        assertEquals("PHOST-GUEST-READY", c.partition("vm1").orElseThrow().vm().readyMarker());
        assertNull(ConfigLoader.parse("t.toml", HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            """).partition("vm1").orElseThrow().vm().readyMarker(), "no marker: every stop asks over ACPI");
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            ready_marker = ""
            """, "t.toml:7:1: partition[0].ready_marker: the ready marker must be 1..64 printable ASCII characters");
    }

    private static final String SWITCH = """
        [[switch]]
        name = "lan"
        type = "private"
        """; // lines 3-5

    @Test
    void shouldGiveAVmNicItsQueuePairsAndRefuseThemElsewhere() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + SWITCH + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            nic = [{ switch = "lan", queues = 4 }, { switch = "lan" }]
            """);
        assertEquals(4, c.partition("vm1").orElseThrow().nics().get(0).queues());
        assertEquals(1, c.partition("vm1").orElseThrow().nics().get(1).queues(), "default: one pair");
        assertErrors(HOST + SWITCH + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            nic = [{ switch = "lan", queues = 17 }]
            """, "t.toml:10:26: partition[0].nic[0].queues: 17 is out of range (1..16)");
        assertErrors(HOST + SWITCH + """
            [[partition]]
            name = "p1"
            workload = { kind = "idle" }
            nic = [{ switch = "lan", queues = 2 }]
            """, "t.toml:9:26: partition[0].nic[0].queues: queues is for a VM's NIC (virtio-net multi-queue); "
                + "a process partition's synthetic NIC has one channel");
    }

    @Test
    void shouldRequireExactlyOneBootSource() {
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            """, "t.toml:3:1: partition[0]: a VM needs a boot source: kernel = \"PATH\" (direct boot) or "
            + "firmware = \"uefi\" | \"bios\" (boots the first disk)");
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            kernel = "k"
            firmware = "uefi"
            """, "t.toml:7:1: partition[0].firmware: boot from either kernel (direct) or firmware (the first disk), not both");
    }

    @Test
    void shouldRefuseKernelOptionsWithoutAKernelAndBadCommandLines() {
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            initrd = "i"
            cmdline = "quiet"
            """,
            "t.toml:7:1: partition[0].initrd: initrd needs kernel (firmware boots from the disk and ignores it)",
            "t.toml:8:1: partition[0].cmdline: cmdline needs kernel (firmware boots from the disk and ignores it)");
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            kernel = "k"
            cmdline = "quiet\\tinit=/bin/sh"
            """, "t.toml:7:1: partition[0].cmdline: character 5 of the kernel command line is U+0009; "
            + "only printable ASCII is passed to the kernel");
    }

    @Test
    void shouldRefuseProcessKeysOnAVmAndVmKeysOnAProcess() {
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            kernel = "k"
            command = ["/bin/true"]
            [[partition]]
            name = "p1"
            on_crash = "restart"
            firmware = "uefi"
            """,
            "t.toml:7:1: partition[0].command: a VM partition runs its guest's own software; command is for kind = \"process\"",
            "t.toml:11:1: partition[1].firmware: firmware is only for kind = \"vm\"");
    }

    @Test
    void shouldBindCpusOfBothKindsAndRefuseOfflineOrRepeatedOnesAtTheirElement() throws Exception {
        int cpu = io.phost.core.sys.CpuAffinity.online().getFirst();
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            cpus = [%d]
            [[partition]]
            name = "p1"
            command = ["/bin/true"]
            cpus = [%d]
            [[partition]]
            name = "p2"
            command = ["/bin/true"]
            """.formatted(cpu, cpu));
        assertEquals(java.util.List.of(cpu), c.partition("vm1").orElseThrow().cpus());
        assertEquals(java.util.List.of(cpu), c.partition("p1").orElseThrow().cpus());
        assertEquals(java.util.List.of(), c.partition("p2").orElseThrow().cpus(), "default: not pinned");
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            firmware = "bios"
            cpus = [%d, 1023]
            [[partition]]
            name = "p1"
            command = ["/bin/true"]
            cpus = [%d, %d, 2000]
            """.formatted(cpu, cpu, cpu),
            "t.toml:7:12: partition[0].cpus[1]: CPU 1023 is not online on this host (online: "
                + io.phost.core.sys.CpuAffinity.online() + ")",
            "t.toml:11:12: partition[1].cpus[1]: " + cpu + " is listed twice",
            "t.toml:11:15: partition[1].cpus[2]: 2000 is out of range (0..1023)");
    }

    @Test
    void shouldBindOnCrashForAProcessPartitionTooAndCheckItsValue() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[partition]]
            name = "p1"
            command = ["/bin/true"]
            on_crash = "restart"
            [[partition]]
            name = "p2"
            command = ["/bin/true"]
            """);
        assertEquals("restart", c.partition("p1").orElseThrow().onCrash());
        assertEquals("stop", c.partition("p2").orElseThrow().onCrash(), "the default, as for a VM");
        assertErrors(HOST + """
            [[partition]]
            name = "p1"
            command = ["/bin/true"]
            on_crash = "reboot"
            """, "t.toml:6:1: partition[0].on_crash: 'reboot' is not one of restart, stop");
    }

    @Test
    void shouldRefuseVmMemoryInPartialMebibytesAndUnknownEnums() {
        assertErrors(HOST + """
            [[partition]]
            name = "vm1"
            kind = "vm"
            kernel = "k"
            memory = "262148KiB"
            machine = "q53"
            on_crash = "reboot"
            stop_timeout = 0
            """,
            "t.toml:7:1: partition[0].memory: 268439552 bytes is not a whole number of MiB (QEMU's -m for a VM)",
            "t.toml:8:1: partition[0].machine: 'q53' is not one of q35, pc",
            "t.toml:9:1: partition[0].on_crash: 'reboot' is not one of restart, stop",
            "t.toml:10:1: partition[0].stop_timeout: 0 is out of range (1..3600)");
    }

    @Test
    void shouldAcceptNicsOnAVmServedOverVhostUserNet() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "vm1"
            kind = "vm"
            kernel = "k"
              [[partition.nic]]
              switch = "s"
            """);
        assertEquals(1, c.partition("vm1").orElseThrow().nics().size());
    }
}
