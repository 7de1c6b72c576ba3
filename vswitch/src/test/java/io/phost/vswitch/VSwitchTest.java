package io.phost.vswitch;

import static io.phost.vswitch.Frames.A;
import static io.phost.vswitch.Frames.B;
import static io.phost.vswitch.Frames.C;
import static io.phost.vswitch.Frames.D;
import static io.phost.vswitch.Frames.buf;
import static io.phost.vswitch.Frames.frame;
import static io.phost.vswitch.Frames.ipv4;
import static io.phost.vswitch.Frames.udp;
import static io.phost.vswitch.Frames.plain;
import static io.phost.vswitch.Frames.tagged;
import static io.phost.vswitch.Frames.vidOf;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.Test;

class VSwitchTest {
    private static final long SECOND = 1_000_000_000L;

    private final VSwitch sw = new VSwitch("t", SwitchType.EXTERNAL, 10_000);
    private final Frames.Recorder ra = new Frames.Recorder();
    private final Frames.Recorder rb = new Frames.Recorder();
    private final Frames.Recorder rc = new Frames.Recorder();

    private Port vnic(String name, long mac, Frames.Recorder r) {
        return sw.addPort(name, PortKind.VNIC, PortConfig.vnic(mac), r, null);
    }

    private void send(Port p, byte[] f) {
        sw.receive(p, buf(f), 0, f.length);
    }

