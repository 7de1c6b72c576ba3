package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

import io.phost.appliance.config.ConfigError.Reason;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Each kind of mistake, with the exact FILE:LINE:COL the user is pointed at. */
class ConfigValidationTest {
    private static final String HOST = """
        [host]
        data_dir = "/srv/phost"
        """; // lines 1-2

    static List<String> errors(String text) {
        try {
            ConfigLoader.parse("t.toml", text);
        } catch (ConfigException e) {
            return e.errors().stream().map(ConfigError::toString).toList();
        }
        return fail("expected errors in:\n" + text);
    }

    static void assertErrors(String text, String... expected) {
        assertEquals(List.of(expected), errors(text));
    }

    @Test
    void shouldReportTomlSyntaxErrorsWithTomljPositions() {
        assertErrors(HOST + "name = \"unterminated\n",
            "t.toml:3:21: TOML syntax: Unexpected end of line, expected \" or a character");
    }

    @Test
    void shouldSuggestTheKnownKeyForATypo() {
        assertErrors(HOST + """
            [[partition]]
            name = "p"
            vcpu = 2
            """, "t.toml:5:1: partition[0].vcpu: unknown key 'vcpu' in [[partition]]; did you mean 'vcpus'?");
    }

    @Test
    void shouldListTheKnownKeysWhenNothingIsClose() {
        assertErrors(HOST + "flavour = 1\n", "t.toml:3:1: host.flavour: unknown key 'flavour' in [host] "
            + "(known: name, data_dir, management, management_token_file, nbd, vsp_cpus, polling)");
    }

    @Test
    void shouldReportUnknownTopLevelTables() {
        assertErrors(HOST + "[[disks]]\nname = \"x\"\n",
            "t.toml:3:1: disks: unknown key 'disks' at the top level; did you mean 'disk'?");
    }

    @Test
    void shouldCheckWorkloadArgumentsAsTheWorkloadWouldAtTheArgumentsPosition() {
        assertErrors(HOST + """
            [[partition]]
            name = "p"
              [partition.workload]
              kind = "io"
              args = ["--rw", "randread", "--block-size", "4KiB"]

            [[partition]]
            name = "q"
            workload = { kind = "io", args = ["--iodepth", "many"] }

            [[partition]]
            name = "r"
            workload = { kind = "io", args = ["--bs", "4KiX"] }

            [[partition]]
            name = "s"
            workload = { kind = "idle", args = ["--fast"] }

            [[partition]]
            name = "t"
            workload = { kind = "mixed", args = ["--io", "--rw sideways"] }
            """,
            "t.toml:7:31: partition[0].workload.args[2]: 'phost guest io' does not take '--block-size' (it takes --rw --bs "
                + "--iodepth --numjobs --runtime --size --lun --offset --span --rwmixread --seed --poll-us --wait-grow --wait-lun --verify --json)",
            "t.toml:11:48: partition[1].workload.args[1]: 'phost guest io': Invalid value for option '--iodepth': 'many' is not an int",
            "t.toml:15:27: partition[2].workload.args: 'phost guest io': --bs: unknown size unit 'KiX' (use B, KiB, MiB, GiB, TiB or PiB; K/KB, M/MB, ... mean the same powers of 1024)",
            "t.toml:19:37: partition[3].workload.args[0]: 'phost guest idle' does not take '--fast' (it takes no arguments)",
            "t.toml:23:30: partition[4].workload.args: 'phost guest mixed': --rw must be read|write|randread|randwrite|randrw: sideways");
    }

    @Test
    void shouldReportWrongTypes() {
        assertErrors(HOST + """
            [[partition]]
            name = "p"
            vcpus = "two"
            autostart = 1
            command = ["/bin/true", 3]
            """,
            "t.toml:5:1: partition[0].vcpus: expected an integer, found the string \"two\"",
            "t.toml:6:1: partition[0].autostart: expected true or false, found the integer 1",
            "t.toml:7:25: partition[0].command[1]: expected a string, found the integer 3");
    }

