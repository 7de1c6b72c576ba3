package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The differ behind {@code phost apply}: which changes are live, in which order, and where refusals point. */
class ConfigDiffTest {
    private static final String BASE = """
        [host]
        name = "h"
        data_dir = "/var/lib/phost-diff-test"

        [[qos_policy]]
        name = "gold"
        max_iops = 1000

        [[disk]]
        name = "d0"
        path = "d0.vhdx"
        create = { size = "1GiB" }

        [[switch]]
        name = "lan"
        type = "private"

        [[partition]]
        name = "web"
        memory = "64MiB"
        workload = { kind = "idle" }
        disk = [{ disk = "d0", lun = 0 }]
        nic = [{ switch = "lan", mac = "02:00:00:00:00:01" }]
        """;

    private static ConfigDiff diff(String before, String after) throws ConfigException {
        return ConfigDiff.between(ConfigLoader.parse("old.toml", before), ConfigLoader.parse("new.toml", after), after);
    }

    @Test
    void shouldFindNothingBetweenEqualConfigs() throws Exception {
        assertTrue(diff(BASE, BASE).isEmpty());
    }

    @Test
    void shouldPlanPoliciesPortsAndADisksPolicyLive() throws Exception {
        String after = BASE.replace("max_iops = 1000", "max_iops = 2000")
            .replace("create = { size = \"1GiB\" }", "create = { size = \"1GiB\" }\nqos_policy = \"silver\"")
            .replace("[[disk]]", "[[qos_policy]]\nname = \"silver\"\nmax_iops = 50\n\n[[disk]]")
            .replace("mac = \"02:00:00:00:00:01\" }", "mac = \"02:00:00:00:00:01\", vlan_access = 10, acl = [\"deny inbound 10.0.0.0/8\"] }");
        ConfigDiff d = diff(BASE, after);
        assertEquals(List.of(), d.refusals());
        assertEquals(List.of(
            "~ qos_policy gold: max_iops 1000 -> 2000",
            "+ qos_policy silver",
            "~ disk d0: qos_policy none -> \"silver\"",
            "~ port of partition web nic 0: vlan_access none -> 10, acl [] -> [deny inbound 10.0.0.0/8]"), d.plan());
    }

    @Test
    void shouldRemovePartitionsFirstAndSwitchesAndPoliciesLast() throws Exception {
        String before = BASE + """

            [[switch]]
            name = "old"
            type = "private"

            [[partition]]
            name = "gone"
            memory = "64MiB"
            workload = { kind = "idle" }
            nic = [{ switch = "old", mac = "02:00:00:00:00:09" }]
            """;
        String after = BASE + """

            [[partition]]
            name = "new"
            memory = "64MiB"
            workload = { kind = "idle" }
            """;
        ConfigDiff d = diff(before, after);
        assertEquals(List.of(), d.refusals());
        assertEquals(List.of("- partition gone (stopped)", "+ partition new (started if autostart)", "- switch old"), d.plan());
    }

    @Test
    void shouldRefuseWhatCannotChangeLiveAtItsPositionInTheNewFile() throws Exception {
        String after = BASE.replace("memory = \"64MiB\"", "memory = \"128MiB\"")
            .replace("mac = \"02:00:00:00:00:01\"", "mac = \"02:00:00:00:00:02\"")
            .replace("name = \"h\"", "name = \"h2\"");
        ConfigDiff d = diff(BASE, after);
        assertEquals(3, d.refusals().size(), d.refusals().toString());
        assertEquals("new.toml:2:1: host.name: cannot change on a running host: the [host] section is read at start only; "
            + "restart phost to change it", d.refusals().get(0).toString());
        ConfigError memory = d.refusals().get(1);
        assertEquals("partition[0].memory", memory.keyPath());
        assertEquals(20, memory.line());
        assertTrue(memory.message().contains("fixed while the partition exists"), memory.message());
        ConfigError nic = d.refusals().get(2);
        assertEquals("partition[0].nic[0].mac", nic.keyPath());
        assertEquals(23, nic.line());
    }

    private static final String WITH_D1 = BASE.replace("[[switch]]", """
        [[disk]]
        name = "d1"
        path = "d1.vhdx"
        create = { size = "1GiB" }

        [[switch]]""").replace("disk = [{ disk = \"d0\", lun = 0 }]", "disk = [{ disk = \"d0\", lun = 0 }, { disk = \"d1\", lun = 1 }]");

    @Test
    void shouldHotAddADiskOpeningItsNewImageFirst() throws Exception {
        ConfigDiff d = diff(BASE, WITH_D1);
        assertEquals(List.of(), d.refusals());
        assertEquals(List.of("+ disk d1 (opened)", "+ disk d1 of partition web at controller 0 lun 1 (hot-add)"), d.plan());
    }

