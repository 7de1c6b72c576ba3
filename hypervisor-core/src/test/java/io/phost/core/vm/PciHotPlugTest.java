package io.phost.core.vm;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The QMP commands a NIC's and a SCSI controller's hot-plug and unplug send, in order, and what a refused device_add
 * undoes. No chardev-remove after netdev_del: QEMU deletes a vhost-user netdev's chardev with it and would answer
 * "Chardev 'nic1' not found".
 */
class PciHotPlugTest {
    private static final Duration T = Duration.ofSeconds(5);

    @TempDir
    Path dir;

    /** Commands the scripted QEMU received (without their ids); device_add fails when {@code refuseDeviceAdd}. */
    private final List<Map<String, Object>> commands = new CopyOnWriteArrayList<>();

    private QmpClient qemu(PciHotPlug hp, boolean refuseDeviceAdd) throws IOException {
        Path sock = dir.resolve("q.sock");
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(sock));
        Thread.ofVirtual().start(() -> {
            try (server; SocketChannel c = server.accept()) {
                write(c, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
                ByteBuffer buf = ByteBuffer.allocate(4096);
                StringBuilder line = new StringBuilder();
                while (c.read(buf.clear()) > 0) {
                    line.append(new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8));
                    for (int nl; (nl = line.indexOf("\n")) >= 0; line.delete(0, nl + 1)) {
                        Map<String, Object> cmd = new java.util.HashMap<>(QmpJson.parseObject(line.substring(0, nl)));
                        Object id = cmd.remove("id");
                        String name = (String) cmd.get("execute");
                        if (!"qmp_capabilities".equals(name)) {
                            commands.add(cmd);
                        }
                        if ("device_add".equals(name) && refuseDeviceAdd) {
                            write(c, "{\"id\": " + id + ", \"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n");
                            continue;
                        }
                        write(c, "{\"return\": {}, \"id\": " + id + "}\r\n");
                        if ("device_del".equals(name)) {
                            String dev = (String) ((Map<?, ?>) cmd.get("arguments")).get("id");
                            write(c, "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"" + dev + "\"}}\r\n");
                        }
                    }
                }
            } catch (IOException e) {
                // the client went away
            }
        });
        return QmpClient.connect(sock, T, () -> true, hp::event, "t");
    }

    private static void write(SocketChannel c, String s) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
        while (b.hasRemaining()) {
            c.write(b);
        }
    }

    private List<String> names() {
        return commands.stream().map(c -> (String) c.get("execute")).toList();
    }

    private VmDevice nic() {
        return new VmDevice("nic1", VmDevice.Type.NET, dir.resolve("vm.nic1.sock"), 2, "02:00:00:00:01:02");
    }

    @Test
    void shouldPlugANicAsChardevNetdevAndVirtioNetOnASparePortAndUnplugItInReverse() throws Exception {
        PciHotPlug hp = new PciHotPlug("vm", VmSpec.Machine.Q35, false, T);
        try (QmpClient q = qemu(hp, false)) {
            hp.plug(q, nic());
            hp.unplug(q, "nic1", true, T);
        }
        assertEquals(List.of("chardev-add", "netdev_add", "device_add", "device_del", "netdev_del"), names());
        assertEquals(Map.of("type", "vhost-user", "id", "nic1-net", "chardev", "nic1", "queues", 2L),
            commands.get(1).get("arguments"));
        // as on the command line: mq for 2 queue pairs, and vectors=0 under TCG (QEMU 7.2's vhost-user-net segfault)
        assertEquals(Map.of("driver", "virtio-net-pci", "id", "nic1-dev", "netdev", "nic1-net", "mac", "02:00:00:00:01:02",
            "mq", true, "vectors", 0L, "bus", "hp0"), commands.get(2).get("arguments"));
        assertEquals(Map.of("id", "nic1-net"), commands.get(4).get("arguments"));
    }

    @Test
    void shouldRemoveTheNetdevAndChardevWhenQemuRefusesTheDevice() throws Exception {
        PciHotPlug hp = new PciHotPlug("vm", VmSpec.Machine.PC, true, T);
        try (QmpClient q = qemu(hp, true)) {
            assertThrows(QmpException.class, () -> hp.plug(q, nic()));
        }
        assertEquals(List.of("chardev-add", "netdev_add", "device_add", "netdev_del"), names());
        assertEquals(Map.of("driver", "virtio-net-pci", "id", "nic1-dev", "netdev", "nic1-net", "mac", "02:00:00:00:01:02",
            "mq", true, "vectors", 6L), commands.get(2).get("arguments"));
    }

    private VmDevice controller() {
        return new VmDevice("scsi2", VmDevice.Type.SCSI, dir.resolve("scsi2.sock"), 1, null);
    }

    @Test
    void shouldPlugAScsiControllerWithoutReconnectOnASparePortAndUnplugIt() throws Exception {
        PciHotPlug hp = new PciHotPlug("vm", VmSpec.Machine.Q35, false, T);
        try (QmpClient q = qemu(hp, false)) {
            hp.plug(q, controller());
            assertTrue(hp.plugged("scsi2"));
            hp.unplug(q, "scsi2", false, T);
            assertFalse(hp.plugged("scsi2"), "its port is free again");
        }
        assertEquals(List.of("chardev-add", "device_add", "device_del", "chardev-remove"), names());
        // as on the command line: no reconnect (QEMU 7.2 cannot reconnect vhost-user-scsi, and would not wait for the socket)
        assertEquals(Map.of("id", "scsi2", "backend", Map.of("type", "socket", "data", Map.of("addr", Map.of("type", "unix",
            "data", Map.of("path", dir.resolve("scsi2.sock").toString())), "server", false))), commands.get(0).get("arguments"));
        assertEquals(Map.of("driver", "vhost-user-scsi-pci", "id", "scsi2-dev", "chardev", "scsi2", "num_queues", 1L, "bus", "hp0"),
            commands.get(1).get("arguments"));
        assertEquals(Map.of("id", "scsi2-dev"), commands.get(2).get("arguments"));
        assertEquals(Map.of("id", "scsi2"), commands.get(3).get("arguments"));
    }

    @Test
    void shouldRemoveTheChardevWhenQemuRefusesAScsiController() throws Exception {
        PciHotPlug hp = new PciHotPlug("vm", VmSpec.Machine.Q35, false, T);
        try (QmpClient q = qemu(hp, true)) {
            assertThrows(QmpException.class, () -> hp.plug(q, controller()));
            assertFalse(hp.plugged("scsi2"));
        }
        assertEquals(List.of("chardev-add", "device_add", "chardev-remove"), names());
    }
}