    @Test
    void shouldReportOutOfRangeValues() {
        assertErrors(HOST + """
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "p"
            vcpus = 65
            memory = "8MiB"
              [[partition.nic]]
              switch = "s"
              vlan_access = 4095
            """,
            "t.toml:8:1: partition[0].vcpus: 65 is out of range (1..64)",
            "t.toml:9:1: partition[0].memory: 8388608 bytes is out of range (16MiB..1TiB)",
            "t.toml:12:3: partition[0].nic[0].vlan_access: 4095 is out of range (1..4094)");
    }

    @Test
    void shouldCheckDiskGeometry() {
        assertErrors(HOST + """
            [[disk]]
            name = "a"
            path = "a.vhdx"
              [disk.create]
              size = "65TiB"
              block_size = "3MiB"
              logical_sector = 1024
            [[disk]]
            name = "b"
            path = "b.vhd"
            format = "vhd"
            create = { type = "fixed", size = "2041GiB", logical_sector = 4096 }
            [[disk]]
            name = "c"
            path = "c.vhdx"
            create = { size = 1048577 }
            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            create = { size = "1GiB", block_size = "1MiB", logical_sector = 4096, physical_sector = 512 }
            [[disk]]
            name = "e"
            path = "e.vhdx"
            create = { size = "1GiB", logical_sector = 4096, physical_sector = 512 }
            """,
            "t.toml:7:3: disk[0].create.size: 71468255805440 bytes is out of range (1MiB..64TiB)",
            "t.toml:8:3: disk[0].create.block_size: 3MiB is not a power of two",
            "t.toml:9:3: disk[0].create.logical_sector: 1024 is not one of 512, 4096",
            "t.toml:14:28: disk[1].create.size: 2041GiB is above the vhd limit of 2040GiB",
            "t.toml:14:46: disk[1].create.logical_sector: a vhd disk has 512-byte sectors only",
            "t.toml:18:12: disk[2].create.size: 1048577 bytes is not a multiple of the 512-byte logical sector",
            "t.toml:23:27: disk[3].create.block_size: a raw disk has no blocks; remove block_size",
            "t.toml:23:48: disk[3].create.logical_sector: a raw disk has 512-byte logical sectors only",
            "t.toml:27:50: disk[4].create.physical_sector: physical_sector 512 is below logical_sector 4096");
    }

    @Test
    void shouldCheckMacAddresses() {
        assertErrors(HOST + """
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "p"
              [[partition.nic]]
              switch = "s"
              mac = "01:00:5e:00:00:01"
              [[partition.nic]]
              switch = "s"
              mac = "02:00:00:00:00:zz"
              [[partition.nic]]
              switch = "s"
              mac = "02-50-48-00-00-07"
              [[partition.nic]]
              switch = "s"
              mac = "02:50:48:00:00:07"
            """,
            "t.toml:10:3: partition[0].nic[0].mac: 01:00:5e:00:00:01 is a multicast address; a NIC needs a unicast MAC (first octet even)",
            "t.toml:13:3: partition[0].nic[1].mac: '02:00:00:00:00:zz' is not a MAC address like \"02:50:48:00:00:01\"",
            "t.toml:19:3: partition[0].nic[3].mac: MAC 02:50:48:00:00:07 is already used by partition[0].nic[2]");
    }

    @Test
    void shouldCheckQosPolicies() {
        assertErrors(HOST + """
            [[qos_policy]]
            name = "q"
            min_iops = 500
            max_iops = 100
            normalization_size = 3000
            max_bandwidth = "10 furlongs"
            """,
            "t.toml:5:1: qos_policy[0].min_iops: min_iops 500 is above max_iops 100",
            "t.toml:7:1: qos_policy[0].normalization_size: 3000 is not a power of two",
            "t.toml:8:1: qos_policy[0].max_bandwidth: unknown bandwidth unit 'furlongs' (use bps, kbps, Mbps, Gbps "
                + "for bits per second or B/s, KB/s, MB/s, GB/s, MiB/s, GiB/s for bytes)");
    }

