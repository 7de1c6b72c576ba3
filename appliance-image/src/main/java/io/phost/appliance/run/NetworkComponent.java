package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.NicConfig;
import io.phost.core.vm.VmDevice;
import io.phost.network.vhost.VhostUserNetPort;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.config.SwitchConfig;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.network.NetworkAdapter;
import io.phost.vswitch.BandwidthMode;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchManager;
import io.phost.vswitch.SwitchSpec;
import io.phost.vswitch.SwitchType;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The virtual switches of appliance.toml and the partitions' synthetic NICs on them. Each NIC becomes a
 * switch port with its VLAN, guards and bandwidth policy, offered to its partition as a netvsc-style VSP.
 *
 * <p>Why one class of about 630 lines: it owns the live switches, ports and NAT rules, and each method is one
 * operation (start, reconfigure, status, metrics) on that one state.
 */
public final class NetworkComponent implements Component, PartitionsComponent.VspSource {
    private static final Logger LOG = System.getLogger("phost.network");
    /** sun_path is 108 bytes with the terminating NUL. */
    private static final int MAX_SOCKET_PATH = 107;

    private final SwitchManager switches = new SwitchManager();
    private final Map<String, NetworkAdapter> adapters = new ConcurrentHashMap<>();
    /** NICs of VM partitions, by port name: vhost-user-net ports QEMU connects to. */
    private final Map<String, VhostUserNetPort> vmNics = new ConcurrentHashMap<>();
    /** {@code host_address} of each internal switch that has one, by switch name (for /status). */
    private final Map<String, String> hostAddresses = new ConcurrentHashMap<>();
    /** NAT of each internal switch with {@code nat = true}, by switch name. */
    private final Map<String, io.phost.vswitch.NatGateway> nats = new ConcurrentHashMap<>();
    private final Map<String, String> natPrefixes = new ConcurrentHashMap<>();
    private Path natState;
    /** Port name → {partition, VM device id} of each VM NIC: whom a link change is told to. */
    private final Map<String, String[]> vmNicIds = new ConcurrentHashMap<>();
    private volatile GuestLink guestLink = (partition, device, up) -> false;
    private Path vhostDir;
    private List<Integer> vspCpus = List.of();
    private final Map<String, long[]> lastPackets = new ConcurrentHashMap<>();
    private final Map<String, double[]> rates = new ConcurrentHashMap<>();
    private final ScheduledExecutorService sampler = Executors.newSingleThreadScheduledExecutor(r ->
        Thread.ofPlatform().daemon().name("switch-stats").unstarted(r));

    private NetworkComponent() {
    }

