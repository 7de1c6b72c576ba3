package io.phost.appliance.config;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * Every table and key of {@code appliance.toml}: type, default, allowed range. The loader enforces ranges and
 * defaults from here, and {@code docs/config.md} is tested against it, so the code, the checks and the
 * reference cannot drift apart.
 */
public final class ConfigSchema {

    /** The value types of keys, with the word the reference uses for each. */
    public enum Kind {
        NAME("name"), STRING("string"), PATH("path"), INTEGER("integer"), BOOLEAN("boolean"), SIZE("size"),
        BANDWIDTH("bandwidth"), ENUM("enum"), MAC("mac"), STRING_ARRAY("array of strings"),
        INTEGER_ARRAY("array of integers"), TABLE("table"), TABLE_ARRAY("array of tables");

        public final String docName;

        Kind(String docName) {
            this.docName = docName;
        }
    }

    /**
     * One key.
     *
     * @param defaultText how the reference shows the default; null when the key is required or has no default.
     *                    For INTEGER, BOOLEAN, SIZE, BANDWIDTH, ENUM and arrays the loader parses this very text
     *                    as the default value unless {@code computed} is set
     * @param computed    the default depends on other keys and is worked out by the loader
     * @param min         inclusive lower bound of INTEGER/SIZE values (and of INTEGER_ARRAY elements), or null
     * @param max         inclusive upper bound, or null
     * @param allowed     the only accepted values: enum words (ENUM) or numbers (INTEGER), else empty
     * @param note        extra range text for the reference (e.g. "power of two"), or empty
     * @param child       section of a TABLE or TABLE_ARRAY key, else null
     */
    public record Key(String name, Kind kind, boolean required, String defaultText, boolean computed, Long min,
                      Long max, List<String> allowed, String note, String child) {

        /** The reference's "default" column. */
        public String docDefault() {
            return required ? "required" : defaultText == null ? "none" : defaultText;
        }

        /** The reference's "range" column, built from the bounds the loader enforces. */
        public String docRange() {
            List<String> parts = new ArrayList<>();
            if (!allowed.isEmpty()) {
                parts.add(String.join(", ", allowed));
            } else if (min != null || max != null) {
                boolean sizes = kind == Kind.SIZE;
                String lo = min == null ? "" : sizes ? Units.formatSize(min) : Long.toString(min);
                String hi = max == null ? "" : sizes ? Units.formatSize(max) : Long.toString(max);
                parts.add(max == null ? ">= " + lo : min == null ? "<= " + hi : lo + ".." + hi);
            }
            if (!note.isEmpty()) {
                parts.add(note);
            }
            if (child != null) {
                parts.add("see [" + (kind == Kind.TABLE_ARRAY ? "[" + child + "]" : child) + "]");
            }
            return String.join("; ", parts);
        }
    }

    /** A table: {@code ""} (the top level), {@code host}, {@code disk}, {@code disk.create}, ... */
    public record Section(String name, boolean array, Map<String, Key> keys) {
        public Key key(String key) {
            Key k = keys.get(key);
            if (k == null) {
                throw new IllegalArgumentException("no key " + key + " in section [" + name + "]");
            }
            return k;
        }

        /** How the reference titles the section: {@code [host]}, {@code [[disk]]}, or {@code top level}. */
        public String docTitle() {
            return name.isEmpty() ? "top level" : array ? "[[" + name + "]]" : "[" + name + "]";
        }
    }

    public static final long MAX_VHDX_SIZE = 64 * Units.TIB;
    public static final long MAX_VHD_SIZE = 2040 * Units.GIB;

    private static final Map<String, Section> SECTIONS = new LinkedHashMap<>();