    @Test
    void shouldReportDanglingReferences() {
        assertErrors(HOST + """
            [[qos_policy]]
            name = "gold"
            [[disk]]
            name = "d"
            path = "d.vhdx"
            qos_policy = "gold2"
            [[switch]]
            name = "lan"
            type = "private"
            [[partition]]
            name = "p"
              [[partition.disk]]
              disk = "e"
              [[partition.nic]]
              switch = "wan"
            """,
            "t.toml:8:1: disk[0].qos_policy: no [[qos_policy]] named 'gold2'; did you mean 'gold'?",
            "t.toml:15:3: partition[0].disk[0].disk: no [[disk]] named 'e'; did you mean 'd'?",
            "t.toml:17:3: partition[0].nic[0].switch: no [[switch]] named 'wan'; did you mean 'lan'?");
    }

    @Test
    void shouldReportDuplicateNames() {
        assertErrors(HOST + """
            [[disk]]
            name = "d"
            path = "d1.vhdx"
            [[disk]]
            name = "d"
            path = "d2.vhdx"
            [[switch]]
            name = "s"
            type = "private"
            [[switch]]
            name = "s"
            type = "internal"
            [[qos_policy]]
            name = "q"
            [[qos_policy]]
            name = "q"
            [[partition]]
            name = "p"
            [[partition]]
            name = "p"
            """,
            "t.toml:7:1: disk[1].name: duplicate disk name 'd' (first defined at line 4)",
            "t.toml:13:1: switch[1].name: duplicate switch name 's' (first defined at line 10)",
            "t.toml:18:1: qos_policy[1].name: duplicate QoS policy name 'q' (first defined at line 16)",
            "t.toml:22:1: partition[1].name: duplicate partition name 'p' (first defined at line 20)");
    }

    @Test
    void shouldReportDuplicateSlotsAndSharedWritableDisks() {
        assertErrors(HOST + """
            [[disk]]
            name = "a"
            path = "a.vhdx"
            [[disk]]
            name = "b"
            path = "a.vhdx"
            [[disk]]
            name = "c"
            path = "c.vhdx"
            [[partition]]
            name = "p"
              [[partition.disk]]
              disk = "a"
              lun = 3
              [[partition.disk]]
              disk = "c"
              controller = 0
              lun = 3
              [[partition.disk]]
              disk = "c"
            [[partition]]
            name = "q"
              [[partition.disk]]
              disk = "a"
            """,
            "t.toml:8:1: disk[1].path: disk 'b' uses the same file as disk 'a'",
            "t.toml:20:3: partition[0].disk[1].lun: controller 0 LUN 3 is already used by partition[0].disk[0]",
            "t.toml:22:3: partition[0].disk[2].disk: disk 'c' is attached to this partition twice",
            "t.toml:26:3: partition[0].disk[0].disk: disk 'a' is already attached to partition 'p'; only read_only disks can be shared"
                .replace("partition[0].disk[0]", "partition[1].disk[0]"));
    }

    @Test
    void shouldReportConflictingDiskOptions() {
        assertErrors(HOST + """
            [[disk]]
            name = "fixed-with-parent"
            path = "a.vhdx"
            parent = "base.vhdx"
            create = { type = "fixed", size = "1GiB" }
            [[disk]]
            name = "orphan"
            path = "b.vhdx"
            create = { type = "differencing" }
            [[disk]]
            name = "dev"
            path = "/dev/sdz"
            format = "passthrough"
            create = { size = "1GiB" }
            [[disk]]
            name = "nosize"
            path = "n.vhdx"
              [disk.create]
              type = "fixed"
            """,
            "t.toml:6:1: disk[0].parent: a fixed disk has no parent (only create.type = \"differencing\" does)",
            "t.toml:11:12: disk[1].create.type: a differencing disk needs parent = \"...\" in its [[disk]]",
            "t.toml:16:1: disk[2].create: a passthrough disk is a host device; it cannot be created",
            "t.toml:20:3: disk[3].create.size: required key is missing: a fixed disk needs a size");
    }

