package io.phost.core.vm;

import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;

/**
 * A VM partition's integration services, as Hyper-V's: one {@link GuestAgent} per run of QEMU (connected when
 * the VM runs, closed when QEMU goes), the heartbeat held while the VM is paused, time sync after a resume,
 * fsfreeze on request, and what status shows of them.
 */
final class VmIntegration {
    private static final Logger LOG = System.getLogger("phost.partitions");

    private final String name;
    private final Path socket;
    private final Duration period;
    private final Duration timeout;
    private volatile GuestAgent agent; // volatile: status and fsfreeze read it without the partition's monitor
    private volatile String timeSync = "not yet (set after every resume)";
    private volatile String fsfreeze = "thawed (never frozen by phost)";

    VmIntegration(String name, Path socket, Duration period, Duration timeout) {
        this.name = name;
        this.socket = socket;
        this.period = period;
        this.timeout = timeout;
    }

    /** QEMU's end of the agent's virtio-serial port. */
    Path socket() {
        return socket;
    }

    /** The VM runs: start the heartbeat. */
    void connect() {
        GuestAgent a = new GuestAgent(socket, name, period, timeout, (hb, text) -> { });
        a.start();
        agent = a;
    }

    /** QEMU is gone. */
    void disconnect() {
        GuestAgent a = agent;
        agent = null;
        if (a != null) {
            a.close();
        }
    }

    /** The agent of the running VM, or null. */
    GuestAgent agent() {
        return agent;
    }

    void paused(boolean p) {
        GuestAgent a = agent;
        if (a != null) {
            a.paused(p);
        }
    }

    /** After a resume: the heartbeat goes on and the agent sets the guest's clock (off the caller's thread). */
    void resumed() {
        GuestAgent a = agent;
        if (a == null) {
            return;
        }
        a.paused(false);
        Thread.ofVirtual().name("qga-time-" + name).start(() -> {
            try {
                a.syncTime();
                timeSync = "set to the host's clock after the resume at " + Instant.now();
            } catch (QmpException e) {
                timeSync = "not set after the resume at " + Instant.now() + ": " + e.getMessage();
            }
            LOG.log(Level.INFO, "time sync partition=" + name + " result=\"" + timeSync + "\"");
        });
    }

    int freeze(Object vmState) {
        int n = require("freeze", vmState).freezeFileSystems();
        fsfreeze = "frozen (" + n + " file systems) at " + Instant.now();
        LOG.log(Level.INFO, "froze partition=" + name + " file_systems=" + n);
        return n;
    }

    int thaw(Object vmState) {
        int n = require("thaw", vmState).thawFileSystems();
        fsfreeze = "thawed (" + n + " file systems) at " + Instant.now();
        LOG.log(Level.INFO, "thawed partition=" + name + " file_systems=" + n);
        return n;
    }

    private GuestAgent require(String what, Object vmState) {
        GuestAgent a = agent;
        if (a == null || !a.inContact()) {
            throw new IllegalStateException("partition " + name + ": cannot " + what + " file systems: "
                + (a == null ? "the VM is " + vmState : "its guest agent is not in contact: " + a.describe()));
        }
        return a;
    }

    /** Status details: heartbeat, guest info (the KVP counterpart), time sync, fsfreeze. */
    void describe(Map<String, String> d) {
        GuestAgent a = agent;
        d.put("guest_agent", a == null ? "not running" : a.describe());
        d.put("heartbeat", a == null ? "not running" : a.heartbeat().name());
        GuestAgent.GuestInfo gi = a == null ? null : a.info();
        if (gi != null) {
            d.put("guest_os", gi.os());
            d.put("guest_hostname", gi.hostname());
            d.put("guest_addresses", String.join(", ", gi.addresses()));
            d.put("guest_agent_version", gi.agentVersion());
        }
        d.put("time_sync", timeSync);
        d.put("fsfreeze", fsfreeze);
    }
}