    @Test
    void shouldHotRemoveADiskBeforeClosingItsImage() throws Exception {
        ConfigDiff d = diff(WITH_D1, BASE);
        assertEquals(List.of(), d.refusals());
        assertEquals(List.of("- disk d1 of partition web at controller 0 lun 1 (hot-remove)", "- disk d1 (closed)"), d.plan());
    }

    @Test
    void shouldMoveADiskToAnotherLunAsARemoveThenAnAdd() throws Exception {
        ConfigDiff d = diff(WITH_D1, WITH_D1.replace("lun = 1", "lun = 2"));
        assertEquals(List.of("- disk d1 of partition web at controller 0 lun 1 (hot-remove)",
            "+ disk d1 of partition web at controller 0 lun 2 (hot-add)"), d.plan());
    }

    @Test
    void shouldRefuseANewControllerAndAVmsDiskWithTheReason() throws Exception {
        ConfigDiff d = diff(BASE, WITH_D1.replace("lun = 1 }", "lun = 1, controller = 1 }"));
        assertEquals(List.of("partition[0].disk[1].controller"), d.refusals().stream().map(ConfigError::keyPath).toList());
        assertTrue(d.refusals().get(0).message().contains("attach the disk to controller 0"), d.refusals().get(0).message());
    }

    @Test
    void shouldRefuseHotAddingAnExportedDisk() throws Exception {
        ConfigDiff d = diff(BASE, WITH_D1.replace("path = \"d1.vhdx\"", "path = \"d1.vhdx\"\nnbd_export = true"));
        assertEquals(List.of("disk[1]", "partition[0].disk[1]"), d.refusals().stream().map(ConfigError::keyPath).toList());
        assertEquals(14, d.refusals().get(0).line());
        assertTrue(d.refusals().get(0).message().contains("exported over NBD"), d.refusals().get(0).message());
    }

    private static final String VM = BASE + """

        [[disk]]
        name = "v0"
        path = "v0.raw"
        format = "raw"
        create = { type = "fixed", size = "16MiB" }

        [[disk]]
        name = "v1"
        path = "v1.raw"
        format = "raw"
        create = { type = "fixed", size = "16MiB" }

        [[partition]]
        name = "vm1"
        kind = "vm"
        memory = "256MiB"
        kernel = "/boot/vmlinuz"
        disk = [{ disk = "v0" }]
        """;

    @Test
    void shouldHotPlugAndUnplugAVmsBlkDisk() throws Exception {
        String added = VM.replace("disk = [{ disk = \"v0\" }]", "disk = [{ disk = \"v0\" }, { disk = \"v1\", lun = 1 }]");
        ConfigDiff plug = diff(VM, added);
        assertEquals(List.of(), plug.refusals());
        assertEquals(List.of("+ disk v1 of partition vm1 at controller 0 lun 1 (hot-add)"), plug.plan());
        assertEquals(List.of("- disk v1 of partition vm1 at controller 0 lun 1 (hot-remove)"), diff(added, VM).plan());
    }

    @Test
    void shouldHotAddAndRemoveAVmsScsiLunOnAControllerItHas() throws Exception {
        String scsi = VM.replace("disk = [{ disk = \"v0\" }]", "disk = [{ disk = \"v0\", bus = \"scsi\", controller = 1 }]");
        String added = scsi.replace("controller = 1 }]", "controller = 1 }, { disk = \"v1\", bus = \"scsi\", controller = 1, lun = 5 }]");
        ConfigDiff plug = diff(scsi, added);
        assertEquals(List.of(), plug.refusals());
        assertEquals(List.of("+ disk v1 of partition vm1 at controller 1 lun 5 (hot-add)"), plug.plan());
        assertEquals(List.of("- disk v1 of partition vm1 at controller 1 lun 5 (hot-remove)"), diff(added, scsi).plan());
        // Another disk at a LUN in one apply: the old one leaves first, so the controller is never without its LUNs for long
        ConfigDiff swap = diff(scsi, scsi.replace("disk = \"v0\", bus", "disk = \"v1\", bus"));
        assertEquals(List.of(), swap.refusals());
        assertEquals(List.of("- disk v0 of partition vm1 at controller 1 lun 0 (hot-remove)",
            "+ disk v1 of partition vm1 at controller 1 lun 0 (hot-add)"), swap.plan());
    }

    @Test
    void shouldHotPlugANewScsiControllerOnAVmAndRemoveItsLastLun() throws Exception {
        String added = VM.replace("disk = [{ disk = \"v0\" }]", "disk = [{ disk = \"v0\" }, { disk = \"v1\", lun = 1, bus = \"scsi\" }]");
        ConfigDiff plug = diff(VM, added);
        assertEquals(List.of(), plug.refusals());
        assertEquals(List.of("+ disk v1 of partition vm1 at controller 0 lun 1 (hot-add)"), plug.plan());

        ConfigDiff other = diff(added, added.replace("lun = 1, bus = \"scsi\" }]", "lun = 1, bus = \"scsi\" }, "
            + "{ disk = \"v2\", bus = \"scsi\", controller = 2 }]") + "\n" + V2);
        assertEquals(List.of(), other.refusals());
        assertEquals(List.of("+ disk v2 (opened)", "+ disk v2 of partition vm1 at controller 2 lun 0 (hot-add)"), other.plan());

        ConfigDiff last = diff(added, VM);
        assertEquals(List.of(), last.refusals());
        assertEquals(List.of("- disk v1 of partition vm1 at controller 0 lun 1 (hot-remove)"), last.plan());
    }

