package io.phost.core.vm;

import java.nio.file.Path;

/**
 * A device of a VM that this phost serves as a vhost-user backend on {@code socket}: QEMU only relays the
 * rings and kicks; the data never passes through QEMU's block or network layer.
 *
 * @param id     QEMU id of the device and its chardev, [A-Za-z][A-Za-z0-9_-]*
 * @param type   blk (one disk), scsi (a controller whose LUNs the backend serves) or net
 * @param queues virtqueues (blk, scsi) or queue pairs (net); 1..64
 * @param mac    the NIC's MAC (net only, else null)
 */
public record VmDevice(String id, Type type, Path socket, int queues, String mac) {
    public enum Type { BLK, SCSI, NET }

    public VmDevice {
        QemuValues.requireId("device id", id);
        QemuValues.requirePath("vhost-user socket", socket);
        if (queues < 1 || queues > 64) {
            throw new IllegalArgumentException("device " + id + ": queues must be 1..64, not " + queues);
        }
        if ((type == Type.NET) != (mac != null)) {
            throw new IllegalArgumentException("device " + id + ": a MAC is for net devices only, and net needs one");
        }
        if (mac != null && !mac.matches("\\p{XDigit}{2}(:\\p{XDigit}{2}){5}")) {
            throw new IllegalArgumentException("device " + id + ": MAC must be xx:xx:xx:xx:xx:xx, not " + mac);
        }
    }

    public static VmDevice blk(String id, Path socket, int queues) {
        return new VmDevice(id, Type.BLK, socket, queues, null);
    }
}