    @Test
    void shouldReportConflictingSwitchOptions() {
        assertErrors(HOST + """
            [[switch]]
            name = "ext"
            type = "external"
            [[switch]]
            name = "priv"
            type = "private"
            uplink = "eth1"
            enable_iov = true
            """,
            "t.toml:3:1: switch[0]: an external switch needs uplink = \"<host interface>\" (or uplinks = [...] for a team)",
            "t.toml:9:1: switch[1].uplink: only an external switch has an uplink; this one is private",
            "t.toml:10:1: switch[1].enable_iov: SR-IOV needs a physical uplink: external switches only; this one is private");
    }

    @Test
    void shouldReportConflictingPartitionAndNicOptions() {
        assertErrors(HOST + """
            [[switch]]
            name = "s"
            type = "private"
            [[partition]]
            name = "p"
            command = ["/bin/true"]
            workload = { kind = "idle" }
              [[partition.nic]]
              switch = "s"
              vlan_access = 5
              vlan_trunk = [6, 7]
              [[partition.nic]]
              switch = "s"
              native_vlan = 8
              min_bandwidth_weight = 10
              iov_weight = 1
            """,
            "t.toml:9:1: partition[0].workload: set either command or workload, not both",
            "t.toml:13:3: partition[0].nic[0].vlan_trunk: set either vlan_access or vlan_trunk, not both",
            "t.toml:16:3: partition[0].nic[1].native_vlan: native_vlan applies to a trunk port; set vlan_trunk too",
            "t.toml:17:3: partition[0].nic[1].min_bandwidth_weight: switch 's' has bandwidth_mode = \"none\"; weights need \"weight\"",
            "t.toml:18:3: partition[0].nic[1].iov_weight: switch 's' does not have enable_iov = true");
    }

    /** uplink_bandwidth divides an uplink or host TAP: a private switch has neither. */
    @Test
    void shouldRefuseUplinkBandwidthOnAPrivateSwitchWithItsPosition() {
        assertErrors(HOST + """
            [[switch]]
            name = "s"
            type = "private"
            uplink_bandwidth = "10MB/s"
            """,
            "t.toml:6:1: switch[0].uplink_bandwidth: a private switch has neither an uplink nor a host TAP to cap");
    }

    /** host_address (issue 12): the host vNIC's IPv4 address of an internal switch, checked with its position. */
    @Test
    void shouldCheckHostAddressOfAnInternalSwitchWithItsPosition() throws ConfigException {
        assertErrors(HOST + """
            [[switch]]
            name = "a"
            type = "internal"
            host_address = "10.91.0.1"
            [[switch]]
            name = "b"
            type = "internal"
            host_address = "10.91.1.0/24"
            [[switch]]
            name = "c"
            type = "private"
            host_address = "10.91.2.1/24"
            [[switch]]
            name = "d"
            type = "internal"
            host_address = "10.91.3.1/31"
            [[switch]]
            name = "e"
            type = "internal"
            host_address = "10.91.4.1/24"
            """,
            "t.toml:6:1: switch[0].host_address: '10.91.0.1' is not an IPv4 address with a prefix length (e.g. \"10.91.0.1/24\")",
            "t.toml:10:1: switch[1].host_address: '10.91.1.0/24' is the subnet's network address, not a host's",
            "t.toml:14:1: switch[2].host_address: only an internal switch has a host vNIC to address; this one is private",
            "t.toml:18:1: switch[3].host_address: prefix length /31 is out of range (1..30)");
        assertEquals("10.91.4.1/24", ConfigLoader.parse("t.toml", HOST + """
            [[switch]]
            name = "e"
            type = "internal"
            host_address = "10.91.4.1/24"
            """).switchConfig("e").orElseThrow().hostAddress());
    }