    static {
        section("", false)
            .table("host", true, "host")
            .tables("disk", "disk")
            .tables("qos_policy", "qos_policy")
            .tables("switch", "switch")
            .tables("partition", "partition")
            .tables("peer", "peer");
        section("host", false)
            .add(key("name", Kind.NAME).def("phost"))
            .add(key("data_dir", Kind.PATH).req().note("absolute, or \"${tmp}\""))
            .add(key("management", Kind.STRING).computed("unix:<data_dir>/phost.sock")
                .note("\"unix:/abs/path\" or \"tcp://HOST:PORT\""))
            .add(key("management_token_file", Kind.PATH).note("required for tcp"))
            .add(key("nbd", Kind.STRING).computed("unix:<data_dir>/nbd.sock")
                .note("\"unix:/abs/path\" or \"tcp://127.0.0.1:PORT\""))
            .add(key("vsp_cpus", Kind.INTEGER_ARRAY).def("[]").range(0, 1023))
            .add(key("polling", Kind.ENUM).def("adaptive").allowed("adaptive", "latency", "efficiency"));
        section("disk", true)
            .add(key("name", Kind.NAME).req())
            .add(key("path", Kind.PATH).note("required unless rbd; relative to data_dir; absolute for passthrough"))
            .add(key("format", Kind.ENUM).def("vhdx").allowed("vhdx", "vhd", "raw", "passthrough", "rbd"))
            .table("create", false, "disk.create")
            .table("rbd", false, "disk.rbd")
            .add(key("parent", Kind.PATH).note("differencing only"))
            .add(key("qos_policy", Kind.NAME).note("a [[qos_policy]] name"))
            .add(key("read_only", Kind.BOOLEAN).def("false"))
            .add(key("io_engine", Kind.ENUM).def("auto").allowed("auto", "io_uring", "threads", "inline"))
            .add(key("nbd_export", Kind.BOOLEAN).def("false"))
            .add(key("vhost_user", Kind.BOOLEAN).def("false").note("socket <data_dir>/vhost/<name>.sock"));
        section("disk.create", false)
            .add(key("type", Kind.ENUM).def("dynamic").allowed("fixed", "dynamic", "differencing"))
            .add(key("size", Kind.SIZE).range(Units.MIB, MAX_VHDX_SIZE)
                .note("required unless differencing; vhd at most 2040GiB; multiple of logical_sector"))
            .add(key("block_size", Kind.SIZE).computed("32MiB (vhdx), 2MiB (vhd)").range(Units.MIB, 256 * Units.MIB)
                .note("power of two; not for raw"))
            .add(key("logical_sector", Kind.INTEGER).def("512").allowed("512", "4096")
                .note("vhd, raw: 512 only; differencing: the parent's"))
            .add(key("physical_sector", Kind.INTEGER).computed("4096 (vhdx), 512 (vhd, raw); differencing: the parent's")
                .allowed("512", "4096").note("not below logical_sector; vhd: 512 only"));
        section("disk.rbd", false)
            .add(key("pool", Kind.STRING).req())
            .add(key("image", Kind.STRING).req())
            .add(key("namespace", Kind.STRING).note("RADOS namespace; none = the pool's default"))
            .add(key("cluster_config", Kind.PATH).computed("$CEPH_CONF, else /etc/ceph/ceph.conf").note("absolute"))
            .add(key("client", Kind.STRING).def("admin").note("id without \"client.\""))
            .add(key("keyring", Kind.PATH).note("absolute; none = the one cluster_config names"))
            .add(key("break_lock", Kind.BOOLEAN).def("false"))
            .add(key("connect_timeout", Kind.INTEGER).def("10").range(1, 300).note("seconds"));
        section("qos_policy", true)
            .add(key("name", Kind.NAME).req())
            .add(key("type", Kind.ENUM).def("dedicated").allowed("dedicated", "aggregated"))
            .add(key("min_iops", Kind.INTEGER).def("0").range(0, 1_000_000_000).note("at most max_iops"))
            .add(key("max_iops", Kind.INTEGER).def("0").range(0, 1_000_000_000).note("0 = unlimited"))
            .add(key("max_bandwidth", Kind.BANDWIDTH).def("0").atLeast(0).note("bytes/s; 0 = unlimited"))
            .add(key("normalization_size", Kind.SIZE).def("8KiB").range(512, Units.MIB).note("power of two"))
            .add(key("weight", Kind.INTEGER).def("100").range(1, 10_000));
        section("switch", true)
            .add(key("name", Kind.NAME).req())
            .add(key("type", Kind.ENUM).req().allowed("external", "internal", "private"))
            .add(key("uplink", Kind.STRING).note("external only; it or uplinks is required there"))
            .add(key("uplinks", Kind.STRING_ARRAY).def("[]").note("external only; 2..8 interfaces teamed (switch-embedded teaming); not with uplink"))
            .add(key("allow_management_os", Kind.BOOLEAN).def("false").note("external only"))
            .add(key("enable_iov", Kind.BOOLEAN).def("false").note("external only"))
            .add(key("bandwidth_mode", Kind.ENUM).def("none").allowed("none", "absolute", "weight").note("absolute: NICs reserve min_bandwidth"))
            .add(key("mtu", Kind.INTEGER).def("1500").range(68, 9000).note("jumbo frames up to 9000"))
            .add(key("vmq_workers", Kind.INTEGER).def("0").range(0, 16).note("0 = no VMQ"))
            .add(key("uplink_bandwidth", Kind.BANDWIDTH).def("0").atLeast(0)
                .note("bytes/s out of the uplink or host TAP; not private; 0 = not capped"))
            .add(key("host_address", Kind.STRING).note("internal only; IPv4 CIDR such as 10.91.0.1/24"))
            .add(key("nat", Kind.BOOLEAN).def("false").note("internal only; needs host_address; nftables masquerade"))
            .add(key("nat_prefix", Kind.STRING).note("IPv4 CIDR containing host_address; default: host_address's subnet; needs nat = true"));
        section("partition", true)
            .add(key("name", Kind.NAME).req())
            .add(key("vcpus", Kind.INTEGER).def("1").range(1, 64))
            .add(key("memory", Kind.SIZE).def("256MiB").range(16 * Units.MIB, Units.TIB).note("multiple of 4KiB"))
            .tables("disk", "partition.disk")
            .tables("nic", "partition.nic")
            .add(key("command", Kind.STRING_ARRAY).note("non-empty; not with workload"))
            .add(new KeyBuilder("workload", Kind.TABLE).computed("idle when no command").child("partition.workload"))
            .add(key("autostart", Kind.BOOLEAN).def("true"))
            .add(key("ha", Kind.BOOLEAN).def("false").note("process or VM; needs a [[peer]] and only writable rbd disks"))
            .add(key("cpus", Kind.INTEGER_ARRAY).def("[]").range(0, 1023).note("online CPUs of this host"))
            .add(key("kind", Kind.ENUM).def("process").allowed("process", "vm"))
            .add(key("machine", Kind.ENUM).def("q35").allowed("q35", "pc").note("vm only"))
            .add(key("kernel", Kind.PATH).note("vm only; relative to data_dir; not with firmware"))
            .add(key("initrd", Kind.PATH).note("vm only; needs kernel"))
            .add(key("cmdline", Kind.STRING).def("").note("vm only; needs kernel; printable ASCII, at most 2048 bytes"))
            .add(key("firmware", Kind.ENUM).allowed("uefi", "bios").note("vm only; not with kernel"))
            .add(key("console", Kind.PATH).computed("partitions/<name>.console.log")
                .note("vm only; relative to data_dir"))
            .add(key("on_crash", Kind.ENUM).def("stop").allowed("restart", "stop"))
            .add(key("stop_timeout", Kind.INTEGER).def("30").range(1, 3600).note("seconds; vm only"))
            .add(key("ready_marker", Kind.STRING).note("vm only; 1..64 printable ASCII"));
        section("partition.disk", true)
            .add(key("disk", Kind.NAME).req().note("a [[disk]] name"))
            .add(key("controller", Kind.INTEGER).def("0").range(0, 3))
            .add(key("lun", Kind.INTEGER).computed("lowest free on the controller").range(0, 63))
            .add(key("bus", Kind.ENUM).def("blk").allowed("blk", "scsi")
                .note("vm only: virtio-blk device, or a LUN of the controller's virtio-scsi device"));
        section("partition.nic", true)
            .add(key("switch", Kind.NAME).req().note("a [[switch]] name"))
            .add(key("mac", Kind.MAC).computed("generated").note("unicast, unique"))
            .add(key("vlan_access", Kind.INTEGER).range(1, 4094).note("not with vlan_trunk"))
            .add(key("vlan_trunk", Kind.INTEGER_ARRAY).range(1, 4094))
            .add(key("native_vlan", Kind.INTEGER).range(1, 4094).note("trunk only"))
            .add(key("mac_spoofing", Kind.BOOLEAN).def("false"))
            .add(key("dhcp_guard", Kind.BOOLEAN).def("false"))
            .add(key("router_guard", Kind.BOOLEAN).def("false"))
            .add(key("max_bandwidth", Kind.BANDWIDTH).def("0").atLeast(0).note("bytes/s; 0 = unlimited"))
            .add(key("max_bandwidth_in", Kind.BANDWIDTH).def("0").atLeast(0).note("bytes/s towards the partition; 0 = unlimited"))
            .add(key("min_bandwidth_weight", Kind.INTEGER).def("0").range(0, 100)
                .note("needs the switch's bandwidth_mode = weight"))
            .add(key("min_bandwidth", Kind.BANDWIDTH).def("0").atLeast(0)
                .note("bytes/s reserved, at most 100Gbps; needs the switch's bandwidth_mode = absolute"))
            .add(key("vmq_weight", Kind.INTEGER).def("100").range(0, 100).note("0 = no VMQ"))
            .add(key("iov_weight", Kind.INTEGER).def("0").range(0, 100).note("above 0 needs enable_iov"))
            .add(key("mtu", Kind.INTEGER).computed("the switch's mtu").range(68, 9000).note("at most the switch's mtu"))
            .add(key("port_mirroring", Kind.ENUM).def("none").allowed("none", "source", "destination"))
            .add(key("storm_limit", Kind.INTEGER).def("0").range(0, 100_000_000).note("packets/s; 0 = unlimited"))
            .add(key("max_mac_addresses", Kind.INTEGER).def("1024").range(1, 65_536))
            .add(key("ip_addresses", Kind.STRING_ARRAY).def("[]").note("IPv4, IPv6, \"dhcp\" or \"dhcp6\"; ARP/ND inspection and IP spoofing guard; [] = off"))
            .add(key("acl", Kind.STRING_ARRAY).def("[]").note("rules \"ACTION DIRECTION REMOTE [PROTOCOL[:PORT]] [stateful]\"; [] = allow all"))
            .add(key("queues", Kind.INTEGER).def("1").range(1, NicConfig.MAX_QUEUES)
                .note("vm only: virtio-net queue pairs (multi-queue above 1)"));
        section("partition.workload", false)
            .add(key("kind", Kind.ENUM).req().allowed(Workload.KINDS.stream().sorted().toArray(String[]::new)))
            .add(key("args", Kind.STRING_ARRAY).def("[]").note("checked as the workload's command line"));
        section("peer", true)
            .add(key("name", Kind.NAME).req().note("not this host's name"))
            .add(key("management", Kind.STRING).req().note("\"unix:/abs/path\" or \"tcp://HOST:PORT\""))
            .add(key("token_file", Kind.PATH).note("absolute; required for tcp"))
            .add(key("lease", Kind.INTEGER).def("5").range(2, 300).note("seconds of silence before HA restart"));
    }

