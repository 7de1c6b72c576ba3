package io.phost.vswitch;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.agrona.concurrent.AgentRunner;

/**
 * A running switch as the appliance sees it: the {@link VSwitch}, the agent thread that owns it, its uplink
 * (AF_PACKET) and management-OS TAP when the type calls for them, VMQ workers, and the SR-IOV state. All
 * methods are thread-safe; changes run on the switch's thread.
 */
public final class ManagedSwitch implements AutoCloseable {
    private final SwitchSpec spec;
    private final VSwitch sw;
    private final SwitchAgent agent;
    private final AgentRunner runner;
    private final Vmq vmq;
    private final SriovUplink sriov;
    private final String iovStatus;
    private final List<AutoCloseable> devices = new ArrayList<>();
    private final Thread rebalancer;
    private String hostTap;
    private TeamUplink team;

    private ManagedSwitch(SwitchSpec spec, io.phost.core.vmbus.PollingMode polling) {
        this.spec = spec;
        this.sw = new VSwitch(spec.name(), spec.type());
        this.agent = new SwitchAgent(sw, polling);
        SriovUplink iov = null;
        String status = "SR-IOV not requested";
        try {
            if (spec.type() == SwitchType.EXTERNAL) {
                if (spec.teamed()) {
                    TeamUplink up = TeamUplink.open(spec.uplinks(), spec.sysfsRoot());
                    devices.add(up);
                    team = up;
                    agent.submit(s -> s.addPort("uplink:" + String.join("+", spec.uplinks()), PortKind.UPLINK,
                        PortConfig.uplink(), up, up)).join();
                } else {
                    PacketSocketPort up = PacketSocketPort.open(spec.uplink());
                    devices.add(up);
                    agent.submit(s -> s.addPort("uplink:" + spec.uplink(), PortKind.UPLINK, PortConfig.uplink(), up, up)).join();
                }
                if (spec.enableIov()) {
                    String why = SriovUplink.whyUnused(spec.sysfsRoot(), spec.uplink());
                    if (why == null) {
                        iov = SriovUplink.probe(spec.sysfsRoot(), spec.uplink());
                        status = "SR-IOV available: " + iov.totalVfs() + " VFs on " + spec.uplink();
                    } else {
                        status = why;
                    }
                }
            } else if (spec.enableIov()) {
                status = "SR-IOV unused: only an external switch has a physical uplink";
            }
            if (spec.hasHostPort()) {
                TapPort host = openHostTap(spec);
                hostTap = host.name();
                if (spec.mtu() != PortConfig.DEFAULT_MTU) {
                    host.device().setMtu(spec.mtu());
                }
                devices.add(host);
                agent.submit(s -> s.addPort("host:" + host.name(), PortKind.HOST, PortConfig.uplink(), host, host)).join();
            }
        } catch (RuntimeException e) {
            closeDevices();
            throw e;
        }
        this.sriov = iov;
        this.iovStatus = status;
        this.vmq = spec.vmqWorkers() > 0 ? new Vmq(spec.vmqWorkers()) : null;
        if (vmq != null) {
            vmq.start();
            // Dynamic VMQ: re-measure queue load and move a queue between workers at most twice a second.
            rebalancer = Thread.ofPlatform().daemon().name("vmq-rebalance-" + spec.name()).start(() -> {
                while (!Thread.currentThread().isInterrupted()) {
                    try {
                        Thread.sleep(500);
                    } catch (InterruptedException e) {
                        return;
                    }
                    vmq.rebalance();
                }
            });
        } else {
            rebalancer = null;
        }
        this.runner = new AgentRunner(agent.idleStrategy(), Throwable::printStackTrace, null, agent);
        AgentRunner.startOnThread(runner);
    }

    /** The TAP named by the spec, or, when another process holds that name (EBUSY), a per-process fallback. */
    private static TapPort openHostTap(SwitchSpec spec) {
        try {
            return TapPort.open(spec.hostTapName(), true);
        } catch (io.phost.core.sys.NativeException e) {
            if (e.errno() != io.phost.core.sys.Errno.EBUSY || spec.hostTap() != null) {
                throw e;
            }
            return TapPort.open(spec.hostTapFallbackName(ProcessHandle.current().pid()), true);
        }
    }

    /**
     * Caps what the switch sends out of its uplink (external) or, without one, its host TAP (internal) at
     * {@code bitsPerSecond}, shared among the ports sending there by their min-bandwidth weights (the uplink's
     * capacity, which the switch cannot know by itself). Applied on the switch thread before this returns.
     */
    public void capUplink(long bitsPerSecond) {
        try {
            submitCap(bitsPerSecond).join();
        } catch (java.util.concurrent.CompletionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : e;
        }
    }

    private java.util.concurrent.CompletableFuture<Void> submitCap(long bitsPerSecond) {
        return agent.submit(s -> {
            Port target = null;
            for (Port p : s.ports()) {
                if (p.kind() == PortKind.UPLINK || (p.kind() == PortKind.HOST && target == null)) {
                    target = p;
                }
            }
            if (target == null) {
                throw new IllegalStateException(spec.name() + " has neither an uplink nor a host port to cap");
            }
            s.configure(target, target.config().withMaxBandwidthToPort(bitsPerSecond));
        });
    }

    /** The uplink team (switch-embedded teaming), or null when the switch has one uplink or none. */
    public TeamUplink team() {
        return team;
    }

    /** The management-OS TAP's actual name (for /status), or null when the switch has none. */
    public String hostTap() {
        return hostTap;
    }

