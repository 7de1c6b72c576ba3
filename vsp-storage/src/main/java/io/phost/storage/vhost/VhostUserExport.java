package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserBackend;

import java.nio.file.Path;

/**
 * What every vhost-user export shares: its name and the {@link VhostUserBackend} serving it (socket,
 * connection state, last error, close). The public exports add what they export (a disk, a SCSI target).
 */
public abstract class VhostUserExport implements AutoCloseable {
    private final String name;
    private final VhostUserBackend backend;

    VhostUserExport(String name, VhostUserBackend backend) {
        this.name = name;
        this.backend = backend;
    }

    public final String name() {
        return name;
    }

    public final Path socketPath() {
        return backend.socketPath();
    }

    /** True while a front-end (QEMU) is connected. */
    public final boolean connected() {
        return backend.connected();
    }

    /** Front-ends that have connected since start (a reconnecting QEMU counts again). */
    public final long connections() {
        return backend.connections();
    }

    /** Queues currently running. */
    public final int runningQueues() {
        return backend.runningQueues();
    }

    /** The last protocol or queue error (what and where), or null. */
    public final String lastError() {
        return backend.lastError();
    }

    /**
     * The device's config space changed (a LUN's disk grew): the connected front-end is told to re-read it
     * (BACKEND_CONFIG_CHANGE_MSG). False when no front-end with a back-end channel is connected.
     */
    public final boolean configChanged() {
        return backend.notifyConfigChanged();
    }

    /** Stops serving: in-flight I/O completes, the socket file is removed. What was exported stays open. */
    @Override
    public final void close() {
        backend.close();
        released();
    }

    /** After the back-end stopped: the export's own resources go. */
    protected void released() {
    }
}
