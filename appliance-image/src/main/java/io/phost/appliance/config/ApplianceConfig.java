package io.phost.appliance.config;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * A whole appliance as described by one {@code appliance.toml}, fully validated: every name is unique, every
 * reference resolves, every number is in range. Built only by {@link ConfigLoader}.
 *
 * @param source where it was read from (a file, or a pseudo path such as {@code <demo>}); informative only
 */
public record ApplianceConfig(Path source, HostConfig host, List<DiskConfig> disks, List<QosPolicyConfig> qosPolicies,
                              List<SwitchConfig> switches, List<PartitionConfig> partitions, ClusterConfig cluster) {

    /** An appliance without peers. */
    public ApplianceConfig(Path source, HostConfig host, List<DiskConfig> disks, List<QosPolicyConfig> qosPolicies,
                           List<SwitchConfig> switches, List<PartitionConfig> partitions) {
        this(source, host, disks, qosPolicies, switches, partitions, ClusterConfig.NONE);
    }

    public ApplianceConfig {
        Objects.requireNonNull(source, "source");
        Objects.requireNonNull(host, "host");
        disks = List.copyOf(disks);
        qosPolicies = List.copyOf(qosPolicies);
        switches = List.copyOf(switches);
        partitions = List.copyOf(partitions);
        cluster = cluster == null ? ClusterConfig.NONE : cluster;
    }

    public Optional<DiskConfig> disk(String name) {
        return disks.stream().filter(d -> d.name().equals(name)).findFirst();
    }

    public Optional<QosPolicyConfig> qosPolicy(String name) {
        return qosPolicies.stream().filter(q -> q.name().equals(name)).findFirst();
    }

    /** The switch of that name ({@code switch} is a Java keyword, hence the longer method name). */
    public Optional<SwitchConfig> switchConfig(String name) {
        return switches.stream().filter(s -> s.name().equals(name)).findFirst();
    }

    public Optional<PartitionConfig> partition(String name) {
        return partitions.stream().filter(p -> p.name().equals(name)).findFirst();
    }

    /** The QoS policy a disk names, if any. */
    public Optional<QosPolicyConfig> qosPolicyOf(DiskConfig disk) {
        return disk.qosPolicy() == null ? Optional.empty() : qosPolicy(disk.qosPolicy());
    }

    /** Every place a disk is attached, as (partition, attachment) pairs in file order. */
    public List<PartitionConfig> partitionsUsing(DiskConfig disk) {
        List<PartitionConfig> out = new ArrayList<>();
        for (PartitionConfig p : partitions) {
            if (p.disks().stream().anyMatch(a -> a.disk().equals(disk.name()))) {
                out.add(p);
            }
        }
        return out;
    }

    /** True when {@code host.data_dir} is the {@code ${tmp}} placeholder that the runner must replace. */
    public boolean needsDataDir() {
        return host.dataDirIsPlaceholder();
    }

    /**
     * The same appliance with another data directory (the runner gives the embedded demo a fresh temporary
     * directory this way). A management address that was defaulted from the old data dir moves along.
     */
    public ApplianceConfig withDataDir(Path dataDir) {
        return new ApplianceConfig(source, host.withDataDir(dataDir), disks, qosPolicies, switches, partitions, cluster);
    }

    /** This config with every internal switch made private (no host TAP): the demo run without CAP_NET_ADMIN. */
    public ApplianceConfig withoutHostVnics() {
        List<SwitchConfig> s = switches.stream()
            .map(sw -> sw.type() == SwitchConfig.Type.INTERNAL ? sw.asPrivate() : sw).toList();
        return new ApplianceConfig(source, host, disks, qosPolicies, s, partitions, cluster);
    }
}