    private static final String V2 = """
        [[disk]]
        name = "v2"
        path = "v2.raw"
        format = "raw"
        create = { type = "fixed", size = "16MiB" }

        """;

    @Test
    void shouldHotPlugAndUnplugAVmsNicAtTheEndOfItsListAndRefuseChangingItsMac() throws Exception {
        String one = VM.replace("disk = [{ disk = \"v0\" }]", "disk = [{ disk = \"v0\" }]\nnic = [{ switch = \"lan\", mac = \"02:00:00:00:01:01\" }]");
        String two = one.replace("mac = \"02:00:00:00:01:01\" }]", "mac = \"02:00:00:00:01:01\" }, { switch = \"lan\", mac = \"02:00:00:00:01:02\" }]");
        ConfigDiff plug = diff(one, two);
        assertEquals(List.of(), plug.refusals());
        assertEquals(List.of("+ nic 1 of partition vm1 on switch lan (hot-add)"), plug.plan());
        assertEquals(List.of("- nic 1 of partition vm1 (hot-remove)"), diff(two, one).plan());

        ConfigDiff mac = diff(two, two.replace("02:00:00:00:01:02", "02:00:00:00:01:03"));
        assertEquals(List.of("partition[1].nic[1].mac"), mac.refusals().stream().map(ConfigError::keyPath).toList());
    }

    @Test
    void shouldNameConfigKeysOfRecordComponents() {
        assertEquals("switch", ConfigDiff.key("switchName"));
        assertEquals("max_bandwidth_in", ConfigDiff.key("maxBandwidthIn"));
        assertEquals("vcpus", ConfigDiff.key("vcpus"));
    }

    private static final String CLUSTERED = """
        [host]
        name = "a"
        data_dir = "/var/lib/phost-diff-test"

        [[peer]]
        name = "b"
        management = "unix:/run/b.sock"

        [[disk]]
        name = "d0"
        path = "d0.vhdx"
        create = { size = "1GiB" }

        [[partition]]
        name = "web"
        memory = "64MiB"
        workload = { kind = "idle" }
        disk = [{ disk = "d0", lun = 0 }]
        """;

    private static final String RBD_PARTITION = """

        [[disk]]
        name = "db-disk"
        format = "rbd"
        rbd = { pool = "rbd", image = "db", cluster_config = "/etc/ceph/ceph.conf" }

        [[partition]]
        name = "db"
        memory = "64MiB"
        ha = true
        workload = { kind = "idle" }
        disk = [{ disk = "db-disk" }]
        """;

    @Test
    void shouldAddAndRemoveAPartitionWithItsRbdDiskLiveAsAMoveDoes() throws Exception {
        ConfigDiff in = diff(CLUSTERED, CLUSTERED + RBD_PARTITION);
        assertEquals(List.of(), in.refusals());
        assertEquals(List.of("+ disk db-disk (opened)", "+ partition db (started if autostart)"), in.plan());
        ConfigDiff out = diff(CLUSTERED + RBD_PARTITION, CLUSTERED);
        assertEquals(List.of(), out.refusals());
        assertEquals(List.of("- partition db (stopped)", "- disk db-disk (closed)"), out.plan());
    }

    @Test
    void shouldRefuseNewPeersAndAnRbdLunHotAddedToARunningPartition() throws Exception {
        String after = CLUSTERED.replace("name = \"b\"", "name = \"c\"") + RBD_PARTITION.replace("disk = [{ disk = \"db-disk\" }]", "")
            .replace("[[partition]]\nname = \"db\"\nmemory = \"64MiB\"\nha = true\nworkload = { kind = \"idle\" }\n", "");
        after = after.replace("disk = [{ disk = \"d0\", lun = 0 }]", "disk = [{ disk = \"d0\", lun = 0 }, { disk = \"db-disk\", lun = 1 }]");
        ConfigDiff d = diff(CLUSTERED, after);
        List<String> why = d.refusals().stream().map(ConfigError::toString).toList();
        assertEquals(2, why.size(), why.toString());
        assertTrue(why.get(0).contains("peer") && why.get(0).contains("read at start only"), why.toString());
        assertTrue(why.get(1).contains("partition[0].disk[1]: cannot change on a running host: hot-adding an rbd disk"), why.toString());
    }
}
