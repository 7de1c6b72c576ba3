package io.phost.appliance.config;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The appliances this one shares Ceph RBD disks with ({@code [[peer]]}) and the partitions another appliance
 * restarts when this one dies ({@code [[partition]] ha = true}). See docs/cluster.md.
 *
 * @param peers        every {@code [[peer]]} in file order; empty when the appliance stands alone
 * @param haPartitions names of the partitions with {@code ha = true}
 */
public record ClusterConfig(List<Peer> peers, Set<String> haPartitions) {
    public static final ClusterConfig NONE = new ClusterConfig(List.of(), Set.of());

    public ClusterConfig {
        peers = List.copyOf(peers);
        haPartitions = Set.copyOf(haPartitions);
    }

    /**
     * {@code [[peer]]}: another appliance on the same Ceph cluster.
     *
     * @param management    its management endpoint ({@code unix:/path} or {@code tcp://HOST:PORT})
     * @param tokenFile     the file holding its bearer token (tcp), or null
     * @param leaseSeconds  how long it may stay silent before this appliance counts it dead (HA restart)
     */
    public record Peer(String name, String management, Path tokenFile, int leaseSeconds) {
    }

    /** True when the appliance has peers: RBD disks of process partitions then follow their partition's lock. */
    public boolean clustered() {
        return !peers.isEmpty();
    }

    public Optional<Peer> peer(String name) {
        return peers.stream().filter(p -> p.name().equals(name)).findFirst();
    }
}