    private ConfigSchema() {
    }

    /** Every section in reference order. */
    public static List<Section> sections() {
        return List.copyOf(SECTIONS.values());
    }

    public static Section section(String name) {
        Section s = SECTIONS.get(name);
        if (s == null) {
            throw new IllegalArgumentException("no section [" + name + "]");
        }
        return s;
    }

    /** "a, b or c" of the section's keys, for messages. */
    static String keyList(Section s) {
        return s.keys().keySet().stream().collect(Collectors.joining(", "));
    }

    // ---- builders, used only by the static initializer above ----

    private static SectionBuilder section(String name, boolean array) {
        Map<String, Key> keys = new LinkedHashMap<>();
        SECTIONS.put(name, new Section(name, array, java.util.Collections.unmodifiableMap(keys)));
        return new SectionBuilder(keys);
    }

    private static KeyBuilder key(String name, Kind kind) {
        return new KeyBuilder(name, kind);
    }

    private record SectionBuilder(Map<String, Key> keys) {
        SectionBuilder add(KeyBuilder k) {
            keys.put(k.name, k.build());
            return this;
        }

        SectionBuilder table(String name, boolean required, String child) {
            KeyBuilder k = new KeyBuilder(name, Kind.TABLE).child(child);
            return add(required ? k.req() : k);
        }

