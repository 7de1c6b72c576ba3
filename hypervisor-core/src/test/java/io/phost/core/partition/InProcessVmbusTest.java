package io.phost.core.partition;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.core.EchoVsp;
import io.phost.core.TestGuest;
import io.phost.core.ic.GuestIntegration;
import io.phost.core.sys.SharedMemory;
import io.phost.core.vmbus.ChannelMessage;
import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.core.vmbus.VmbusServer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The control protocol, GPADLs, channel resets and limits with the guest in this JVM (an "external"
 * partition attaches by itself with its credential). Fast; the two-process tests are in PartitionProcessTest.
 */
class InProcessVmbusTest {
    private static final long MEM = 4L << 20;
    private Path dir;
    private PartitionHost host;
    private final List<AutoCloseable> closeLast = new ArrayList<>();

    @BeforeEach
    void setUp() throws Exception {
        dir = Files.createTempDirectory("phost-vmbus");
        host = new PartitionHost(dir, spec -> List.of("false"), PartitionHost.Options.defaults()
            .withLimits(new VmbusServer.Limits(2_000, 200, 64, 1 << 16, 4, true)).withMaxFaults(100));
    }

    @AfterEach
    void tearDown() throws Exception {
        host.close();
        for (AutoCloseable c : closeLast) {
            c.close();
        }
        try (var s = Files.walk(dir)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    private VmbusClient attach(Partition p) {
        GuestRam ram = GuestRam.create("test-" + p.name(), MEM);
        closeLast.add(ram);
        VmbusClient c = VmbusClient.attach(host.socketPath(), p.name(), HexFormat.of().parseHex(p.credentialHex()), ram);
        closeLast.addFirst(c);
        return c;
    }

    private Partition external(String name, EchoVsp vsp) throws Exception {
        Partition p = host.create(PartitionSpec.external(name, 1, MEM));
        if (vsp != null) {
            p.offer(vsp);
        }
        p.start();
        return p;
    }

    @Test
    void shouldNegotiateOfferOpenAndEchoInbandAndGpaDirectPackets() throws Exception {
        EchoVsp echo = new EchoVsp("a");
        Partition p = external("a", echo);
        VmbusClient c = attach(p);
        assertEquals(ChannelMessage.VERSIONS[0], c.version());
        assertEquals(PartitionState.RUNNING, p.state());
        assertEquals(5, c.offers().size(), "4 integration services + the echo device");
        assertEquals("ok", TestGuest.exercise(c));
        assertTrue(echo.gpaDirect.get() >= 1);
        assertEquals(0, p.faultCount(), p.faults().toString());
    }

    @Test
    void shouldRejectAttachWithWrongCredentialUnknownNameOrUnsealedMemory() throws Exception {
        Partition p = external("b", null);
        GuestRam ram = GuestRam.create("test-b", MEM);
        closeLast.add(ram);
        byte[] wrong = new byte[32];
        assertThrows(RuntimeException.class, () -> VmbusClient.attach(host.socketPath(), "b", wrong, ram));
        assertThrows(RuntimeException.class, () -> VmbusClient.attach(host.socketPath(), "nobody", HexFormat.of().parseHex(p.credentialHex()), ram));
        assertEquals(2, host.rejectedAttaches());
        // a memfd without F_SEAL_SHRINK could be truncated under the host's mapping: refused
        int fd = SharedMemory.createUnsealed("unsealed", MEM);
        try {
            assertThrows(RuntimeException.class, () -> rawAttach(p, fd));
            assertTrue(host.lastRejection().contains("F_SEAL_SHRINK"), host.lastRejection());
        } finally {
            io.phost.core.sys.Fd.close(fd);
        }
        assertEquals(PartitionState.STARTING, p.state());
        attach(p);
        assertEquals(PartitionState.RUNNING, p.state());
    }

    private void rawAttach(Partition p, int fd) {
        io.phost.core.sys.UnixSocket s = io.phost.core.sys.UnixSocket.connect(host.socketPath());
        try {
            MemorySegment m = Arena.ofAuto().allocate(256, 8);
            byte[] name = p.name().getBytes();
            ChannelMessage.header(m, ChannelMessage.INITIATE_CONTACT, ChannelMessage.CONTACT_NAME + name.length);
            ChannelMessage.u32(m, ChannelMessage.CONTACT_VERSION, ChannelMessage.VERSIONS[0]);
            MemorySegment.copy(HexFormat.of().parseHex(p.credentialHex()), 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_CREDENTIAL, 32);
            m.set(java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_NAME_LENGTH, (byte) name.length);
            MemorySegment.copy(name, 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, ChannelMessage.CONTACT_NAME, name.length);
            s.send(m, ChannelMessage.CONTACT_NAME + name.length, fd);
            long n = s.receive(m, new int[8], 5000);
            if (n <= 0) {
                throw new IllegalStateException("refused");
            }
        } finally {
            s.close();
        }
    }
}