    public static NetworkComponent start(ApplianceConfig cfg) {
        NetworkComponent c = new NetworkComponent();
        c.vhostDir = cfg.host().dataDir().resolve("vhost");
        c.vspCpus = cfg.host().vspCpus();
        c.switches.polling(cfg.host().polling()); // the switch agents' spin after work, as the channel agents'
        c.natState = cfg.host().dataDir().resolve("nat");
        for (String t : io.phost.vswitch.NatGateway.sweep(c.natState)) { // what a killed run left
            LOG.log(Level.INFO, "nat table removed name=" + t + " reason=\"left by a run that did not stop cleanly\"");
        }
        try {
            for (SwitchConfig s : cfg.switches()) {
                c.addSwitch(s);
            }
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
        io.phost.network.NetnsLeases.sweepStale(io.phost.network.NetnsLeases.DEFAULT_DIR); // a crashed run's leftovers
        c.sampler.scheduleAtFixedRate(c::sample, 1, 1, TimeUnit.SECONDS);
        return c;
    }

    /** Creates a switch (at start, or added by a live config change). */
    void addSwitch(SwitchConfig s) {
        ManagedSwitch sw = switches.create(new SwitchSpec(s.name(), SwitchType.valueOf(s.type().name()),
            s.uplink(), s.allowManagementOs(), s.enableIov(), BandwidthMode.valueOf(s.bandwidthMode().name()),
            s.vmqWorkers(), null, null, s.mtu(), s.uplinks()));
        try {
            if (s.hostAddress() != null && sw.hostTap() != null) {
                addHostAddress(s.name(), sw.hostTap(), s.hostAddress());
                hostAddresses.put(s.name(), s.hostAddress());
                if (s.natPrefix() != null) {
                    nats.put(s.name(), io.phost.vswitch.NatGateway.start(null, sw.hostTap(), s.natPrefix(), natState));
                    natPrefixes.put(s.name(), s.natPrefix());
                }
            }
            if (s.uplinkBandwidth() > 0) {
                sw.capUplink(s.uplinkBandwidth() > Long.MAX_VALUE / 8 ? Long.MAX_VALUE : s.uplinkBandwidth() * 8);
            }
        } catch (RuntimeException e) {
            closeNat(s.name());
            switches.remove(s.name());
            throw e;
        }
        LOG.log(Level.INFO, "switch created name=" + s.name() + " type=" + s.type().name().toLowerCase()
            + (s.uplink() == null ? "" : " uplink=" + String.join("+", s.uplinks()))
            + (sw.hostTap() == null ? "" : " host_tap=" + sw.hostTap())
            + (s.hostAddress() == null ? "" : " host_address=" + s.hostAddress())
            + (s.natPrefix() == null ? "" : " nat=" + s.natPrefix()) + " iov=\"" + sw.iovStatus() + "\""
            + " vmq_workers=" + s.vmqWorkers());
    }

    private void closeNat(String switchName) {
        io.phost.vswitch.NatGateway nat = nats.remove(switchName);
        natPrefixes.remove(switchName);
        if (nat != null) {
            nat.close();
        }
    }

    /** Removes a switch a live config change dropped; refused while a partition's port is on it. */
    void removeSwitch(String name) {
        ManagedSwitch sw = switches.get(name);
        if (sw == null) {
            return;
        }
        List<String> inUse = sw.vswitch().ports().stream().map(io.phost.vswitch.Port::name)
            .filter(n -> adapterOf(n) != null || vmNics.containsKey(n)).toList();
        if (!inUse.isEmpty()) {
            throw new IllegalStateException("switch " + name + " still has ports in use: " + String.join(", ", inUse));
        }
        closeNat(name); // before the TAP goes: exactly our table
        switches.remove(name);
        hostAddresses.remove(name);
        LOG.log(Level.INFO, "switch removed name=" + name);
    }

    /** Removes a removed partition's NIC ports from their switches (a VM's once its QEMU has quit). */
    void detach(PartitionConfig p) {
        for (int i = 0; i < p.nics().size(); i++) {
            if (p.isVm()) {
                detachVmNic(p.name(), i);
                continue;
            }
            NetworkAdapter a = adapters.remove(p.name() + "-nic" + i);
            if (a != null) {
                a.vsp().detach();
            }
        }
    }

    /**
     * Gives NIC {@code nic} of {@code partition} the port settings of {@code n} (a live config change; its switch,
     * MAC and MTU stay). Returns the settings it had, for an undo with {@link #restorePort}.
     */
    PortConfig reconfigurePort(String partition, int nic, NicConfig n) {
        ManagedSwitch sw = switches.get(n.switchName());
        io.phost.vswitch.Port port = sw == null ? null : portNamed(sw, partition + "/" + partition + "-nic" + nic);
        if (port == null) {
            throw new IllegalStateException("partition " + partition + " nic " + nic + " has no port on switch " + n.switchName());
        }
        PortConfig before = port.config();
        configure(sw, port, sw.effective(portConfig(n)).withMtu(before.mtu()));
        return before;
    }

    /** Puts back the settings {@link #reconfigurePort} returned. */
    void restorePort(String partition, int nic, String switchName, PortConfig settings) {
        ManagedSwitch sw = switches.get(switchName);
        io.phost.vswitch.Port port = sw == null ? null : portNamed(sw, partition + "/" + partition + "-nic" + nic);
        if (port != null) {
            configure(sw, port, settings);
        }
    }

    private static io.phost.vswitch.Port portNamed(ManagedSwitch sw, String name) {
        return sw.vswitch().ports().stream().filter(p -> p.name().equals(name)).findFirst().orElse(null);
    }

    /**
     * The one per-port update path (the API's {@code POST /v1/switches/port} and live config changes): the switch
     * applies it on its next duty cycle, well within a second.
     */
    private static void configure(ManagedSwitch sw, io.phost.vswitch.Port port, PortConfig next) {
        sw.reconfigure(port, current -> next);
    }

    /**
     * Gives an internal switch's host TAP its {@code host_address} and brings it up, with {@code ip} as
     * {@code phost guest net} does for a partition's TAP (the kernel adds the subnet's route). The address goes
     * with the TAP when the switch closes.
     */
    static void addHostAddress(String switchName, String tap, String cidr) {
        for (List<String> cmd : List.of(List.of("ip", "addr", "add", cidr, "dev", tap), List.of("ip", "link", "set", tap, "up"))) {
            String out;
            int rc;
            try {
                Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
                out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).strip();
                rc = p.waitFor();
            } catch (IOException e) {
                throw new IllegalStateException("switch " + switchName + ": host_address " + cidr + ": " + e.getMessage(), e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("switch " + switchName + ": interrupted setting host_address", e);
            }
            if (rc != 0) {
                throw new IllegalStateException("switch " + switchName + ": host_address " + cidr + " on " + tap + ": `"
                    + String.join(" ", cmd) + "` failed (exit " + rc + "): " + out);
            }
        }
    }

    @Override
    public List<VirtualServiceProvider> vspsFor(PartitionConfig p) {
        List<VirtualServiceProvider> out = new ArrayList<>();
        for (int i = 0; i < p.nics().size(); i++) {
            out.add(attachNic(p.name(), i, p.nics().get(i)));
        }
        return out;
    }

    /** NIC {@code i} of process partition {@code partition} as a port on its switch; returns the VSP to offer. */
    VirtualServiceProvider attachNic(String partition, int i, NicConfig n) {
        String nicName = partition + "-nic" + i;
        ManagedSwitch sw = switches.get(n.switchName());
        if (sw == null) {
            throw new IllegalStateException("partition " + partition + " nic " + i + ": no switch " + n.switchName());
        }
        NetworkAdapter a = NetworkAdapter.attach(sw, partition, nicName, portConfig(n), n.mtu());
        adapters.put(nicName, a);
        LOG.log(Level.INFO, "vnic attached partition=" + partition + " nic=" + nicName + " switch=" + n.switchName()
            + " mac=" + n.mac() + " data_path=" + a.dataPath() + " sriov=\"" + a.vfStatus() + "\"");
        return a.vsp();
    }

    /** The VSP of NIC {@code i} of {@code partition} (to rescind before {@link #detachNic}), or null. */
    VirtualServiceProvider nicVsp(String partition, int i) {
        NetworkAdapter a = adapters.get(partition + "-nic" + i);
        return a == null ? null : a.vsp();
    }

    /** Takes NIC {@code i} of {@code partition} off its switch (a live removal; the guest was rescinded first). */
    void detachNic(String partition, int i) {
        NetworkAdapter a = adapters.remove(partition + "-nic" + i);
        if (a != null) {
            a.vsp().detach();
            LOG.log(Level.INFO, "vnic detached partition=" + partition + " nic=" + partition + "-nic" + i);
        }
    }

    /**
     * A VM partition's NICs: each a vhost-user-net port on its switch, served on
     * {@code DATA_DIR/vhost/PARTITION.nicN.sock}, with the same port policy as a process partition's NIC.
     */
    @Override
    public List<VmDevice> vmDevicesFor(PartitionConfig p) throws IOException {
        if (!p.isVm() || p.nics().isEmpty()) {
            return List.of();
        }
        List<VmDevice> out = new ArrayList<>();
        for (int i = 0; i < p.nics().size(); i++) {
            out.add(attachVmNic(p.name(), i, p.nics().get(i)));
        }
        return out;
    }

    /** NIC {@code i} of VM partition {@code partition}: its vhost-user-net port listens and is on its switch. */
    VmDevice attachVmNic(String partition, int i, NicConfig n) throws IOException {
        Files.createDirectories(vhostDir);
        String portName = partition + "/" + partition + "-nic" + i;
        Path socket = vhostDir.resolve(partition + ".nic" + i + ".sock");
        if (socket.toString().length() > MAX_SOCKET_PATH) {
            throw new IOException("partition '" + partition + "' nic " + i + ": vhost-user socket path " + socket
                + " is longer than " + MAX_SOCKET_PATH + " bytes; use a shorter data_dir");
        }
        PortConfig pc = portConfig(n);
        if (n.mtu() > 0) {
            pc = pc.withMtu(n.mtu());
        }
        VhostUserNetPort nic = VhostUserNetPort.start(portName, switches.get(n.switchName()), pc, socket, vspCpus, n.queues());
        vmNics.put(portName, nic);
        vmNicIds.put(portName, new String[] {partition, "nic" + i});
        LOG.log(Level.INFO, "vnic attached partition=" + partition + " nic=" + partition + "-nic" + i + " switch="
            + n.switchName() + " mac=" + n.mac() + " data_path=vhost-user-net socket=" + socket);
        return new VmDevice("nic" + i, VmDevice.Type.NET, socket, n.queues(), n.mac().toLowerCase(java.util.Locale.ROOT));
    }

    /** Closes NIC {@code i} of VM partition {@code partition} and takes its port off the switch (QEMU let go first). */
    void detachVmNic(String partition, int i) {
        String portName = partition + "/" + partition + "-nic" + i;
        vmNicIds.remove(portName);
        VhostUserNetPort nic = vmNics.remove(portName);
        if (nic != null) {
            nic.close();
            LOG.log(Level.INFO, "vnic detached partition=" + partition + " nic=" + partition + "-nic" + i);
        }
    }

    /** Tells a VM's guest its NIC's link changed (QMP {@code set_link}); true when the VM was told. */
    @FunctionalInterface
    interface GuestLink {
        boolean set(String partition, String deviceId, boolean up);
    }

    /** Installs how link changes reach VM guests (the partitions component; the default tells nobody). */
    void guestLink(GuestLink g) {
        guestLink = g;
    }

    static PortConfig portConfig(NicConfig n) {
        long mac = 0;
        for (byte b : n.macBytes()) {
            mac = (mac << 8) | (b & 0xff);
        }
        PortConfig c = PortConfig.vnic(mac);
        if (n.vlanAccess() != null) {
            c = c.withAccessVlan(n.vlanAccess());
        } else if (!n.vlanTrunk().isEmpty()) {
            c = c.withTrunk(n.nativeVlan() == null ? 0 : n.nativeVlan(), n.vlanTrunk().stream().mapToInt(Integer::intValue).toArray());
        }
        c = c.withGuards(n.macSpoofing(), n.dhcpGuard(), n.routerGuard());
        // Config weight 0 means "no weight": the switch's default share (1); a reservation (absolute mode) is a weight.
        c = c.withLimits(n.stormLimit(), n.maxBandwidthBitsPerSecond(), n.portWeight(), n.maxMacAddresses());
        c = c.withMirror(io.phost.vswitch.MirrorMode.valueOf(n.mirroring().name()));
        c = c.withMaxBandwidthToPort(n.maxBandwidthInBitsPerSecond());
        c = withIpAddresses(c, n.ipAddresses());
        c = c.withAcls(n.acl().stream().map(io.phost.vswitch.PortAcl::parse).toArray(io.phost.vswitch.PortAcl[]::new));
        return c.withOffloadWeights(n.vmqWeight(), n.iovWeight());
    }

    private long samples;

    /** Per NIC port of {@code partition} (port names are PARTITION/NIC): {rx_bytes, tx_bytes} as the switch counts them. */
    Map<String, long[]> portBytes(String partition) {
        Map<String, long[]> m = new LinkedHashMap<>();
        for (ManagedSwitch sw : switches.all()) {
            sw.counters().forEach((port, c) -> {
                if (port.startsWith(partition + "/")) {
                    m.put(sw.spec().name() + "/" + port.substring(partition.length() + 1),
                        new long[] {c.getOrDefault("rx_bytes", 0L), c.getOrDefault("tx_bytes", 0L)});
                }
            });
        }
        return m;
    }

    private void sample() {
        if (samples++ % 5 == 0) {
            // Namespaces of guests that were killed (their `phost guest net` could not clean up): gone in ~5 s.
            for (String ns : io.phost.network.NetnsLeases.sweepStale(io.phost.network.NetnsLeases.DEFAULT_DIR)) {
                LOG.log(Level.INFO, "netns removed name=" + ns + " reason=\"its guest process is gone\"");
            }
        }
        for (ManagedSwitch sw : switches.all()) {
            sw.counters().forEach((port, counters) -> {
                String key = sw.spec().name() + "/" + port;
                long rx = counters.getOrDefault("rx_packets", 0L);
                long tx = counters.getOrDefault("tx_packets", 0L);
                long[] prev = lastPackets.put(key, new long[] {rx, tx, System.nanoTime()});
                if (prev != null) {
                    double dt = Math.max(1e-3, (System.nanoTime() - prev[2]) / 1e9);
                    rates.put(key, new double[] {(rx - prev[0]) / dt, (tx - prev[1]) / dt});
                }
            });
        }
    }

    @Override
    public String name() {
        return "switches";
    }

    @Override
    public Object status() {
        List<Object> rows = new ArrayList<>();
        for (ManagedSwitch sw : switches.all()) {
            if (sw.counters().isEmpty()) { // a switch nobody is connected to yet is still configured
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("switch", sw.spec().name());
                m.put("type", sw.spec().type().name().toLowerCase());
                m.put("port", null);
                m.put("host_tap", sw.hostTap());
                m.put("host_address", hostAddresses.get(sw.spec().name()));
                m.put("nat", natPrefixes.get(sw.spec().name()));
                rows.add(m);
            }
            sw.counters().forEach((port, counters) -> {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("switch", sw.spec().name());
                m.put("type", sw.spec().type().name().toLowerCase());
                m.put("port", port);
                m.put("host_tap", sw.hostTap());
                m.put("host_address", hostAddresses.get(sw.spec().name()));
                m.put("nat", natPrefixes.get(sw.spec().name()));
                m.put("mtu", mtuOf(sw, port));
                if (sw.team() != null && port.startsWith("uplink:")) {
                    m.put("team", sw.team().status()); // member -> {up, tx_frames}
                }
                io.phost.vswitch.Port live = sw.port(port);
                int flows = live == null ? -1 : live.aclFlows();
                m.put("acl_flows", flows < 0 ? null : flows); // stateful ACL table occupancy (of 4096)
                if (live != null && live.kind() == io.phost.vswitch.PortKind.VNIC) {
                    m.put("dhcp_leases", live.dhcpLeases()); // addresses the IP guard learned by DHCP snooping
                }
                if (live != null) { // the bandwidth policy in force (bytes/s; weight: the scheduler's share)
                    m.put("max_bandwidth", live.config().maxBandwidthBps() / 8);
                    m.put("max_bandwidth_in", live.config().maxBandwidthToPortBps() / 8);
                    m.put("bandwidth_weight", live.weight());
                }
                VhostUserNetPort vmNic = vmNics.get(port);
                if (vmNic != null) {
                    m.put("data_path", "vhost-user-net");
                    m.put("socket", vmNic.socketPath().toString());
                    m.put("connected", vmNic.connected());
                    m.put("link", vmNic.link() ? "up" : "down");
                    m.put("last_error", vmNic.lastError() == null ? "" : vmNic.lastError());
                }
                NetworkAdapter nic = adapterOf(port);
                if (nic != null) {
                    m.put("data_path", nic.dataPath());
                    m.put("sriov", nic.vfStatus());
                    // down while the partition is stopped or crashed: nothing is queued for it until it re-attaches
                    m.put("guest_attached", nic.vsp().guestAttached());
                    m.put("offloads", nic.vsp().offloadHeader() ? "vnet-hdr" : "none");
                    m.put("link", nic.vsp().linkUp() ? "up" : "down");
                    m.put("announcements", nic.vsp().announcements()); // RARPs sent after a move here
                }
                double[] r = rates.get(sw.spec().name() + "/" + port);
                m.put("rx_pps", r == null ? 0.0 : Math.round(r[0]));
                m.put("tx_pps", r == null ? 0.0 : Math.round(r[1]));
                long drops = counters.entrySet().stream().filter(e -> e.getKey().startsWith("drop_")).mapToLong(Map.Entry::getValue).sum();
                m.put("drops", drops);
                m.putAll(counters);
                rows.add(m);
            });
        }
        for (ManagedSwitch sw : switches.all()) {
            if (sw.vmq() == null) {
                continue;
            }
            for (io.phost.vswitch.VmqQueue q : sw.vmq().queues()) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("switch", sw.spec().name());
                m.put("type", sw.spec().type().name().toLowerCase());
                m.put("vmq_queue", q.name());
                m.put("worker", q.owner());
                m.put("cpu", sw.vmq().workerCpu(q.owner()));
                m.put("drained", q.drained());
                rows.add(m);
            }
        }
        return rows;
    }

