package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.PartitionConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DemoVmTest {
    @TempDir
    Path dir;

    private Path kit(String name) throws Exception {
        Path k = Files.createDirectories(dir.resolve("cache").resolve(name));
        Files.writeString(k.resolve("vmlinuz"), "k");
        Files.writeString(k.resolve("initramfs.gz"), "i");
        return k;
    }

    @Test
    void shouldAddAValidVmPartitionWhenQemuAndATestGuestAreThere() throws Exception {
        Path k = kit("linux-image-6.1.0-57-cloud-amd64");
        DemoVm vm = DemoVm.find(true, null, dir.resolve("cache"), ConfigLoader.DEMO_SUBNET_PREFIX);
        assertNotNull(vm.toml(), vm.note());
        ApplianceConfig c = ConfigLoader.loadDemo(dir.resolve("data"), vm.toml());
        PartitionConfig p = c.partition("demo-vm").orElseThrow();
        assertTrue(p.isVm());
        assertEquals(k.resolve("vmlinuz"), p.vm().resolvedKernel(c.host().dataDir()));
        assertEquals("demo-vm-disk", p.disks().getFirst().disk());
        assertEquals("demo-net", p.nics().getFirst().switchName(), "the demo VM is on the demo switch");
        assertTrue(ConfigLoader.loadDemo(dir.resolve("data2")).partitions().stream()
                .flatMap(q -> q.workload() == null ? java.util.stream.Stream.<String>empty() : q.workload().args().stream())
                .anyMatch(a -> a.contains(ConfigLoader.DEMO_SUBNET_PREFIX + DemoVm.PEER_HOST + "/")),
            "the address the demo VM pings belongs to a demo partition");
        assertTrue(p.vm().cmdline().length() <= 2048 && p.vm().cmdline().contains("phost.hold=1"));
        assertEquals(3, c.partitions().size());
        String moved = new String(java.util.Base64.getDecoder().decode(
            DemoVm.find(true, null, dir.resolve("cache"), "10.213.7.").toml().replaceAll("(?s).*phost\\.script=(\\S+).*", "$1")));
        assertTrue(moved.contains("10.213.7." + DemoVm.ADDRESS_HOST + "/24") && moved.contains("ping -c 1 -W 2 10.213.7." + DemoVm.PEER_HOST),
            "the demo VM follows the demo onto another subnet: " + moved);
    }

    @Test
    void shouldSayHowToGetWhatIsMissing() throws Exception {
        DemoVm noQemu = DemoVm.find(false, null, dir.resolve("cache"), ConfigLoader.DEMO_SUBNET_PREFIX);
        assertNull(noQemu.toml());
        assertTrue(noQemu.note().contains("apt-get install qemu-system-x86"), noQemu.note());
        DemoVm noGuest = DemoVm.find(true, null, dir.resolve("empty"), ConfigLoader.DEMO_SUBNET_PREFIX);
        assertNull(noGuest.toml());
        assertTrue(noGuest.note().contains("tools/test-guest/build.sh"), noGuest.note());
        assertNull(DemoVm.find(true, dir.resolve("nope").toString(), dir.resolve("cache"), ConfigLoader.DEMO_SUBNET_PREFIX).toml());
    }
}