    public static ManagedSwitch create(SwitchSpec spec) {
        return create(spec, io.phost.core.vmbus.PollingMode.ADAPTIVE);
    }

    /** A switch whose agent spins after work as {@code polling} says ({@code [host] polling}). */
    public static ManagedSwitch create(SwitchSpec spec, io.phost.core.vmbus.PollingMode polling) {
        return new ManagedSwitch(spec, polling);
    }

    public SwitchSpec spec() {
        return spec;
    }

    public VSwitch vswitch() {
        return sw;
    }

    public SwitchAgent agent() {
        return agent;
    }

    /** The SR-IOV uplink, or null (see {@link #iovStatus()} for why). */
    public SriovUplink sriov() {
        return sriov;
    }

    public String iovStatus() {
        return iovStatus;
    }

    /** The config with the switch's bandwidth mode applied (NONE: every weight 1). */
    public PortConfig effective(PortConfig c) {
        if (spec.bandwidthMode() == BandwidthMode.NONE && c.minBandwidthWeight() != 1) {
            return c.withLimits(c.stormLimitPps(), c.maxBandwidthBps(), 1, c.maxMacAddresses());
        }
        return c;
    }

    /** Attaches a vNIC whose frames come from {@code source} and go to {@code sink} (through VMQ if enabled). */
    public Port attach(String name, PortConfig config, FrameSink sink, FrameSource source) {
        FrameSink egress = vmq == null ? sink : vmq.attach(name, config.vmqWeight(), sink);
        PortConfig c = effective(config);
        Port[] p = new Port[1];
        agent.submit(s -> p[0] = s.addPort(name, PortKind.VNIC, c, egress, source)).join();
        return p[0];
    }

    /** A "tap port": a TAP device (to be moved into a namespace by the caller) as a vNIC. */
    public Port attachTap(String name, PortConfig config, String tapName, boolean offloads) {
        TapPort tap = TapPort.open(tapName, offloads);
        synchronized (devices) {
            devices.add(tap);
        }
        return attach(name, config, tap, tap);
    }

    /** The port named {@code name} (as in /status), or null. */
    public Port port(String name) {
        for (Port p : sw.ports()) {
            if (p.name().equals(name)) {
                return p;
            }
        }
        return null;
    }

    /**
     * Changes a running port's policy (Set-VMNetworkAdapter on a running host): {@code change} maps the port's current
     * config to the new one; the switch's bandwidth mode is applied and the result takes effect on the switch thread
     * before this returns (VLAN, guards, ACLs, addresses, bandwidth and weight alike). Learned addresses of the port are
     * forgotten; flows a stateful ACL admitted survive while a stateful rule remains. Returns the config now in force.
     */
    public PortConfig reconfigure(Port port, java.util.function.UnaryOperator<PortConfig> change) {
        PortConfig[] applied = new PortConfig[1];
        try {
            agent.submit(s -> {
                PortConfig next = effective(change.apply(port.config()));
                s.configure(port, next);
                applied[0] = next;
            }).join();
        } catch (java.util.concurrent.CompletionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : e;
        }
        return applied[0];
    }

    public void detach(Port p) {
        agent.submit(s -> s.removePort(p)).join();
    }

    /** Per-port counters with every drop reason (zeros too), for /metrics. */
    public Map<String, Map<String, Long>> allCounters() {
        Map<String, Map<String, Long>> m = new LinkedHashMap<>();
        for (Port p : sw.ports()) {
            m.put(p.name(), p.counters().all());
        }
        return m;
    }

    /** Per-port counters for /status: port name to counter name to value. */
    public Map<String, Map<String, Long>> counters() {
        Map<String, Map<String, Long>> m = new LinkedHashMap<>();
        for (Port p : sw.ports()) {
            m.put(p.name(), withUplinkDrops(p, p.counters().snapshot()));
        }
        return m;
    }

    /**
     * {@code counters} plus, for an uplink port, {@code uplink_rx_drops}: frames its AF_PACKET socket lost before
     * the switch saw them (no free ring slot, no room on the socket's queue, too long), which no port counter sees.
     */
    private static Map<String, Long> withUplinkDrops(Port p, Map<String, Long> counters) {
        if (p.source() instanceof PacketSocketPort u) {
            counters.put("uplink_rx_drops", u.receiveDrops());
        } else if (p.source() instanceof TeamUplink t) {
            counters.put("uplink_rx_drops", t.receiveDrops());
        }
        return counters;
    }

    /** Prometheus text lines for /metrics. */
    public String metrics() {
        StringBuilder sb = new StringBuilder();
        for (Port p : sw.ports()) {
            for (Map.Entry<String, Long> e : withUplinkDrops(p, p.counters().all()).entrySet()) {
                sb.append("phost_vswitch_").append(e.getKey().toLowerCase(Locale.ROOT))
                    .append("{switch=\"").append(spec.name()).append("\",port=\"").append(p.name()).append("\"} ")
                    .append(e.getValue()).append('\n');
            }
        }
        return sb.toString();
    }

    private void closeDevices() {
        synchronized (devices) {
            for (AutoCloseable d : devices.reversed()) {
                try {
                    d.close();
                } catch (Exception ignored) {
                    // best effort: the fd is gone with the process anyway
                }
            }
            devices.clear();
        }
    }

    @Override
    public void close() {
        if (runner != null) {
            runner.close();
        }
        if (rebalancer != null) {
            rebalancer.interrupt();
        }
        if (vmq != null) {
            vmq.close();
        }
        closeDevices();
    }

    /** VMQ of this switch (null when vmqWorkers = 0). */
    public Vmq vmq() {
        return vmq;
    }
}