    /** Told each port change of a partition's NIC, so it is saved in the applied config (a restart keeps it). */
    interface PortChangeListener {
        void changed(String partition, int nic, Map<String, String> query);
    }

    private static final java.util.regex.Pattern NIC_PORT = java.util.regex.Pattern.compile("([^/]+)/\\1-nic(\\d+)");
    private volatile PortChangeListener onPortChange = (p, n, q) -> { };

    void onPortChange(PortChangeListener listener) {
        onPortChange = listener;
    }

    @Override
    public Map<String, java.util.function.Function<String, io.phost.appliance.mgmt.HttpResponse>> routes() {
        return Map.of("POST /v1/switches/port", this::changePort, "POST /v1/partitions/announce", this::announce);
    }

    /**
     * POST /v1/partitions/announce?name=P (a peer that moved P here asks it): each synthetic NIC of P sends a
     * broadcast RARP from its MAC once its guest is attached ({@link io.phost.network.NetVsp#announce}).
     */
    io.phost.appliance.mgmt.HttpResponse announce(String query) {
        String name = io.phost.appliance.util.Query.parse(query).getOrDefault("name", "");
        int nics = 0;
        for (NetworkAdapter a; (a = adapters.get(name + "-nic" + nics)) != null; nics++) {
            a.vsp().announce();
        }
        for (VhostUserNetPort vm; (vm = vmNics.get(name + "/" + name + "-nic" + nics)) != null; nics++) {
            vm.announce(); // as SEND_RARP: a VM started here after a Quick Migration
        }
        if (nics == 0) {
            return io.phost.appliance.mgmt.HttpResponse.text(404, "no partition '" + name + "' with a NIC here\n");
        }
        LOG.log(Level.INFO, "announce partition=" + name + " nics=" + nics);
        return io.phost.appliance.mgmt.HttpResponse.json(io.phost.core.text.Json.write(Map.of("partition", name, "nics", nics)));
    }