        SectionBuilder tables(String name, String child) {
            return add(new KeyBuilder(name, Kind.TABLE_ARRAY).def("[]").child(child));
        }
    }

    private static final class KeyBuilder {
        final String name;
        final Kind kind;
        boolean required;
        String defaultText;
        boolean computed;
        Long min;
        Long max;
        List<String> allowed = List.of();
        String note = "";
        String child;

        KeyBuilder(String name, Kind kind) {
            this.name = name;
            this.kind = kind;
        }

        KeyBuilder req() {
            required = true;
            return this;
        }

        KeyBuilder def(String text) {
            defaultText = text;
            return this;
        }

        KeyBuilder computed(String text) {
            defaultText = text;
            computed = true;
            return this;
        }

        KeyBuilder range(long lo, long hi) {
            min = lo;
            max = hi;
            return this;
        }

        KeyBuilder atLeast(long lo) {
            min = lo;
            return this;
        }

        KeyBuilder allowed(String... values) {
            allowed = List.of(values);
            return this;
        }

        KeyBuilder note(String text) {
            note = text;
            return this;
        }

        KeyBuilder child(String section) {
            child = section;
            return this;
        }

        Key build() {
            return new Key(name, kind, required, defaultText, computed, min, max, allowed, note, child);
        }
    }
}