    @Test
    void shouldFloodUnknownUnicastThenForwardOnlyToTheLearnedPort() {
        sw.tick(SECOND);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(true, false, false), ra, null);
        Port b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withGuards(true, false, false), rb, null);
        Port c = sw.addPort("c", PortKind.VNIC, PortConfig.vnic(C).withGuards(true, false, false), rc, null);
        // Spoofing allowed everywhere: nothing pinned, so the first frame to D floods.
        send(a, plain(D, A));
        assertEquals(0, ra.count());
        assertEquals(1, rb.count());
        assertEquals(1, rc.count());
        send(b, plain(A, D)); // D learned on b; A is known on a
        assertEquals(1, ra.count());
        assertEquals(1, rc.count());
        send(a, plain(D, A));
        assertEquals(2, rb.count());
        assertEquals(1, rc.count());
        assertSame(b, sw.lookup(0, D));
        assertEquals(3, a.counters().rxPackets() + b.counters().rxPackets());
    }

    @Test
    void shouldDeliverToAPinnedVnicMacWithoutFlooding() {
        Port a = vnic("a", A, ra);
        vnic("b", B, rb);
        vnic("c", C, rc);
        send(a, plain(B, A));
        assertEquals(1, rb.count());
        assertEquals(0, rc.count());
        assertArrayEquals(plain(B, A), rb.last());
    }

    @Test
    void shouldFloodBroadcastAndMulticastToEveryOtherPortInTheVlan() {
        Port a = vnic("a", A, ra);
        vnic("b", B, rb);
        sw.addPort("c", PortKind.VNIC, PortConfig.vnic(C).withAccessVlan(7), rc, null);
        send(a, plain(EthernetDescriptor.BROADCAST, A));
        send(a, plain(0x01_00_5e_00_00_01L, A));
        assertEquals(0, ra.count());
        assertEquals(2, rb.count());
        assertEquals(0, rc.count(), "a port on VLAN 7 must not see VLAN 0 broadcasts");
    }

    @Test
    void shouldAgeOutLearnedAddresses() {
        sw.tick(SECOND);
        Port up = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        Port a = vnic("a", A, ra);
        send(up, plain(A, D));
        assertSame(up, sw.lookup(0, D));
        sw.tick(SECOND + 5 * SECOND);
        assertSame(up, sw.lookup(0, D), "still fresh after 5 s of 10 s aging");
        sw.tick(SECOND + 12 * SECOND);
        assertNull(sw.lookup(0, D));
        assertSame(a, sw.lookup(0, A), "static vNIC entries never age");
    }

    /**
     * A source port keeps its last unicast destination between frames (no hash probe per frame); every change
     * that can move a destination must be seen at the next frame: a move, aging, a policy change, a removal.
     */
    @Test
    void shouldFollowEveryChangeOfTheLastDestinationOfASourcePort() {
        sw.tick(SECOND);
        Port a = vnic("a", A, ra);
        Port b = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withGuards(true, false, false), rb, null);
        Port c = sw.addPort("c", PortKind.VNIC, PortConfig.vnic(C).withGuards(true, false, false), rc, null);
        send(b, plain(A, D)); // D learned on b
        send(a, plain(D, A));
        send(a, plain(D, A));
        assertEquals(2, rb.count());
        assertEquals(1, ra.count());
        send(c, plain(A, D)); // D moves to c
        send(a, plain(D, A));
        assertEquals(2, rb.count(), "after the move D's frames go to c only");
        assertEquals(1, rc.count());
        sw.tick(SECOND + 20 * SECOND); // D ages out: unknown unicast floods
        send(a, plain(D, A));
        assertEquals(3, rb.count());
        assertEquals(2, rc.count());
        send(c, plain(A, D)); // learned on c again, then c leaves VLAN 0
        send(a, plain(D, A));
        assertEquals(3, rc.count());
        sw.configure(c, c.config().withAccessVlan(7));
        send(a, plain(D, A));
        assertEquals(3, rc.count(), "c no longer carries VLAN 0");
        assertEquals(4, rb.count(), "D unknown in VLAN 0 again: flooded");
        send(b, plain(A, D));
        send(a, plain(D, A));
        assertEquals(5, rb.count());
        sw.removePort(b);
        send(a, plain(D, A));
        assertEquals(5, rb.count(), "a removed port gets nothing");
        assertEquals(3, rc.count());
        assertEquals(0, a.counters().drops(DropReason.SAME_PORT));
        send(a, plain(A, A)); // its own pinned MAC
        assertEquals(1, a.counters().drops(DropReason.SAME_PORT));
    }

    @Test
    void shouldStopLearningAtThePortsMacLimitButStillForward() {
        Port up = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink().withLimits(0, 0, 1, 2), rc, null);
        vnic("a", A, ra);
        for (int i = 1; i <= 5; i++) {
            send(up, plain(A, 0x0a_00_00_00_00_00L + i));
        }
        assertEquals(5, ra.count());
        assertEquals(3, up.counters().macLimitHits());
        assertEquals(3, sw.macTableSize()); // two learned + A pinned
    }

    @Test
    void shouldAddTagOnTrunkEgressAndStripItOnAccessEgress() {
        Port acc = sw.addPort("acc", PortKind.VNIC, PortConfig.vnic(A).withAccessVlan(10), ra, null);
        Port trunk = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink().withTrunk(0, 10, 20), rc, null);
        send(acc, plain(D, A));
        assertEquals(1, rc.count());
        assertEquals(10, vidOf(rc.last()));
        assertEquals(plain(D, A).length + 4, rc.last().length);
        send(trunk, tagged(A, D, 10));
        assertEquals(1, ra.count());
        assertArrayEquals(plain(A, D), ra.last(), "tag stripped towards the access port");
        assertEquals(1, acc.counters().txPackets());
    }

    @Test
    void shouldNeverLetFramesCrossVlans() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withAccessVlan(10), ra, null);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withAccessVlan(20), rb, null);
        Port trunk = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink().withTrunk(0, 10), rc, null);
        send(a, plain(B, A)); // B lives on VLAN 20: unknown in VLAN 10, floods only to VLAN 10 ports
        assertEquals(0, rb.count());
        assertEquals(1, rc.count());
        send(trunk, tagged(B, D, 20)); // VLAN 20 not allowed on the trunk
        assertEquals(0, rb.count());
        assertEquals(1, trunk.counters().drops(DropReason.VLAN_NOT_ALLOWED));
        send(a, tagged(B, A, 20)); // a tagged frame from an access port
        assertEquals(1, a.counters().drops(DropReason.VLAN_NOT_ALLOWED));
        assertEquals(0, rb.count());
    }

    @Test
    void shouldMapUntaggedTrunkFramesToTheNativeVlanAndSendItUntagged() {
        Port trunk = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink().withTrunk(5, 5, 6), rc, null);
        sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withAccessVlan(5), ra, null);
        sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withAccessVlan(6), rb, null);
        send(trunk, plain(A, D));
        assertEquals(1, ra.count());
        send(trunk, tagged(B, D, 6));
        assertEquals(1, rb.count());
        send(sw.ports().get(1), plain(D, A)); // VLAN 5 is native: leaves the trunk untagged
        assertEquals(-1, vidOf(rc.last()));
    }

    @Test
    void shouldTreatPriorityTaggedFramesAsUntagged() {
        Port a = vnic("a", A, ra);
        vnic("b", B, rb);
        send(a, tagged(B, A, 0));
        assertEquals(1, rb.count());
        assertArrayEquals(plain(B, A), rb.last());
    }

    @Test
    void shouldDropSpoofedSourceMacWhenSpoofingIsOff() {
        Port a = vnic("a", A, ra);
        vnic("b", B, rb);
        send(a, plain(B, C));
        assertEquals(0, rb.count());
        assertEquals(1, a.counters().drops(DropReason.MAC_SPOOF));
        send(a, plain(B, A));
        assertEquals(1, rb.count());
    }

    @Test
    void shouldDropDhcpServerMessagesFromAGuardedPortOnly() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(false, true, false), ra, null);
        vnic("b", B, rb);
        byte[] offer = frame(EthernetDescriptor.BROADCAST, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(67, 68)));
        byte[] discover = frame(EthernetDescriptor.BROADCAST, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(68, 67)));
        byte[] dns = frame(B, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(53, 5353)));
        byte[] v6reply = frame(B, A, -1, 0x86dd, Frames.ipv6(17, Frames.udp(547, 546)));
        send(a, offer);
        send(a, v6reply);
        assertEquals(0, rb.count());
        assertEquals(2, a.counters().drops(DropReason.DHCP_GUARD));
        send(a, discover);
        send(a, dns);
        assertEquals(2, rb.count());
        Port b = sw.ports().get(1);
        send(b, frame(EthernetDescriptor.BROADCAST, B, -1, 0x0800, Frames.ipv4(17, Frames.udp(67, 68))));
        assertEquals(1, ra.count(), "an unguarded port may run a DHCP server");
    }

    /** BOOTP reply: op 2, then the DHCP magic cookie at 236 (what a rogue server sends, from any port). */
    private static byte[] bootReply(int srcPort, int dstPort) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(8 + 300);
        bb.putShort((short) srcPort).putShort((short) dstPort).putShort((short) 308).putShort((short) 0);
        bb.put((byte) 2).put((byte) 1).put((byte) 6);
        bb.position(8 + 236);
        bb.putInt(0x63825363);
        return bb.array();
    }

    /**
     * Before: the guard only looked at UDP source port 67 (547), so a lease from port 6767 and DHCPv6 from any
     * other port passed. Now: by content and by the client's port; a tiny first fragment hiding the UDP header
     * is dropped too, while ordinary UDP keeps flowing.
     */
    @Test
    void shouldDropDhcpServerMessagesWhateverThePortsAndFragmentsThatHideThem() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(false, true, false), ra, null);
        vnic("b", B, rb);
        send(a, frame(EthernetDescriptor.BROADCAST, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(6767, 68))));
        send(a, frame(EthernetDescriptor.BROADCAST, A, -1, 0x0800, Frames.ipv4(17, bootReply(6767, 6868))));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, Frames.udp(5555, 546))));     // DHCPv6 ADVERTISE/REPLY
        byte[] tiny = Frames.ipv4(17, new byte[4]);                                  // first fragment, 4 UDP bytes
        tiny[6] = 0x20;                                                               // MF set, offset 0
        send(a, frame(EthernetDescriptor.BROADCAST, A, -1, 0x0800, tiny));
        assertEquals(0, rb.count());
        assertEquals(4, a.counters().drops(DropReason.DHCP_GUARD));
        send(a, frame(B, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(6767, 6868))));   // not DHCP: passes
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, Frames.udp(546, 547))));      // a DHCPv6 client's SOLICIT
        byte[] later = Frames.ipv4(17, new byte[4]);
        later[7] = 0x10;                                                              // a later fragment
        send(a, frame(B, A, -1, 0x0800, later));
        assertEquals(3, rb.count());
    }

    /** An RA whose ICMPv6 header was pushed into a second fragment (the first holds only extension headers). */
    @Test
    void shouldDropAFirstFragmentThatHidesAnIcmpv6HeaderFromTheRouterGuard() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(false, false, true), ra, null);
        vnic("b", B, rb);
        byte[] frag = new byte[8];
        frag[0] = 60;        // fragmentable part starts with destination options
        frag[3] = 1;         // offset 0, M = 1
        byte[] destOpts = new byte[16];
        destOpts[0] = 58;    // then ICMPv6, whose header is in the next fragment
        destOpts[1] = 1;     // 16 bytes
        byte[] first = new byte[frag.length + destOpts.length];
        System.arraycopy(frag, 0, first, 0, 8);
        System.arraycopy(destOpts, 0, first, 8, 16);
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(44, first)));
        assertEquals(0, rb.count());
        assertEquals(1, a.counters().drops(DropReason.ROUTER_GUARD));
    }

    @Test
    void shouldDropRouterAdvertisementsAndRedirectsFromARouterGuardedPort() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(false, false, true), ra, null);
        vnic("b", B, rb);
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(58, Frames.icmpType(134))));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(58, Frames.icmpType(137))));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(0, Frames.hopByHop(58, Frames.icmpType(134)))));
        byte[] deep = Frames.icmpType(134);
        for (int i = 0; i < 9; i++) {
            deep = Frames.hopByHop(i == 0 ? 58 : 60, deep);
        }
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(60, deep))); // RA hidden behind 10 extension headers
        send(a, frame(B, A, -1, 0x0800, Frames.ipv4(1, Frames.icmpType(5))));
        send(a, frame(B, A, -1, 0x0800, Frames.ipv4(1, Frames.icmpType(9))));
        assertEquals(0, rb.count());
        assertEquals(6, a.counters().drops(DropReason.ROUTER_GUARD));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(58, Frames.icmpType(135)))); // neighbour solicitation
        send(a, frame(B, A, -1, 0x0800, Frames.ipv4(1, Frames.icmpType(8))));    // echo request
        send(a, frame(B, A, 7, 0x86dd, Frames.ipv6(58, Frames.icmpType(128))));   // tagged: dropped by VLAN, not guard
        assertEquals(2, rb.count());
        assertEquals(6, a.counters().drops(DropReason.ROUTER_GUARD));
    }

    @Test
    void shouldCopyFramesOfMirrorSourcesToMirrorDestinations() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withMirror(MirrorMode.SOURCE), ra, null);
        Port b = vnic("b", B, rb);
        Port m = sw.addPort("m", PortKind.VNIC, PortConfig.vnic(C).withMirror(MirrorMode.DESTINATION), rc, null);
        send(a, plain(B, A));
        send(b, plain(A, B));
        Port d = vnic("d", D, new Frames.Recorder());
        send(b, plain(D, B)); // neither end is a source: no copy
        assertEquals(2, rb.count() + ra.count());
        assertEquals(2, rc.count());
        assertArrayEquals(plain(B, A), rc.frames.get(0));
        assertArrayEquals(plain(A, B), rc.frames.get(1));
        assertEquals(2, m.counters().mirroredPackets());
        assertEquals(1, d.counters().txPackets());
    }

    @Test
    void shouldDropFloodsAboveTheStormLimit() {
        sw.tick(SECOND);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withLimits(100, 0, 1, 16), ra, null);
        vnic("b", B, rb);
        for (int i = 0; i < 50; i++) {
            send(a, plain(EthernetDescriptor.BROADCAST, A));
            send(a, plain(B, A)); // known unicast is not limited
        }
        assertEquals(10 + 50, rb.count()); // burst = limit / 10
        assertEquals(40, a.counters().drops(DropReason.STORM));
        sw.tick(SECOND + SECOND / 10);
        send(a, plain(EthernetDescriptor.BROADCAST, A));
        assertEquals(61, rb.count(), "refilled after 100 ms");
    }

    @Test
    void shouldCountAndDropMalformedFrames() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withTrunk(0, 5), ra, null);
        vnic("b", B, rb);
        send(a, new byte[13]);
        byte[] shortTag = java.util.Arrays.copyOf(tagged(B, A, 5), 17);
        send(a, shortTag);
        send(a, tagged(B, A, 4095));
        send(a, frame(B, A, 5, 0x8100, new byte[46])); // stacked 802.1Q
        send(a, frame(B, A, -1, 0x88a8, new byte[46])); // 802.1ad
        send(a, plain(B, 0x01_00_00_00_00_01L)); // multicast source
        sw.receive(a, buf(new byte[VSwitch.MAX_FRAME + 1]), 0, VSwitch.MAX_FRAME + 1);
        PortCounters c = a.counters();
        assertEquals(1, c.drops(DropReason.RUNT));
        assertEquals(4, c.drops(DropReason.BAD_VLAN));
        assertEquals(1, c.drops(DropReason.BAD_SOURCE_MAC));
        assertEquals(1, c.drops(DropReason.OVERSIZE));
        assertEquals(0, rb.count());
        send(a, plain(B, A));
        assertEquals(1, rb.count(), "the port keeps working after malformed input");
    }

    @Test
    void shouldDropFramesFromTheUplinkThatClaimALocalVnicMac() {
        Port up = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        vnic("a", A, ra);
        vnic("b", B, rb);
        send(up, plain(B, A)); // A lives behind port a: this frame looped back through the wire
        assertEquals(0, rb.count());
        assertEquals(1, up.counters().drops(DropReason.LOOP));
        send(sw.ports().get(1), plain(EthernetDescriptor.BROADCAST, A));
        assertEquals(1, rc.count());
        assertEquals(0, up.counters().txPackets() - 1, "never sent back to the port it came from");
    }

    @Test
    void shouldCountEgressFullAndRefuseOnlyOffloadsItCannotDoInSoftware() {
        Port a = vnic("a", A, ra);
        Port b = vnic("b", B, rb);
        rb.full = true;
        send(a, plain(B, A));
        assertEquals(1, b.counters().drops(DropReason.EGRESS_FULL));
        rb.full = false;
        PacketMeta ufo = new PacketMeta();
        ufo.flags = PacketMeta.FLAG_NEEDS_CSUM;
        ufo.gsoType = PacketMeta.GSO_UDP; // UFO: IP fragmentation is not done in software
        ufo.gsoSize = 1000;
        ufo.csumStart = 34;
        ufo.csumOffset = 6;
        byte[] f = frame(B, A, -1, 0x0800, ipv4(17, udp(1000, 2000)));
        sw.receive(a, buf(f), 0, f.length, ufo);
        assertEquals(1, b.counters().drops(DropReason.OFFLOAD_UNSUPPORTED));
        assertEquals(0, rb.count());
        rb.offloads = true;
        sw.configure(b, b.config()); // re-reads the sink's capabilities
        ufo.gsoType = PacketMeta.GSO_TCPV4;
        sw.receive(a, buf(f), 0, f.length, ufo);
        assertEquals(1, rb.count(), "an offload-capable sink takes the frame unfinished");
    }

    @Test
    void shouldEnforceSwitchTypeRules() {
        VSwitch priv = new VSwitch("p", SwitchType.PRIVATE);
        assertThrows(IllegalArgumentException.class,
            () -> priv.addPort("h", PortKind.HOST, PortConfig.uplink(), FrameSink.DISCARD, null));
        VSwitch internal = new VSwitch("i", SwitchType.INTERNAL);
        internal.addPort("h", PortKind.HOST, PortConfig.uplink(), FrameSink.DISCARD, null);
        assertThrows(IllegalArgumentException.class,
            () -> internal.addPort("u", PortKind.UPLINK, PortConfig.uplink(), FrameSink.DISCARD, null));
        assertThrows(IllegalArgumentException.class,
            () -> internal.addPort("h2", PortKind.HOST, PortConfig.uplink(), FrameSink.DISCARD, null));
    }

    @Test
    void shouldForgetAPortsAddressesWhenItIsRemoved() {
        Port a = vnic("a", A, ra);
        Port b = vnic("b", B, rb);
        sw.removePort(b);
        assertNull(sw.lookup(0, B));
        send(a, plain(B, A));
        assertEquals(0, rb.count());
    }

    @Test
    void shouldSurviveRandomFramesFromEveryKindOfPort() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withTrunk(3, 3, 4).withGuards(true, true, true), ra, null);
        Port up = sw.addPort("up", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        vnic("b", B, rb);
        Random rnd = new Random(7);
        for (int i = 0; i < 50_000; i++) {
            byte[] f = new byte[rnd.nextInt(120)];
            rnd.nextBytes(f);
            if (f.length > 14 && rnd.nextBoolean()) {
                f[12] = (byte) 0x81;
                f[13] = 0;
            }
            if (f.length > 18 && rnd.nextBoolean()) {
                f[16] = (byte) (rnd.nextBoolean() ? 0x86 : 0x08);
                f[17] = (byte) (f[16] == (byte) 0x86 ? 0xdd : 0x00);
            }
            sw.receive(rnd.nextBoolean() ? a : up, buf(f), 0, f.length);
        }
        long total = a.counters().rxPackets() + up.counters().rxPackets();
        assertEquals(50_000, total);
    }

    /** An IPv6 packet from {@code src} (hi, lo) with the given upper layer. */
    private static byte[] ipv6From(long[] src, int next, byte[] rest) {
        byte[] p = Frames.ipv6(next, rest);
        java.nio.ByteBuffer.wrap(p).putLong(8, src[0]).putLong(16, src[1]);
        return p;
    }

    /** ICMPv6 ND message: type, target (null for RS), and one link-layer address option (kind 1/2) or none. */
    private static byte[] nd(int type, long[] target, int optionKind, long optionMac) {
        int fixed = type == 133 ? 8 : 24;
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(fixed + (optionKind == 0 ? 0 : 8));
        bb.put((byte) type).put((byte) 0).putShort((short) 0).putInt(type == 136 ? 0x6000_0000 : 0);
        if (target != null) {
            bb.putLong(target[0]).putLong(target[1]);
        }
        if (optionKind != 0) {
            bb.put((byte) optionKind).put((byte) 1).putShort((short) (optionMac >>> 32)).putInt((int) optionMac);
        }
        return bb.array();
    }

    /**
     * IPv6 spoofing guard and ND inspection (ip_addresses with an IPv6 entry): the port may send from its address,
     * its EUI-64 link-local address and :: only; NA may only announce its own addresses, and RS/NS/NA link-layer
     * options must carry its own MAC. Before: IPv6 and ND were not inspected at all.
     */
    @Test
    void shouldDropIpv6FromForeignSourcesAndNdThatAnnouncesForeignAddressesOrMacs() {
        long[] own = PortConfig.ipv6("fd00:81::2");
        long[] other = PortConfig.ipv6("fd00:81::9");
        long[] linkLocal = {0xfe80_0000_0000_0000L, Ipv6Guard.eui64(A)};
        long[] none = {0, 0};
        assertEquals(PortConfig.ipv6("fe80::ff:fe00:a")[1], linkLocal[1], "EUI-64 of 02:00:00:00:00:0a");
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withIpv6Addresses(own), ra, null);
        vnic("b", B, rb);
        send(a, frame(B, A, -1, 0x86dd, ipv6From(own, 17, Frames.udp(5000, 5001))));
        send(a, frame(B, A, -1, 0x86dd, ipv6From(linkLocal, 58, nd(135, other, 1, A))));  // NS with its own MAC
        send(a, frame(B, A, -1, 0x86dd, ipv6From(none, 58, nd(135, own, 0, 0))));         // DAD probe
        send(a, frame(B, A, -1, 0x86dd, ipv6From(own, 58, nd(136, own, 2, A))));          // NA for itself
        send(a, frame(B, A, -1, 0x86dd, ipv6From(linkLocal, 58, nd(133, null, 1, A))));   // RS
        send(a, frame(B, A, -1, 0x0800, Frames.ipv4(17, Frames.udp(1, 2))));              // IPv4 not guarded here
        assertEquals(6, rb.count(), a.counters().snapshot().toString());

        send(a, frame(B, A, -1, 0x86dd, ipv6From(other, 17, Frames.udp(5000, 5001))));
        send(a, frame(B, A, -1, 0x86dd, ipv6From(new long[] {0xfe80_0000_0000_0000L, 9}, 58, nd(135, own, 1, A))));
        assertEquals(2, a.counters().drops(DropReason.IP_SPOOF));
        send(a, frame(B, A, -1, 0x86dd, ipv6From(own, 58, nd(136, other, 2, A))));        // NA for someone else
        send(a, frame(B, A, -1, 0x86dd, ipv6From(own, 58, nd(136, own, 2, C))));          // NA with a forged MAC
        send(a, frame(B, A, -1, 0x86dd, ipv6From(linkLocal, 58, nd(135, other, 1, C))));  // NS with a forged MAC
        send(a, frame(B, A, -1, 0x86dd, ipv6From(linkLocal, 58, nd(133, null, 1, C))));   // RS with a forged MAC
        byte[] zeroLength = nd(135, other, 1, A);
        zeroLength[25] = 0;
        send(a, frame(B, A, -1, 0x86dd, ipv6From(linkLocal, 58, zeroLength)));            // malformed option
        send(a, frame(B, A, -1, 0x86dd, ipv6From(own, 60, Frames.hopByHop(58, nd(136, other, 2, A))))); // behind dest-opts
        assertEquals(6, a.counters().drops(DropReason.ND_SPOOF), a.counters().snapshot().toString());
        assertEquals(6, rb.count());
    }

    /** An IPv4 UDP packet from {@code src} to {@code dst} with ports and payload (checksums zero: the switch ignores them). */
    private static byte[] udp4(int src, int dst, int sport, int dport, byte[] payload) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(28 + payload.length);
        bb.put((byte) 0x45).put((byte) 0).putShort((short) (28 + payload.length)).putInt(0);
        bb.put((byte) 64).put((byte) 17).putShort((short) 0).putInt(src).putInt(dst);
        bb.putShort((short) sport).putShort((short) dport).putShort((short) (8 + payload.length)).putShort((short) 0);
        return bb.put(payload).array();
    }

    /** A DHCP server message (BOOTREPLY) of {@code type} leasing {@code yiaddr} to {@code chaddr} for {@code seconds}. */
    private static byte[] dhcpReply(int type, long chaddr, int yiaddr, int seconds) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(236 + 4 + 3 + 6 + 1);
        bb.put((byte) 2).put((byte) 1).put((byte) 6).put((byte) 0).putInt(0x1234).putInt(0).putInt(0).putInt(yiaddr);
        bb.putInt(0).putInt(0).putInt((int) (chaddr >>> 16)).putShort((short) chaddr);
        bb.position(236);
        bb.putInt(0x6382_5363).put((byte) 53).put((byte) 1).put((byte) type);
        bb.put((byte) 51).put((byte) 4).putInt(seconds).put((byte) 255);
        return bb.array();
    }

    /**
     * DHCP snooping: a vNIC whose IP guard is on with no static address (the config's "dhcp") may use the address a
     * DHCPACK from the uplink leased it, until the lease ends; an OFFER, or an ACK from a port the DHCP guard covers
     * (a rogue server), teaches nothing. Before: every address not listed was IP_SPOOF.
     */
    @Test
    void shouldAllowAnAddressLeasedByADhcpAckFromAnAllowedServerUntilTheLeaseEnds() {
        sw.tick(SECOND);
        Port u = sw.addPort("u", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withIpAddresses(0), ra, null);
        Port rogue = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withGuards(false, true, false), rb, null);
        int leased = 0x0a_00_00_32;
        int server = 0x0a_00_00_01;
        byte[] fromLeased = frame(D, A, -1, 0x0800, udp4(leased, server, 5000, 53, new byte[8]));
        send(a, fromLeased);
        assertEquals(1, a.counters().drops(DropReason.IP_SPOOF), "not leased yet");
        send(u, frame(A, D, -1, 0x0800, udp4(server, leased, 67, 68, dhcpReply(2, A, leased, 10))));
        send(a, fromLeased);
        assertEquals(2, a.counters().drops(DropReason.IP_SPOOF), "an OFFER leases nothing");
        send(rogue, frame(A, B, -1, 0x0800, udp4(0x0a_00_00_02, leased, 67, 68, dhcpReply(5, A, leased, 10))));
        assertEquals(1, rogue.counters().drops(DropReason.DHCP_GUARD));
        send(a, fromLeased);
        assertEquals(3, a.counters().drops(DropReason.IP_SPOOF), "a guarded port's ACK teaches nothing");
        int before = ra.count();
        send(u, frame(A, D, -1, 0x0800, udp4(server, leased, 67, 68, dhcpReply(5, A, leased, 10))));
        assertEquals(before + 1, ra.count(), "the ACK reaches the client");
        assertEquals(1, a.counters().dhcpLeasesLearned());
        assertEquals(java.util.List.of("10.0.0.50"), a.dhcpLeases());
        int out = rc.count();
        send(a, fromLeased);
        assertEquals(out + 1, rc.count(), "the leased address passes");
        assertEquals(3, a.counters().drops(DropReason.IP_SPOOF));
        send(a, frame(D, A, -1, 0x0800, udp4(leased + 1, server, 5000, 53, new byte[8])));
        assertEquals(4, a.counters().drops(DropReason.IP_SPOOF), "only the leased address");
        sw.tick(SECOND + 11 * SECOND);
        send(a, fromLeased);
        assertEquals(5, a.counters().drops(DropReason.IP_SPOOF), "the lease ended");
        assertEquals(java.util.List.of(), a.dhcpLeases());
    }

    /** A DHCPv6 message of {@code type} (UDP 547 → 546) with one IA_NA holding one IAADDR; {@code iaaddrLength} 24 is valid. */
    private static byte[] dhcp6(int type, long[] address, int validSeconds, int iaaddrLength) {
        return udp6(547, 546, dhcp6Message(type, address, validSeconds, iaaddrLength));
    }

    /** The DHCPv6 message of {@link #dhcp6} without its UDP header. */
    private static byte[] dhcp6Message(int type, long[] address, int validSeconds, int iaaddrLength) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(4 + 4 + 12 + 4 + 24);
        bb.putInt(type << 24 | 0x00_abcd);
        bb.putShort((short) 3).putShort((short) (12 + 4 + 24)).putInt(1).putInt(0).putInt(0);   // IA_NA
        bb.putShort((short) 5).putShort((short) iaaddrLength).putLong(address[0]).putLong(address[1]);
        bb.putInt(validSeconds).putInt(validSeconds);
        return bb.array();
    }

    /** {@code message} behind a UDP header. */
    private static byte[] udp6(int srcPort, int dstPort, byte[] message) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(8 + message.length);
        bb.putShort((short) srcPort).putShort((short) dstPort).putShort((short) bb.capacity()).putShort((short) 0);
        return bb.put(message).array();
    }

    /**
     * A RELAY-REPL (13: hop count, link-address, peer-address) with an Interface-ID option (18) and then a Relay
     * Message option (9) whose declared length is {@code relayMsgLength} (the message's length when valid).
     */
    private static byte[] relayReply(byte[] message, int relayMsgLength) {
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.allocate(34 + 8 + 4 + message.length);
        bb.put((byte) 13).put((byte) 0).putLong(0).putLong(0).putLong(0xfe80_0000_0000_0000L).putLong(0x1234);
        bb.putShort((short) 18).putShort((short) 4).putInt(7);                                   // Interface-ID
        bb.putShort((short) 9).putShort((short) relayMsgLength).put(message);                    // Relay Message
        return bb.array();
    }

    /** {@code message} wrapped in {@code depth} RELAY-REPLs. */
    private static byte[] relayed(byte[] message, int depth) {
        for (int i = 0; i < depth; i++) {
            message = relayReply(message, message.length);
        }
        return message;
    }

    /**
     * A guarded port is a client: it may not send a RELAY-REPL toward a relay or server port (547) from whatever
     * port, as it may not send a REPLY. Before: only source port 547 or destination 546 were dropped, so a
     * RELAY-REPL from 5555 to 547 passed. A client's SOLICIT (546 → 547) and a RELAY-FORW-less UDP to 547 pass.
     */
    @Test
    void shouldDropARelayReplyFromAGuardedPortWhateverItsSourcePort() {
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withGuards(false, true, false), ra, null);
        vnic("b", B, rb);
        long[] leased = PortConfig.ipv6("fd00:83::150");
        byte[] relayRepl = relayed(dhcp6Message(7, leased, 60, 24), 1);
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, udp6(547, 547, relayRepl))));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, udp6(5555, 547, relayRepl))));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, udp6(5555, 547, dhcp6Message(7, leased, 60, 24)))));
        assertEquals(0, rb.count());
        assertEquals(3, a.counters().drops(DropReason.DHCP_GUARD));
        send(a, frame(B, A, -1, 0x86dd, Frames.ipv6(17, udp6(546, 547, dhcp6Message(1, leased, 60, 24))))); // SOLICIT
        assertEquals(1, rb.count(), "a client's SOLICIT passes");
    }

    /**
     * DHCPv6 relay snooping: a RELAY-REPL (UDP 547 → 547) from an unguarded port to a guarded vNIC's MAC (a relay
     * agent or lightweight relay, RFC 6221, behind that NIC) whose Relay Message is a REPLY, also through two
     * relays, leases its addresses as a direct REPLY does. Relayed ADVERTISEs, a Relay Message running past the
     * RELAY-REPL, relays nested deeper than 8 (the hop-count limit), and a RELAY-REPL without a Relay Message
     * teach nothing. Before: RELAY-REPL was not read at all.
     */
    @Test
    void shouldAllowAnAddressLeasedByARelayedDhcpv6Reply() {
        sw.tick(SECOND);
        Port u = sw.addPort("u", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withIpv6Addresses(0, 0), ra, null);
        long[] leased = PortConfig.ipv6("fd00:83::150");
        long[] nested = PortConfig.ipv6("fd00:83::151");
        long[] server = PortConfig.ipv6("fd00:83::1");
        byte[] reply = dhcp6Message(7, leased, 60, 24);
        byte[] fromLeased = frame(D, A, -1, 0x86dd, ipv6From(leased, 17, Frames.udp(5000, 53)));
        byte[] fromNested = frame(D, A, -1, 0x86dd, ipv6From(nested, 17, Frames.udp(5000, 53)));
        byte[] tooLong = relayReply(reply, reply.length + 1);
        byte[] noRelayMessage = java.util.Arrays.copyOf(relayReply(new byte[0], 0), 34 + 8);
        for (byte[] untrusted : new byte[][] {relayed(dhcp6Message(2, leased, 60, 24), 1), tooLong, noRelayMessage,
            relayed(dhcp6Message(7, leased, 60, 25), 1), relayed(reply, 9)}) {
            send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, udp6(547, 547, untrusted))));
        }
        send(a, fromLeased);
        assertEquals(1, a.counters().drops(DropReason.IP_SPOOF), "untrusted relays lease nothing");
        assertEquals(0, a.counters().dhcpLeasesLearned());
        send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, udp6(547, 547, relayed(reply, 1)))));
        send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, udp6(547, 547, relayed(dhcp6Message(7, nested, 60, 24), 8)))));
        assertEquals(2, a.counters().dhcpLeasesLearned());
        int out = rc.count();
        send(a, fromLeased);
        send(a, fromNested);
        assertEquals(out + 2, rc.count(), "both relayed leases pass");
        assertEquals(1, a.counters().drops(DropReason.IP_SPOOF));
        sw.tick(SECOND + 61 * SECOND);
        send(a, fromLeased);
        assertEquals(2, a.counters().drops(DropReason.IP_SPOOF), "the lease ended");
    }

    /**
     * DHCPv6 snooping: a vNIC with the IPv6 guard and no static address (the config's "dhcp6") may use an address a
     * REPLY from the uplink leased it (to its MAC), until the valid lifetime ends; an ADVERTISE, a REPLY whose IAADDR
     * runs past its IA, and one from a port the DHCP guard covers teach nothing. Before: every address not listed
     * was IP_SPOOF.
     */
    @Test
    void shouldAllowAnAddressLeasedByADhcpv6ReplyFromAnAllowedServerUntilItsLifetimeEnds() {
        sw.tick(SECOND);
        Port u = sw.addPort("u", PortKind.UPLINK, PortConfig.uplink(), rc, null);
        Port a = sw.addPort("a", PortKind.VNIC, PortConfig.vnic(A).withIpv6Addresses(0, 0), ra, null);
        Port rogue = sw.addPort("b", PortKind.VNIC, PortConfig.vnic(B).withGuards(false, true, false), rb, null);
        long[] leased = PortConfig.ipv6("fd00:83::150");
        long[] server = PortConfig.ipv6("fe80::1");
        byte[] fromLeased = frame(D, A, -1, 0x86dd, ipv6From(leased, 17, Frames.udp(5000, 53)));
        send(a, fromLeased);
        assertEquals(1, a.counters().drops(DropReason.IP_SPOOF), "not leased yet");
        send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, dhcp6(2, leased, 60, 24))));
        send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, dhcp6(7, leased, 60, 25))));
        send(rogue, frame(A, B, -1, 0x86dd, ipv6From(server, 17, dhcp6(7, leased, 60, 24))));
        assertEquals(1, rogue.counters().drops(DropReason.DHCP_GUARD));
        send(a, fromLeased);
        assertEquals(2, a.counters().drops(DropReason.IP_SPOOF), "ADVERTISE, a malformed REPLY, a rogue REPLY: no lease");
        send(u, frame(A, D, -1, 0x86dd, ipv6From(server, 17, dhcp6(7, leased, 60, 24))));
        assertEquals(1, a.counters().dhcpLeasesLearned());
        assertEquals(java.util.List.of("fd00:83:0:0:0:0:0:150"), a.dhcpLeases());
        int out = rc.count();
        send(a, fromLeased);
        assertEquals(out + 1, rc.count(), "the leased address passes");
        send(a, frame(D, A, -1, 0x86dd, ipv6From(PortConfig.ipv6("fd00:83::151"), 17, Frames.udp(5000, 53))));
        assertEquals(3, a.counters().drops(DropReason.IP_SPOOF), "only the leased address");
        sw.tick(SECOND + 61 * SECOND);
        send(a, fromLeased);
        assertEquals(4, a.counters().drops(DropReason.IP_SPOOF), "the lease ended");
    }
}