    /** NAT (issue 12): internal only, needs host_address, nat_prefix must contain it; errors with positions. */
    @Test
    void shouldCheckNatOfAnInternalSwitchWithItsPosition() throws ConfigException {
        assertErrors(HOST + """
            [[switch]]
            name = "a"
            type = "internal"
            nat = true
            [[switch]]
            name = "b"
            type = "private"
            nat = true
            [[switch]]
            name = "c"
            type = "internal"
            host_address = "10.91.2.1/24"
            nat = true
            nat_prefix = "10.92.0.0/16"
            [[switch]]
            name = "d"
            type = "internal"
            host_address = "10.91.3.1/24"
            nat_prefix = "10.91.3.0/24"
            [[switch]]
            name = "e"
            type = "internal"
            host_address = "10.91.4.1/24"
            nat = true
            nat_prefix = "10.91.4.1/24"
            """,
            "t.toml:6:1: switch[0].nat: nat needs host_address = \"A.B.C.D/N\": the partitions' gateway on the switch",
            "t.toml:10:1: switch[1].nat: nat: only an internal switch is NATed (its partitions reach the outside through"
                + " the host); this one is private",
            "t.toml:16:1: switch[2].nat_prefix: nat_prefix: 10.92.0.0/16 does not contain host_address 10.91.2.1/24",
            "t.toml:21:1: switch[3].nat_prefix: nat_prefix needs nat = true",
            "t.toml:27:1: switch[4].nat_prefix: nat_prefix: '10.91.4.1/24' has host bits set; the prefix is 10.91.4.0/24");
        ApplianceConfig cfg = ConfigLoader.parse("t.toml", HOST + """
            [[switch]]
            name = "e"
            type = "internal"
            host_address = "10.91.4.1/24"
            nat = true
            [[switch]]
            name = "f"
            type = "internal"
            host_address = "10.91.5.1/24"
            nat = true
            nat_prefix = "10.91.0.0/16"
            [[switch]]
            name = "g"
            type = "internal"
            host_address = "10.91.6.1/24"
            """);
        assertEquals("10.91.4.0/24", cfg.switchConfig("e").orElseThrow().natPrefix());
        assertEquals("10.91.0.0/16", cfg.switchConfig("f").orElseThrow().natPrefix());
        assertEquals(null, cfg.switchConfig("g").orElseThrow().natPrefix());
    }

    /** Switch-embedded teaming (issue 12): uplinks = [...] on an external switch, 2..8 distinct names, not with uplink. */
    @Test
    void shouldCheckTeamedUplinksWithTheirPosition() throws ConfigException {
        assertErrors(HOST + """
            [[switch]]
            name = "a"
            type = "external"
            uplinks = ["eth1"]
            [[switch]]
            name = "b"
            type = "external"
            uplink = "eth1"
            uplinks = ["eth1", "eth2"]
            [[switch]]
            name = "c"
            type = "external"
            uplinks = ["eth1", "eth1"]
            [[switch]]
            name = "d"
            type = "internal"
            uplinks = ["eth1", "eth2"]
            [[switch]]
            name = "e"
            type = "external"
            uplinks = ["eth1", "a/b"]
            """,
            "t.toml:6:1: switch[0].uplinks: a team has 2..8 interfaces, not 1 (use uplink = \"eth1\")",
            "t.toml:11:1: switch[1].uplinks: give either uplink (one interface) or uplinks (a team), not both",
            "t.toml:15:1: switch[2].uplinks: an interface is listed twice: [eth1, eth1]",
            "t.toml:19:1: switch[3].uplinks: only an external switch has uplinks; this one is internal",
            "t.toml:23:1: switch[4].uplinks: 'a/b' is not a Linux interface name (1-15 characters, no '/' or spaces)");
        SwitchConfig s = ConfigLoader.parse("t.toml", HOST + """
            [[switch]]
            name = "t"
            type = "external"
            uplinks = ["eth1", "eth2"]
            """).switchConfig("t").orElseThrow();
        assertEquals(java.util.List.of("eth1", "eth2"), s.uplinks());
        assertEquals("eth1", s.uplink());
    }

