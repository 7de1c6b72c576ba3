package io.phost.network.vhost;

import io.phost.core.vhost.VhostUserBackend;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.Port;
import io.phost.vswitch.PortConfig;
import java.nio.file.Path;
import java.util.List;

/**
 * A vhost-user-net NIC: a switch port whose other side is a virtio-net driver behind a vhost-user front-end
 * (QEMU's {@code -netdev vhost-user}) on a Unix socket.
 * <pre>
 *   VhostUserNetPort p = VhostUserNetPort.start("vm1/nic0", managedSwitch, PortConfig.vnic(mac), socket, List.of());
 *   p.connected(); p.counters(); p.lastError(); p.port();
 *   p.close();   // the socket file goes, the port leaves the switch
 * </pre>
 * The port's policy ({@link PortConfig}: VLAN, guards, bandwidth, MAC) applies as for any vNIC. The MAC in the
 * config space is the port's (a random locally administered one when the port has none); QEMU shows the
 * guest its own {@code mac=} property, which should be the same.
 */
public final class VhostUserNetPort implements AutoCloseable {
    private final ManagedSwitch sw;
    private final Port port;
    private final VhostUserNetDevice device;
    private final VhostUserBackend backend;
    private final long mac;

    private VhostUserNetPort(ManagedSwitch sw, Port port, VhostUserNetDevice device, VhostUserBackend backend, long mac) {
        this.sw = sw;
        this.port = port;
        this.device = device;
        this.backend = backend;
        this.mac = mac;
    }

    /** Attaches port {@code name} to {@code sw} and serves it on {@code socketPath}; workers pinned to {@code cpus}. */
    public static VhostUserNetPort start(String name, ManagedSwitch sw, PortConfig config, Path socketPath, List<Integer> cpus) {
        return start(name, sw, config, socketPath, cpus, 1);
    }

    /**
     * As above with {@code queuePairs} (1..16) receive/transmit queue pairs, served by the switch's agent thread
     * (each queue's worker, pinned to {@code cpus}, only relays kicks);
     * more than one offers VIRTIO_NET_F_MQ (QEMU: {@code -netdev vhost-user,queues=N} and
     * {@code virtio-net-pci,mq=on}).
     */
    public static VhostUserNetPort start(String name, ManagedSwitch sw, PortConfig config, Path socketPath, List<Integer> cpus,
                                         int queuePairs) {
        long mac = config.mac() == -1 ? randomMac() : config.mac();
        VhostUserNetDevice device = new VhostUserNetDevice(mac, config.mtu() == 0 ? PortConfig.DEFAULT_MTU : config.mtu(), queuePairs);
        // With VMQ on the switch (a queue of its own, or the default queue for vmq_weight 0) a VMQ worker calls
        // the sink: it then fills the guest's receive queues under the device's lock, not lock-free on the agent.
        device.sinkOnVmq(sw.vmq() != null);
        device.pendingCalls(PendingCalls.of(sw.agent())); // one list per agent thread: calls wait for the burst's end
        Port port = sw.attach(name, config, device, device);
        device.onSwitchThread(command -> runOnAgent(sw, name, command));
        // The guest's GUEST_CSUM/TSO acks change what the sink takes: re-apply the policy on the switch's thread.
        device.onOffloadsChanged(() -> sw.agent().submit(s -> s.configure(port, port.config())));
        VhostUserBackend backend;
        try {
            backend = VhostUserBackend.start(name.replace('/', '-'), socketPath, device, cpus);
        } catch (RuntimeException e) {
            sw.detach(port);
            device.release();
            throw e;
        }
        return new VhostUserNetPort(sw, port, device, backend, mac);
    }

    /**
     * Runs {@code command} on the switch's agent thread and waits for it: the queue workers hand their queues
     * to the agent and take them back this way. Bounded: a switch already closed runs nothing any more, so
     * nothing can touch the queue after the wait either.
     */
    private static void runOnAgent(ManagedSwitch sw, String name, Runnable command) {
        try {
            sw.agent().submit(s -> command.run()).get(5, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
            System.getLogger("phost.vhost").log(System.Logger.Level.WARNING,
                "vhost-user-net " + name + ": switch agent did not run a queue hand-over (" + e + "); the switch is closed or stuck");
        }
    }

    private static long randomMac() {
        long r = java.util.concurrent.ThreadLocalRandom.current().nextLong() & 0xFFFF_FFFF_FFFFL;
        return (r & ~0x0100_0000_0000L) | 0x0200_0000_0000L; // unicast, locally administered
    }

    public Port port() {
        return port;
    }

    /**
     * Announces the guest's MAC from this port as SEND_RARP does (one broadcast RARP injected by the switch's agent):
     * after its VM was moved here from another appliance, so the LAN learns the new port before the guest speaks.
     */
    public void announce() {
        device.announce(mac);
    }

    public Path socketPath() {
        return backend.socketPath();
    }

    public boolean connected() {
        return backend.connected();
    }

    public int runningQueues() {
        return backend.runningQueues();
    }

    public String lastError() {
        return backend.lastError();
    }

    /** The device's counters summed over its queue pairs (a snapshot). */
    public NetCounters counters() {
        return device.countersSnapshot();
    }

    /** The port's link state as the guest is told it (config {@code status}): true = up (the default). */
    public boolean link() {
        return device.linkUp();
    }

    /**
     * Sets the port's link (admin up/down, or the cable of a NIC whose guest went away): the config space's
     * {@code status} becomes LINK_UP or 0, frames either way are dropped while down ({@code linkDownDrops}),
     * and the front-end is asked to re-read the config (BACKEND_CONFIG_CHANGE_MSG). Returns whether that
     * message was sent: false without a connected front-end or back-end channel, and QEMU 7.2's
     * {@code -netdev vhost-user} ignores it (its virtio-net config is its own; phost's VM partitions use QMP
     * {@code set_link} as well, see NetworkComponent). A front-end that connects later reads the new state.
     */
    public boolean link(boolean up) {
        device.linkUp(up);
        return backend.notifyConfigChanged();
    }

    /** The virtio features the driver acknowledged (0 before it did). */
    public long ackedFeatures() {
        return device.ackedFeatures();
    }

    @Override
    public void close() {
        backend.close();
        sw.detach(port);
        device.release();
    }
}