    /**
     * Live port change (Set-VMNetworkAdapter / -Vlan on a running host): {@code switch} and {@code port} name the
     * port (as in /status); the settings {@link #portChange} reads change, through {@link ManagedSwitch#reconfigure},
     * before this returns (well within a second), and the answer is the port's new settings. Learned addresses of
     * the port are forgotten, as with any reconfiguration. {@code link=up|down} (partitions' NICs) is the port's
     * admin link state: down drops frames both ways; a VM's virtio-net sees its carrier go (config {@code status},
     * told to QEMU by QMP {@code set_link}), a process partition's synthetic NIC gets an RNDIS media status indication.
     */
    io.phost.appliance.mgmt.HttpResponse changePort(String query) {
        Map<String, String> q = io.phost.appliance.util.Query.parse(query);
        ManagedSwitch sw = q.get("switch") == null ? null : switches.get(q.get("switch"));
        if (sw == null) {
            return io.phost.appliance.mgmt.HttpResponse.text(404, "no switch '" + q.get("switch") + "'\n");
        }
        io.phost.vswitch.Port port = q.get("port") == null ? null : sw.port(q.get("port"));
        if (port == null) {
            return io.phost.appliance.mgmt.HttpResponse.text(404, "no port '" + q.get("port") + "' on switch '"
                + sw.spec().name() + "'\n");
        }
        VhostUserNetPort vmNic = vmNics.get(port.name());
        NetworkAdapter vmbusNic = adapterOf(port.name());
        Boolean linkUp = null;
        if (q.containsKey("link")) {
            String l = q.get("link");
            if (!"up".equals(l) && !"down".equals(l)) {
                return io.phost.appliance.mgmt.HttpResponse.text(400, "bad port setting: link must be up or down, not '" + l + "'\n");
            }
            if (vmNic == null && vmbusNic == null) {
                return io.phost.appliance.mgmt.HttpResponse.text(400, "bad port setting: link applies to partitions' NICs "
                    + "(VMBus synthetic NICs and vhost-user-net ports) only; '" + port.name() + "' is neither\n");
            }
            linkUp = "up".equals(l);
        }
        java.util.function.UnaryOperator<PortConfig> change;
        try {
            change = portChange(q, sw.spec().name(), sw.spec().bandwidthMode());
            change.apply(port.config()); // every value is checked before the switch sees it
        } catch (IllegalArgumentException | ArithmeticException e) {
            return io.phost.appliance.mgmt.HttpResponse.text(400, "bad port setting: " + e.getMessage() + "\n");
        }
        PortConfig next = sw.reconfigure(port, change);
        boolean guestTold = false;
        if (linkUp != null && vmbusNic != null) {
            // An RNDIS media status indication: the partition's TAP loses (or regains) its carrier.
            vmbusNic.vsp().setLinkUp(linkUp);
            guestTold = vmbusNic.vsp().guestAttached();
        } else if (linkUp != null) {
            vmNic.link(linkUp);
            String[] id = vmNicIds.get(port.name());
            try {
                guestTold = id != null && guestLink.set(id[0], id[1], linkUp);
            } catch (RuntimeException e) { // QEMU gone or slow: the port's state stands, the guest learns it at restart
                LOG.log(Level.WARNING, "link change not told to the guest port=" + port.name() + ": " + e.getMessage());
            }
        }
        LOG.log(Level.INFO, "port changed switch=" + sw.spec().name() + " port=" + port.name() + " query=\"" + query + "\"");
        java.util.regex.Matcher nic = NIC_PORT.matcher(port.name());
        if (nic.matches()) {
            onPortChange.changed(nic.group(1), Integer.parseInt(nic.group(2)), q);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("switch", sw.spec().name());
        m.put("port", port.name());
        m.put("vlan_access", next.vlanMode() == io.phost.vswitch.VlanMode.ACCESS ? next.accessVlan() : 0);
        m.put("mac_spoofing", next.macSpoofing());
        m.put("dhcp_guard", next.dhcpGuard());
        m.put("router_guard", next.routerGuard());
        m.put("max_bandwidth", next.maxBandwidthBps() / 8);
        m.put("max_bandwidth_in", next.maxBandwidthToPortBps() / 8);
        m.put("min_bandwidth_weight", next.minBandwidthWeight());
        m.put("bandwidth_weight", port.weight()); // in absolute mode: one unit per started Mbit/s of min_bandwidth
        m.put("acl", java.util.Arrays.stream(next.acls()).map(Object::toString).toList());
        m.put("ip_addresses", ipAddressTexts(next));
        if (vmNic != null) {
            m.put("link", vmNic.link() ? "up" : "down");
        } else if (vmbusNic != null) {
            m.put("link", vmbusNic.vsp().linkUp() ? "up" : "down");
        }
        if (linkUp != null) {
            m.put("guest_notified", guestTold);
        }
        return io.phost.appliance.mgmt.HttpResponse.json(io.phost.core.text.Json.pretty(m));
    }

    /**
     * The change a {@code POST /v1/switches/port} query asks for, as a function of the port's current config:
     * {@code vlan_access}, {@code mac_spoofing}, {@code dhcp_guard}, {@code router_guard}, {@code max_bandwidth},
     * {@code max_bandwidth_in} (bandwidths as in the config: bytes/s or "100Mbps"), {@code min_bandwidth_weight}
     * (0..100, 0 = the default share 1; above 0 only on a switch in weight mode), {@code min_bandwidth} (a reservation,
     * only in absolute mode, at most 100Gbps; it becomes the port's weight, {@link PortConfig#absoluteWeight}),
     * {@code acl} (rules as in the NIC key, separated by commas; empty = none) and {@code ip_addresses}
     * (comma-separated IPv4/IPv6; empty = no IP guard). Keys not given keep their value. Throws
     * IllegalArgumentException naming a bad field, as the config's validation does.
     */
    static java.util.function.UnaryOperator<PortConfig> portChange(Map<String, String> q, String switchName,
                                                                   BandwidthMode mode) {
        Long maxBandwidth = bandwidth(q, "max_bandwidth");
        Long maxBandwidthIn = bandwidth(q, "max_bandwidth_in");
        Long minBandwidth = bandwidth(q, "min_bandwidth");
        Integer weight = null;
        if (q.containsKey("min_bandwidth_weight")) {
            weight = integer(q, "min_bandwidth_weight");
            if (weight < 0 || weight > 100) {
                throw new IllegalArgumentException("min_bandwidth_weight must be 0..100, not " + weight);
            }
            if (weight > 0 && mode != BandwidthMode.WEIGHT) {
                throw new IllegalArgumentException("min_bandwidth_weight: switch '" + switchName + "' has bandwidth_mode = \""
                    + mode.name().toLowerCase(java.util.Locale.ROOT) + "\"; weights need \"weight\"");
            }
            weight = Math.max(1, weight);
        }
        if (minBandwidth != null) {
            if (minBandwidth > 0 && mode != BandwidthMode.ABSOLUTE) {
                throw new IllegalArgumentException("min_bandwidth: switch '" + switchName + "' has bandwidth_mode = \""
                    + mode.name().toLowerCase(java.util.Locale.ROOT) + "\"; reservations need \"absolute\"");
            }
            if (minBandwidth > NicConfig.MAX_MIN_BANDWIDTH) {
                throw new IllegalArgumentException("min_bandwidth: a reservation is at most 100Gbps (12500000000 bytes/s), not "
                    + minBandwidth + " bytes/s");
            }
            weight = minBandwidth == 0 ? 1 : PortConfig.absoluteWeight(minBandwidth * 8);
        }
        Integer newWeight = weight;
        return current -> {
            PortConfig c = current;
            if (q.containsKey("vlan_access")) {
                int v = Integer.parseInt(q.get("vlan_access"));
                c = v == 0 ? c.withUntagged() : c.withAccessVlan(v);
            }
            if (q.containsKey("mac_spoofing") || q.containsKey("dhcp_guard") || q.containsKey("router_guard")) {
                c = c.withGuards(bool(q, "mac_spoofing", c.macSpoofing()), bool(q, "dhcp_guard", c.dhcpGuard()),
                    bool(q, "router_guard", c.routerGuard()));
            }
            if (maxBandwidth != null) {
                c = c.withLimits(c.stormLimitPps(), maxBandwidth * 8, c.minBandwidthWeight(), c.maxMacAddresses());
            }
            if (maxBandwidthIn != null) {
                c = c.withMaxBandwidthToPort(maxBandwidthIn * 8);
            }
            if (newWeight != null) {
                c = c.withLimits(c.stormLimitPps(), c.maxBandwidthBps(), newWeight, c.maxMacAddresses());
            }
            if (q.containsKey("acl")) {
                try {
                    c = c.withAcls(list(q.get("acl")).stream().map(io.phost.vswitch.PortAcl::parse)
                        .toArray(io.phost.vswitch.PortAcl[]::new));
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("acl: " + e.getMessage(), e);
                }
            }
            if (q.containsKey("ip_addresses")) {
                List<String> ips = list(q.get("ip_addresses"));
                for (String ip : ips) {
                    if (!ip.equals("dhcp") && !ip.equals("dhcp6") && (ip.indexOf(':') >= 0 ? !NicConfig.isUnicastIpv6(ip) : !NicConfig.isUnicastIpv4(ip))) {
                        throw new IllegalArgumentException("ip_addresses: '" + ip + "' is not a unicast IPv4 or IPv6 address nor dhcp / dhcp6");
                    }
                }
                c = withIpAddresses(c, ips);
            }
            return c;
        };
    }

    /** A bandwidth query value in bytes/s (an integer or "100Mbps", as in the config), or null when not given. */
    private static Long bandwidth(Map<String, String> q, String key) {
        String v = q.get(key);
        if (v == null) {
            return null;
        }
        try {
            long bytes = io.phost.appliance.config.Units.parseBandwidth(v);
            if (bytes > Long.MAX_VALUE / 8) {
                throw new IllegalArgumentException(key + ": '" + v + "' is too large");
            }
            return bytes;
        } catch (io.phost.appliance.config.Units.UnitException e) {
            throw new IllegalArgumentException(key + ": " + e.getMessage(), e);
        }
    }

    private static int integer(Map<String, String> q, String key) {
        try {
            return Integer.parseInt(q.get(key).strip());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be an integer, not '" + q.get(key) + "'", e);
        }
    }

    private static List<String> list(String commaSeparated) {
        return java.util.Arrays.stream(commaSeparated.split(",")).map(String::strip).filter(x -> !x.isEmpty()).toList();
    }

    private static PortConfig withIpAddresses(PortConfig c, List<String> ips) {
        // "dhcp" is 0.0.0.0 in the list: the IPv4 guard is on and allows what DHCP leases (snooped), 0.0.0.0 always
        // passes. "dhcp6" is :: likewise for IPv6 (DHCPv6 REPLYs snooped; :: is DAD's source and always passes).
        return c.withIpAddresses(ips.stream().filter(ip -> ip.indexOf(':') < 0 && !ip.equals("dhcp6"))
                .mapToInt(ip -> ip.equals("dhcp") ? 0 : NicConfig.ipv4(ip)).toArray())
            .withIpv6Addresses(ips.stream().filter(ip -> ip.indexOf(':') >= 0 || ip.equals("dhcp6"))
                .flatMapToLong(ip -> ip.equals("dhcp6") ? java.util.stream.LongStream.of(0, 0)
                    : java.util.Arrays.stream(PortConfig.ipv6(ip))).toArray());
    }

    private static List<String> ipAddressTexts(PortConfig c) {
        List<String> out = new ArrayList<>();
        for (int ip : c.ipAddresses()) {
            out.add(ip == 0 ? "dhcp" : (ip >>> 24) + "." + (ip >>> 16 & 0xff) + "." + (ip >>> 8 & 0xff) + "." + (ip & 0xff));
        }
        long[] v6 = c.ipv6Addresses();
        for (int i = 0; i + 1 < v6.length; i += 2) {
            if ((v6[i] | v6[i + 1]) == 0) {
                out.add("dhcp6");
                continue;
            }
            byte[] b = java.nio.ByteBuffer.allocate(16).putLong(v6[i]).putLong(v6[i + 1]).array();
            try {
                out.add(java.net.InetAddress.getByAddress(b).getHostAddress());
            } catch (java.net.UnknownHostException e) {
                throw new IllegalStateException(e); // 16 bytes is always an address
            }
        }
        return out;
    }

    private static boolean bool(Map<String, String> q, String key, boolean current) {
        String v = q.get(key);
        if (v == null) {
            return current;
        }
        if (!v.equals("true") && !v.equals("false")) {
            throw new IllegalArgumentException(key + " must be true or false, not '" + v + "'");
        }
        return v.equals("true");
    }

    /** The switch a named port is on (for live changes and VMQ views), or null. */
    ManagedSwitch switchNamed(String name) {
        return switches.get(name);
    }

    private NetworkAdapter adapterOf(String port) {
        for (NetworkAdapter a : adapters.values()) {
            if (a.vsp().port().name().equals(port)) {
                return a;
            }
        }
        return null;
    }

    private static Integer mtuOf(ManagedSwitch sw, String port) {
        for (var p : sw.vswitch().ports()) {
            if (p.name().equals(port)) {
                return p.mtu() == 0 ? sw.spec().mtu() : p.mtu();
            }
        }
        return null;
    }

    @Override
    public void metrics(Metrics m) {
        for (ManagedSwitch sw : switches.all()) {
            sw.allCounters().forEach((port, counters) -> counters.forEach((k, v) ->
                m.counter("phost_vswitch_" + k, "vswitch port counter " + k, v, "switch", sw.spec().name(), "port", port)));
            if (sw.vmq() != null) {
                for (io.phost.vswitch.VmqQueue q : sw.vmq().queues()) {
                    // queue -> worker -> CPU: the labels say where the queue is drained, the value how much
                    m.counter("phost_vswitch_vmq_drained_frames", "frames drained from a VMQ receive queue by its worker",
                        q.drained(), "switch", sw.spec().name(), "queue", q.name(), "worker", Integer.toString(q.owner()),
                        "cpu", Integer.toString(sw.vmq().workerCpu(q.owner())));
                }
            }
        }
    }

    @Override
    public void close() {
        sampler.shutdownNow();
        vmNics.values().forEach(VhostUserNetPort::close);
        nats.values().forEach(io.phost.vswitch.NatGateway::close); // before the TAP goes: exactly our tables
        nats.clear();
        switches.close();
        io.phost.network.NetnsLeases.sweepStale(io.phost.network.NetnsLeases.DEFAULT_DIR);
    }
}
