package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import io.phost.appliance.config.PartitionBinder.PartitionDraft;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.tomlj.TomlPosition;
import org.tomlj.TomlTable;

import static io.phost.appliance.config.BindSupport.unique;

/**
 * Turns a parsed TOML document into an {@link ApplianceConfig}: per-key checks through {@link TomlNode}, then
 * the checks across keys and tables (references, duplicates, conflicting options). Collects every error; returns
 * null when there was any.
 */
final class ConfigBinder implements TomlNode.Errors {
    private final String file;
    private final Path source;
    private final List<ConfigError> errors;
    private final DiskBinder diskBinder = new DiskBinder();

    ConfigBinder(String file, Path source, List<ConfigError> errors) {
        this.file = file;
        this.source = source;
        this.errors = errors;
    }

    @Override
    public void add(TomlPosition position, String keyPath, Reason reason, String message) {
        errors.add(new ConfigError(file, position.line(), position.column(), keyPath, reason, message));
    }

    ApplianceConfig bind(TomlTable document) {
        int before = errors.size();
        TomlNode root = new TomlNode(this, document, "", TomlPosition.positionAt(1, 1), ConfigSchema.section(""));
        TomlNode hostNode = root.table("host");
        HostConfig host = hostNode == null ? null : HostBinder.host(hostNode);

        Map<String, Defined<QosPolicyConfig>> policies = new LinkedHashMap<>();
        for (TomlNode n : root.tables("qos_policy")) {
            QosPolicyConfig q = DiskBinder.qosPolicy(n);
            String name = n.string("name");
            if (name != null && unique(policies, name, n, "QoS policy")) {
                policies.put(name, new Defined<>(q, n));
            }
        }
        Map<String, Defined<DiskConfig>> disks = new LinkedHashMap<>();
        for (TomlNode n : root.tables("disk")) {
            DiskConfig d = diskBinder.disk(n, policies.keySet(), host);
            String name = n.string("name");
            if (name != null && unique(disks, name, n, "disk")) {
                disks.put(name, new Defined<>(d, n));
            }
        }
        diskBinder.checkDiskFiles(host, hostNode, disks);
        Map<String, Defined<SwitchConfig>> switches = new LinkedHashMap<>();
        for (TomlNode n : root.tables("switch")) {
            SwitchConfig s = SwitchBinder.switchConfig(n);
            String name = n.string("name");
            if (name != null && unique(switches, name, n, "switch")) {
                switches.put(name, new Defined<>(s, n));
            }
        }
        Map<String, Defined<PartitionDraft>> partitions = new LinkedHashMap<>();
        Map<String, String> macOwners = new HashMap<>();
        Map<String, String> writableDiskOwner = new HashMap<>();
        for (TomlNode n : root.tables("partition")) {
            String name = n.string("name");
            PartitionDraft p = PartitionBinder.partition(n, name, disks, switches, macOwners, writableDiskOwner);
            if (name != null && unique(partitions, name, n, "partition")) {
                partitions.put(name, new Defined<>(p, n));
            }
        }
        ClusterConfig cluster = HostBinder.cluster(root, host, disks);
        if (errors.size() > before) {
            return null;
        }
        if (host == null || anyMissing(policies) || anyMissing(disks) || anyMissing(switches) || anyMissing(partitions)) {
            // Every rejection above records an error; a silent one would drop part of the appliance.
            throw new IllegalStateException("config rejected without an error message");
        }
        List<PartitionDraft> drafts = values(partitions);
        NicBinder.assignMacs(host, drafts, macOwners);
        List<PartitionConfig> built = new ArrayList<>(drafts.size());
        for (PartitionDraft p : drafts) {
            built.add(p.build());
        }
        return new ApplianceConfig(source, host, values(disks), values(policies), values(switches), built, cluster);
    }

    /** The first [[qos_policy]] of {@code document} and nothing else (for the management API); null on errors. */
    QosPolicyConfig bindPolicy(TomlTable document) {
        TomlNode root = new TomlNode(this, document, "", TomlPosition.positionAt(1, 1), ConfigSchema.section(""));
        List<TomlNode> tables = root.tables("qos_policy");
        return tables.size() == 1 ? DiskBinder.qosPolicy(tables.getFirst()) : null;
    }

    private static boolean anyMissing(Map<String, ? extends Defined<?>> m) {
        return m.values().stream().anyMatch(d -> d.value() == null);
    }

    private static <T> List<T> values(Map<String, Defined<T>> m) {
        List<T> out = new ArrayList<>(m.size());
        for (Defined<T> d : m.values()) {
            out.add(d.value());
        }
        return out;
    }
}