    /**
     * bandwidth_mode = "absolute": NICs reserve min_bandwidth (bits or bytes per second), turned into weights; a
     * reservation on a switch of another mode, or above 100Gbps, is refused with its position. Before: "absolute"
     * was refused at validation (and earlier validated, then failed at run).
     */
    @Test
    void shouldTakeAbsoluteReservationsOnlyOnAnAbsoluteSwitch() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[switch]]
            name = "s"
            type = "private"
            bandwidth_mode = "absolute"
            [[partition]]
            name = "p"
              [[partition.nic]]
              switch = "s"
              min_bandwidth = "100Mbps"
              [[partition.nic]]
              switch = "s"
            """);
        var nics = c.partitions().getFirst().nics();
        assertEquals(12_500_000, nics.get(0).minBandwidth());
        assertEquals(100, nics.get(0).portWeight());
        assertEquals(1, nics.get(1).portWeight(), "no reservation: one unit");
        assertErrors(HOST + """
            [[switch]]
            name = "w"
            type = "private"
            bandwidth_mode = "weight"
            [[switch]]
            name = "a"
            type = "private"
            bandwidth_mode = "absolute"
            [[partition]]
            name = "p"
              [[partition.nic]]
              switch = "w"
              min_bandwidth = "10Mbps"
              [[partition.nic]]
              switch = "a"
              min_bandwidth = "200Gbps"
            """,
            "t.toml:15:3: partition[0].nic[0].min_bandwidth: switch 'w' has bandwidth_mode = \"weight\"; reservations need \"absolute\"",
            "t.toml:18:3: partition[0].nic[1].min_bandwidth: a reservation is at most 100Gbps (12500000000 bytes/s)");
    }

    @Test
    void shouldRefuseAnMtuOutsideTheJumboRangeOrAboveTheSwitchMtu() {
        assertErrors(HOST + """
            [[switch]]
            name = "s"
            type = "private"
            mtu = 9001
            [[switch]]
            name = "j"
            type = "internal"
            mtu = 4000
            [[partition]]
            name = "p"
              [[partition.nic]]
              switch = "j"
              mtu = 9000
            """,
            "t.toml:6:1: switch[0].mtu: 9001 is out of range (68..9000)",
            "t.toml:15:3: partition[0].nic[0].mtu: mtu 9000 is above the mtu 4000 of switch 'j'; raise the switch's mtu or lower this one");
    }

    @Test
    void shouldPointMissingRequiredKeysAtTheTableHeader() {
        assertErrors("""
            [host]
            name = "h"

            [[switch]]
            type = "private"
            """,
            "t.toml:1:1: host.data_dir: required key is missing from [host]",
            "t.toml:4:1: switch[0].name: required key is missing from [[switch]]");
        assertErrors("", "t.toml:1:1: host: required table [host] is missing");
    }

    @Test
    void shouldCheckHostManagementAddresses() {
        assertErrors("""
            [host]
            data_dir = "relative/dir"
            management = "tcp://0.0.0.0/80"
            vsp_cpus = [1, 1, 2048]
            """,
            "t.toml:2:1: host.data_dir: must be an absolute path (or \"${tmp}\" for a fresh temporary directory)",
            "t.toml:3:1: host.management: 'tcp://0.0.0.0/80' is not tcp://HOST:PORT "
                + "(e.g. tcp://127.0.0.1:8443, tcp://0.0.0.0:8443, tcp://[::1]:8443)",
            "t.toml:4:16: host.vsp_cpus[1]: 1 is listed twice",
            "t.toml:4:19: host.vsp_cpus[2]: 2048 is out of range (0..1023)");
        assertErrors(HOST + "management = \"tcp://127.0.0.1:99999\"\n",
            "t.toml:3:1: host.management: a tcp management address needs management_token_file",
            "t.toml:3:1: host.management: port 99999 is out of range (1..65535)");
    }

    @Test
    void shouldKeepTheNbdExportOnLoopbackOrAUnixSocket() throws Exception {
        assertErrors(HOST + "nbd = \"tcp://0.0.0.0:10809\"\n",
            "t.toml:3:1: host.nbd: 'tcp://0.0.0.0:10809' is not \"unix:/absolute/path\" or \"tcp://127.0.0.1:PORT\" "
                + "(NBD has no authentication, so only loopback)");
        assertErrors(HOST + "nbd = \"tcp://127.0.0.1:70000\"\n",
            "t.toml:3:1: host.nbd: port 70000 is out of range (1..65535)");
        assertEquals("tcp://[::1]:10809", ConfigLoader.parse("t.toml", HOST + "nbd = \"tcp://[::1]:10809\"\n").host().nbd());
        assertEquals("unix:/srv/phost/nbd.sock", ConfigLoader.parse("t.toml", HOST).host().nbd());
    }

    @Test
    void shouldRejectBadNamesAndEnumValues() {
        assertErrors(HOST + """
            [[switch]]
            name = "has space"
            type = "privat"
            """,
            "t.toml:4:1: switch[0].name: 'has space' is not a valid name (1-64 characters of A-Z a-z 0-9 . _ -, "
                + "starting with a letter or digit)",
            "t.toml:5:1: switch[0].type: 'privat' is not one of external, internal, private; did you mean 'private'?");
    }

    @Test
    void shouldNotCascadeFromAnInvalidDefinitionToItsReferences() {
        // The policy is invalid; the disk naming it must not add "no such policy".
        assertErrors(HOST + """
            [[qos_policy]]
            name = "q"
            max_iops = -1
            [[disk]]
            name = "d"
            path = "d.vhdx"
            qos_policy = "q"
            """, "t.toml:5:1: qos_policy[0].max_iops: -1 is out of range (0..1000000000)");
    }

    @Test
    void shouldKeepAllErrorsWhenSyntaxAndSemanticsBothFail() {
        List<String> e = errors(HOST + """
            [[partition]]
            name = "p"
            vcpus = 0
            memory = = 3
            """);
        assertEquals(List.of("t.toml:5:1: partition[0].vcpus: 0 is out of range (1..64)",
            "t.toml:6:10: TOML syntax: Unexpected '=', expected a value"), e);
    }

    @Test
    void shouldRefuseConfigsLargerThanOneMebibyte() {
        ConfigException e = assertThrows(ConfigException.class,
            () -> ConfigLoader.parse("big.toml", "#".repeat(ConfigLoader.MAX_BYTES + 1)));
        assertEquals("big.toml:1:1: file is larger than 1MiB; not a config", e.errors().getFirst().toString());
    }

    @Test
    void shouldCompareDiskFilesAfterResolvingThemAgainstTheDataDir() {
        assertErrors(HOST + """
            [[disk]]
            name = "a"
            path = "images/a.vhdx"
            [[disk]]
            name = "b"
            path = "/srv/phost/images/./a.vhdx"
            [[disk]]
            name = "self"
            path = "s.vhdx"
            parent = "s.vhdx"
            create = { type = "differencing" }
            [[disk]]
            name = "child"
            path = "c.vhdx"
            parent = "images/a.vhdx"
            create = { type = "differencing" }
            """,
            "t.toml:8:1: disk[1].path: disk 'b' uses the same file as disk 'a'",
            "t.toml:12:1: disk[2].parent: a disk cannot be its own parent",
            "t.toml:17:1: disk[3].parent: the parent is disk 'a', which is served writable; a parent must not change "
                + "under its children (set read_only = true on 'a')");
    }

    @Test
    void shouldRefuseSocketPathsTheKernelCannotBind() {
        String longDir = "/srv/" + "d".repeat(100);
        assertErrors("[host]\ndata_dir = \"" + longDir + "\"\n",
            "t.toml:2:1: host.data_dir: the management socket path is 116 bytes; Unix sockets allow at most 107 "
                + "(set management = \"unix:/shorter/path\")");
        assertErrors(HOST + "management = \"unix:/" + "s".repeat(107) + "\"\n",
            "t.toml:3:1: host.management: the management socket path is 108 bytes; Unix sockets allow at most 107");
    }

    @Test
    void shouldWantWholePagesOfGuestMemory() {
        assertErrors(HOST + "[[partition]]\nname = \"p\"\nmemory = 16777217\n",
            "t.toml:5:1: partition[0].memory: 16777217 bytes is not a multiple of the 4KiB page size");
    }

    @Test
    void shouldIgnoreAUtf8ByteOrderMark() throws ConfigException {
        byte[] text = ("\uFEFF" + HOST).getBytes(java.nio.charset.StandardCharsets.UTF_8);
        assertEquals("phost", ConfigLoader.parse("bom.toml", text).host().name());
    }

    @Test
    void shouldClassifyEachKindOfMistakeWithItsReason() {
        String sw = "[[switch]]\nname = \"s\"\ntype = \"private\"\n";
        Object[][] cases = {
            {"[host\n", Reason.SYNTAX},
            {HOST + "nmae = \"x\"\n", Reason.UNKNOWN_KEY},
            {"[host]\n", Reason.MISSING_KEY},
            {HOST + "vsp_cpus = 3\n", Reason.WRONG_TYPE},
            {HOST + "[[partition]]\nname = \"p\"\nvcpus = 0\n", Reason.OUT_OF_RANGE},
            {HOST + "[[qos_policy]]\nname = \"q\"\nmin_iops = 2\nmax_iops = 1\n", Reason.OUT_OF_RANGE},
            {HOST + sw + "[[partition]]\nname = \"p\"\nnic = [{ switch = \"s\", mac = \"ff:ff:ff:ff:ff:ff\" }]\n",
                Reason.INVALID_VALUE},
            {HOST + "[[partition]]\nname = \"p\"\nnic = [{ switch = \"s\" }]\n", Reason.DANGLING_REFERENCE},
            {HOST + sw + sw, Reason.DUPLICATE},
            {HOST + "[[switch]]\nname = \"e\"\ntype = \"external\"\n", Reason.CONFLICT},
        };
        for (Object[] c : cases) {
            try {
                ConfigLoader.parse("t.toml", (String) c[0]);
                fail("accepted:\n" + c[0]);
            } catch (ConfigException e) {
                assertEquals(List.of(c[1]), e.errors().stream().map(ConfigError::reason).toList(), e.getMessage());
            }
        }
        byte[] latin1 = {'#', (byte) 0xE9, '\n'};
        assertEquals(Reason.ENCODING, assertThrows(ConfigException.class, () -> ConfigLoader.parse("t.toml", latin1))
            .errors().getFirst().reason());
        assertEquals(Reason.UNREADABLE, assertThrows(ConfigException.class,
            () -> ConfigLoader.load(java.nio.file.Path.of("/nonexistent/appliance.toml"))).errors().getFirst().reason());
    }

    @Test
    void shouldCheckADifferencingDiskAgainstAConfiguredParent() {
        assertErrors(HOST + """
            [[disk]]
            name = "early-child"
            path = "early.vhdx"
            parent = "base.vhdx"
            create = { type = "differencing" }
            [[disk]]
            name = "base"
            path = "base.vhdx"
            read_only = true
            create = { size = "1GiB", logical_sector = 4096 }
            [[disk]]
            name = "vhd-child"
            path = "c.vhd"
            format = "vhd"
            parent = "base.vhdx"
            create = { type = "differencing" }
            [[disk]]
            name = "sector-child"
            path = "s.vhdx"
            parent = "base.vhdx"
            create = { type = "differencing", logical_sector = 512 }
            [[disk]]
            name = "raw4k"
            path = "r.img"
            format = "raw"
            create = { size = "1GiB", logical_sector = 4096 }
            """,
            "t.toml:6:1: disk[0].parent: the parent is disk 'base', defined later in the file; disks are opened "
                + "and created in file order, so define 'base' first",
            "t.toml:17:1: disk[2].parent: a differencing vhd disk needs a vhd parent; disk 'base' is vhdx",
            "t.toml:23:35: disk[3].create.logical_sector: a differencing disk uses its parent's logical sector size: "
                + "4096 on disk 'base'",
            "t.toml:28:27: disk[4].create.logical_sector: a raw disk has 512-byte logical sectors only");
    }

    @Test
    void shouldGiveADifferencingDiskItsConfiguredParentsSectorSizes() throws ConfigException {
        ApplianceConfig c = ConfigLoader.parse("t.toml", HOST + """
            [[disk]]
            name = "base"
            path = "base.vhdx"
            read_only = true
            create = { size = "1GiB", logical_sector = 4096, physical_sector = 4096 }
            [[disk]]
            name = "child"
            path = "child.vhdx"
            parent = "base.vhdx"
            create = { type = "differencing" }
            """);
        DiskConfig.Create child = c.disk("child").orElseThrow().create();
        assertEquals(4096, child.logicalSector());
        assertEquals(4096, child.physicalSector());
        assertEquals(0, child.size());
    }
}
