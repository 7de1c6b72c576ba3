package io.phost.vswitch;

import static io.phost.vswitch.EthernetDescriptor.HEADER_LENGTH;
import static io.phost.vswitch.EthernetDescriptor.SRC_OFFSET;
import static io.phost.vswitch.EthernetDescriptor.TPID_8021AD;
import static io.phost.vswitch.EthernetDescriptor.TPID_8021Q;
import static io.phost.vswitch.EthernetDescriptor.TYPE_OFFSET;
import static io.phost.vswitch.EthernetDescriptor.VID_MASK;
import static io.phost.vswitch.EthernetDescriptor.VID_RESERVED;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.agrona.DirectBuffer;
import org.agrona.collections.Long2LongHashMap;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A learning L2 switch. One thread owns it (its {@link SwitchAgent}); {@link #receive} is the whole data path:
 * <pre>
 *  ingress(port, frame) ─▶ parse (runt / oversize / 802.1Q) ─▶ classify VLAN (untagged/access/trunk)
 *      ─▶ MAC spoofing ─▶ DHCP / router guard ─▶ learn (vlan, src) ─▶ look up (vlan, dst)
 *      ├─ known unicast ─▶ egress port (tag added / stripped / kept) ─▶ sink
 *      └─ broadcast / multicast / unknown ─▶ storm limit ─▶ every other port carrying the VLAN
 *      └─ mirror: copies of frames to or from SOURCE ports go to DESTINATION ports
 * </pre>
 * Nothing here allocates per frame: re-tagged variants are built in two preallocated scratch buffers, offload
 * metadata in two preallocated {@link PacketMeta}s, and the MAC table is an open-addressing primitive map.
 *
 * <p>MAC table entry: key = {@code vlan << 48 | mac}; value = {@code static(1) | lastSeenMillis(47) | port+1(16)}.
 *
 * <p>Why one class of about 620 lines: {@link #receive} and the MAC table, port array and scratch buffers it uses
 * stay together so the per-frame path has no extra hop or allocation.
 */
public final class VSwitch {
    /** GSO super-frames from TAP/AF_PACKET are up to 64 KiB plus headers. */
    public static final int MAX_FRAME = 65_550;
    public static final int MAX_PORTS = 4096;
    /** 802.3 minimum frame without FCS. */
    public static final int MIN_FRAME = 60;
    private static final long STATIC_BIT = 1L << 63;
    private static final long MISSING = 0;
    private static final long REFRESH_MILLIS = 1000;

    private final String name;
    private final SwitchType type;
    private final long agingMillis;
    private final Long2LongHashMap macTable = new Long2LongHashMap(1024, 0.6f, MISSING);
    /**
     * Changes whenever a (vlan, MAC) may map to another port, or a port's policy or presence changed: a source
     * port's cached last destination ({@link #unicastDestination}) is valid only while this is unchanged.
     */
    private long macVersion;
    private final Port[] ports = new Port[MAX_PORTS];
    private int portLimit;
    private Port[] mirrorDestinations = new Port[0];
    /** Ports with an IPv4 (IPv6) guard: DHCP ACKs (DHCPv6 REPLYs) are only read while there is one. */
    private int snoopingPorts;
    private int snooping6Ports;
    private final DhcpSnooping dhcp = new DhcpSnooping();
    private volatile List<Port> portList = List.of();

    private final UnsafeBuffer untagged = new UnsafeBuffer(ByteBuffer.allocateDirect(MAX_FRAME + 8));
    private final UnsafeBuffer tagged = new UnsafeBuffer(ByteBuffer.allocateDirect(MAX_FRAME + 8));
    private final PacketMeta untaggedMeta = new PacketMeta();
    private final PacketMeta taggedMeta = new PacketMeta();
    private final SoftwareOffload software = new SoftwareOffload();

    private long nowNanos;
    private long nowMillis;
    private long lastSweepMillis;
    private long frameSeq;

    // Per-frame state, set by receive() for the egress helpers.
    private Port fIn;
    private DirectBuffer fBuffer;
    private int fOffset;
    private int fLength;
    private PacketMeta fMeta;
    private int fVid;          // tag on the wire (-1 none, 0 priority-only)
    private int fPcp;
    private int fPayload;      // offset of the (inner) ethertype
    private int fEtype;        // the (inner) ethertype, for ACLs towards the destination
    private long fSrc;         // source MAC, for ACLs towards the destination
    private int fUntaggedLength;
    private int fTaggedVlan;   // which VLAN the tagged scratch holds, -1 none
    private boolean fUntaggedBuilt;

    public VSwitch(String name, SwitchType type, long macAgingMillis) {
        this.name = name;
        this.type = type;
        this.agingMillis = macAgingMillis;
    }

    /** A switch with Hyper-V's 300-second MAC aging. */
    public VSwitch(String name, SwitchType type) {
        this(name, type, 300_000);
    }

    public String name() {
        return name;
    }

    public SwitchType type() {
        return type;
    }

    /** Advances the switch's clock (System.nanoTime scale); ages the MAC table about once a second. */
    public void tick(long now) {
        nowNanos = now;
        nowMillis = now / 1_000_000;
        if (nowMillis - lastSweepMillis >= 1000) {
            lastSweepMillis = nowMillis;
            sweep();
        }
    }

    public long now() {
        return nowNanos;
    }

    /** Adds a port; rejects kinds the switch type does not allow (Hyper-V's rules). */
    public Port addPort(String portName, PortKind kind, PortConfig config, FrameSink sink, FrameSource source) {
        if (kind == PortKind.HOST && type == SwitchType.PRIVATE) {
            throw new IllegalArgumentException("a private switch has no management-OS port: " + name);
        }
        if (kind == PortKind.UPLINK && type != SwitchType.EXTERNAL) {
            throw new IllegalArgumentException("only an external switch has an uplink: " + name);
        }
        for (int i = 0; i < portLimit; i++) {
            Port p = ports[i];
            if (p != null && p.kind == kind && kind != PortKind.VNIC) {
                throw new IllegalArgumentException(name + " already has a " + kind + " port: " + p.name);
            }
            if (p != null && p.name.equals(portName)) {
                throw new IllegalArgumentException(name + " already has a port named " + portName);
            }
        }
        int slot = -1;
        for (int i = 0; i < MAX_PORTS; i++) {
            if (ports[i] == null) {
                slot = i;
                break;
            }
        }
        if (slot < 0) {
            throw new IllegalStateException(name + ": all " + MAX_PORTS + " ports in use");
        }
        Port p = new Port(this, slot, portName, kind, sink, source);
        p.apply(config, nowNanos);
        ports[slot] = p;
        portLimit = Math.max(portLimit, slot + 1);
        pinStaticMac(p);
        refreshLists();
        return p;
    }

    /**
     * A DHCPACK from a port the DHCP guard allows to serve: the client's port (its pinned MAC in the VLAN), when its IP
     * guard is on, may use the leased address until the lease ends.
     */
    private void learnLease(int vlan) {
        Port client = lookup(vlan, dhcp.clientMac);
        if (client == null || !client.ipGuard || client.mac != dhcp.clientMac) {
            return;
        }
        long until = dhcp.leaseSeconds == DhcpSnooping.INFINITE ? nowNanos + Long.MAX_VALUE / 2
            : nowNanos + Math.min(dhcp.leaseSeconds, 1L << 31) * 1_000_000_000L;
        client.lease(dhcp.leasedAddress, until);
        client.counters.dhcpLeaseLearned();
    }

    /**
     * A DHCPv6 REPLY from a port the DHCP guard allows to serve, sent to {@code clientMac}: the client's port (that
     * MAC pinned in the VLAN), when its IPv6 guard is on, may use each address until its valid lifetime ends
     * (0 ends a lease now: a released or declined address).
     */
    private void learnLeases6(int vlan, long clientMac) {
        Port client = lookup(vlan, clientMac);
        if (client == null || !client.ip6Guard || client.mac != clientMac) {
            return;
        }
        for (int i = 0; i < dhcp.count6; i++) {
            long s = dhcp.lifetimes6[i];
            long until = s == DhcpSnooping.INFINITE ? nowNanos + Long.MAX_VALUE / 2
                : nowNanos + Math.min(s, 1L << 31) * 1_000_000_000L;
            client.lease6(dhcp.addresses6[2 * i], dhcp.addresses6[2 * i + 1], until);
            client.counters.dhcpLeaseLearned();
        }
    }

    /** Applies a new policy to a port; learned addresses of the port are forgotten. */
    public void configure(Port p, PortConfig config) {
        checkOwn(p);
        forget(p);
        p.apply(config, nowNanos);
        pinStaticMac(p);
        refreshLists();
    }

    public void removePort(Port p) {
        checkOwn(p);
        p.up = false;
        forget(p);
        ports[p.index] = null;
        for (int i = 0; i < portLimit; i++) {
            if (ports[i] != null && ports[i].toPort != null) {
                ports[i].toPort.forget(p.index); // the slot's next port starts with no share history
            }
        }
        while (portLimit > 0 && ports[portLimit - 1] == null) {
            portLimit--;
        }
        refreshLists();
    }

    public void setUp(Port p, boolean up) {
        checkOwn(p);
        p.up = up;
    }

    private void checkOwn(Port p) {
        if (p.owner != this || ports[p.index] != p) {
            throw new IllegalArgumentException(p + " is not a port of " + name);
        }
    }

    /** The ports, for management (a copy; safe from any thread). */
    public List<Port> ports() {
        return portList;
    }

    private void refreshLists() {
        List<Port> all = new ArrayList<>();
        List<Port> mirrors = new ArrayList<>();
        for (int i = 0; i < portLimit; i++) {
            if (ports[i] != null) {
                all.add(ports[i]);
                if (ports[i].mirror == MirrorMode.DESTINATION) {
                    mirrors.add(ports[i]);
                }
            }
        }
        mirrorDestinations = mirrors.toArray(new Port[0]);
        macVersion++; // a port came, went or changed its policy (carries(vlan) may differ)
        int snooping = 0;
        int snooping6 = 0;
        for (Port p : all) {
            snooping += p.ipGuard ? 1 : 0;
            snooping6 += p.ip6Guard ? 1 : 0;
        }
        snoopingPorts = snooping;
        snooping6Ports = snooping6;
        portList = List.copyOf(all);
    }

    /** A vNIC with spoofing off owns its MAC in its VLANs: a static entry, never aged, never moved. */
    private void pinStaticMac(Port p) {
        if (p.kind != PortKind.VNIC || p.mac == -1) {
            return;
        }
        if (p.vlanMode == VlanMode.UNTAGGED) {
            pin(p, 0);
        } else if (p.vlanMode == VlanMode.ACCESS) {
            pin(p, p.accessVlan);
        } else {
            pin(p, p.nativeVlan);
            for (int v = 1; v < 4095; v++) {
                if (p.allowed(v)) {
                    pin(p, v);
                }
            }
        }
    }

    private void pin(Port p, int vlan) {
        macVersion++;
        macTable.put(((long) vlan << 48) | p.mac, STATIC_BIT | (p.index + 1));
    }

    private void forget(Port p) {
        macVersion++;
        Long2LongHashMap.EntryIterator it = macTable.entrySet().iterator();
        while (it.hasNext()) {
            it.next();
            if ((int) (it.getLongValue() & 0xffff) == p.index + 1) {
                it.remove();
            }
        }
        p.learned = 0;
    }

    private void sweep() {
        Long2LongHashMap.EntryIterator it = macTable.entrySet().iterator();
        while (it.hasNext()) {
            it.next();
            long v = it.getLongValue();
            if ((v & STATIC_BIT) == 0 && nowMillis - ((v >>> 16) & 0x7fff_ffff_ffffL) > agingMillis) {
                Port p = ports[(int) (v & 0xffff) - 1];
                if (p != null) {
                    p.learned--;
                }
                it.remove();
                macVersion++;
            }
        }
    }

    /** Number of MAC table entries (static and learned). */
    public int macTableSize() {
        return macTable.size();
    }

    /** The port that (vlan, mac) is currently learned or pinned on, or null. */
    public Port lookup(int vlan, long mac) {
        long v = macTable.get(((long) vlan << 48) | mac);
        return v == MISSING ? null : ports[(int) (v & 0xffff) - 1];
    }

    public void receive(Port in, DirectBuffer buffer, int offset, int length) {
        receive(in, buffer, offset, length, PacketMeta.NONE);
    }

    /** The data path: one frame from {@code in}. See the class comment. */
    public void receive(Port in, DirectBuffer b, int off, int len, PacketMeta meta) {
        in.counters.received(len);
        if (!in.up) {
            in.counters.dropped(DropReason.PORT_DOWN);
            return;
        }
        if (len < HEADER_LENGTH) {
            in.counters.dropped(DropReason.RUNT);
            return;
        }
        if (len > MAX_FRAME) {
            in.counters.dropped(DropReason.OVERSIZE);
            return;
        }
        long dst = EthernetDescriptor.mac(b, off);
        long src = EthernetDescriptor.mac(b, off + SRC_OFFSET);
        if (EthernetDescriptor.isMulticast(src) || src == 0) {
            in.counters.dropped(DropReason.BAD_SOURCE_MAC);
            return;
        }
        int etype = EthernetDescriptor.u16(b, off + TYPE_OFFSET);
        int vid = -1;
        int pcp = 0;
        int payload = off + TYPE_OFFSET;
        if (etype == TPID_8021Q) {
            if (len < EthernetDescriptor.TAGGED_HEADER_LENGTH) {
                in.counters.dropped(DropReason.BAD_VLAN);
                return;
            }
            int tci = EthernetDescriptor.u16(b, off + EthernetDescriptor.TCI_OFFSET);
            vid = tci & VID_MASK;
            pcp = tci >>> 13;
            etype = EthernetDescriptor.u16(b, off + EthernetDescriptor.INNER_TYPE_OFFSET);
            if (vid == VID_RESERVED || etype == TPID_8021Q || etype == TPID_8021AD) {
                in.counters.dropped(DropReason.BAD_VLAN);
                return;
            }
            payload = off + EthernetDescriptor.INNER_TYPE_OFFSET;
        } else if (etype == TPID_8021AD) {
            in.counters.dropped(DropReason.BAD_VLAN);
            return;
        }
        if (in.mtu != 0 && len - (payload + 2 - off) > in.mtu && meta.gsoType == PacketMeta.GSO_NONE) {
            in.counters.dropped(DropReason.OVERSIZE); // larger than the NIC's MTU allows
            return;
        }
        int vlan = in.classifyIngress(vid);
        if (vlan < 0) {
            in.counters.dropped(DropReason.VLAN_NOT_ALLOWED);
            return;
        }
        if (!in.macSpoofing && src != in.mac) {
            in.counters.dropped(DropReason.MAC_SPOOF);
            return;
        }
        if (in.guarded) {
            if (in.ipGuard && !Guards.claimsOwnAddress(b, payload + 2, off + len, etype, in.ipAddresses)
                && !in.leased(Guards.claimedIpv4(b, payload + 2, off + len, etype), nowNanos)) {
                in.counters.dropped(DropReason.IP_SPOOF);
                return;
            }
            if (in.ip6Guard && etype == EthernetDescriptor.TYPE_IPV6) {
                int g6 = Ipv6Guard.check(b, payload + 2, off + len, in, nowNanos);
                if (g6 != Ipv6Guard.PASS) {
                    in.counters.dropped(g6 == Ipv6Guard.SPOOF ? DropReason.IP_SPOOF : DropReason.ND_SPOOF);
                    return;
                }
            }
            int g = Guards.check(b, payload + 2, off + len, etype, in.dhcpGuard, in.routerGuard);
            if (g != Guards.PASS) {
                in.counters.dropped(g == Guards.DHCP ? DropReason.DHCP_GUARD : DropReason.ROUTER_GUARD);
                return;
            }
        }
        if ((in.aclOut || in.flows != null) && !aclAllows(in, false, dst, b, payload + 2, off + len, etype)) {
            in.counters.dropped(DropReason.ACL);
            return;
        }
        if (snoopingPorts > 0 && !in.dhcpGuard && etype == EthernetDescriptor.TYPE_IPV4
            && dhcp.readAck(b, payload + 2, off + len)) {
            learnLease(vlan);
        } else if (snooping6Ports > 0 && !in.dhcpGuard && etype == EthernetDescriptor.TYPE_IPV6
            && dhcp.readReply6(b, payload + 2, off + len)) {
            learnLeases6(vlan, dst);
        }
        // A vNIC with spoofing off can only send from its own MAC, which is pinned in every VLAN it carries:
        // nothing to learn (saves a hash probe per frame on the common path).
        if ((in.macSpoofing || in.kind != PortKind.VNIC) && !learn(in, vlan, src)) {
            return;
        }

        frameSeq++;
        fIn = in;
        fBuffer = b;
        fOffset = off;
        fLength = len;
        fMeta = meta;
        fVid = vid;
        fPcp = pcp;
        fPayload = payload;
        fEtype = etype;
        fSrc = src;
        fUntaggedBuilt = false;
        fTaggedVlan = -1;
        in.deliveredSeq = frameSeq;
        boolean mirrorThis = in.mirror == MirrorMode.SOURCE;

        if (!EthernetDescriptor.isMulticast(dst)) {
            Port out = unicastDestination(in, ((long) vlan << 48) | dst);
            if (out != null) {
                if (out == in) {
                    in.counters.dropped(DropReason.SAME_PORT);
                    return;
                }
                if (out.carries(vlan)) {
                    transmit(out, vlan);
                    mirrorThis |= out.mirror == MirrorMode.SOURCE;
                    if (mirrorThis) {
                        mirror(vlan);
                    }
                    return;
                }
            }
        }
        // Broadcast, multicast or unknown unicast: flood within the VLAN, under the storm limit.
        if (in.storm != null && !in.storm.tryConsume(1, nowNanos)) {
            in.counters.dropped(DropReason.STORM);
            return;
        }
        for (int i = 0; i < portLimit; i++) {
            Port out = ports[i];
            if (out != null && out != in && out.carries(vlan)) {
                transmit(out, vlan);
                mirrorThis |= out.mirror == MirrorMode.SOURCE;
            }
        }
        if (mirrorThis) {
            mirror(vlan);
        }
    }

    /**
     * The port {@code key} (vlan << 48 | MAC) is learned or pinned on, or null. A source port keeps its last
     * answer while the table and the ports are unchanged ({@link #macVersion}): a flow's frames skip the hash probe.
     */
    private Port unicastDestination(Port in, long key) {
        if (in.lastDstKey == key && in.lastDstVersion == macVersion) {
            return in.lastDst;
        }
        long v = macTable.get(key);
        Port out = v == MISSING ? null : ports[(int) (v & 0xffff) - 1];
        in.lastDstKey = key;
        in.lastDst = out;
        in.lastDstVersion = macVersion;
        return out;
    }

    /** Learns (vlan, src) on {@code in}; false when the frame must be dropped (a loop through the uplink). */
    private boolean learn(Port in, int vlan, long src) {
        long key = ((long) vlan << 48) | src;
        long v = macTable.get(key);
        int portField = in.index + 1;
        if (v != MISSING) {
            int owner = (int) (v & 0xffff);
            if ((v & STATIC_BIT) != 0) {
                if (owner != portField && in.kind == PortKind.UPLINK) {
                    in.counters.dropped(DropReason.LOOP);
                    return false;
                }
                return true;
            }
            if (owner == portField) {
                if (nowMillis - ((v >>> 16) & 0x7fff_ffff_ffffL) >= REFRESH_MILLIS) {
                    macTable.put(key, (nowMillis << 16) | portField);
                }
                return true;
            }
            Port old = ports[owner - 1];
            if (old != null) {
                old.learned--;
            }
            macTable.remove(key);
            macVersion++;
        }
        if (in.learned >= in.maxMacs) {
            in.counters.macLimitHit();
            return true;
        }
        in.learned++;
        macTable.put(key, (nowMillis << 16) | portField);
        macVersion++; // a refresh of the same port's entry (above) changes no mapping
        return true;
    }

    /**
     * Port ACLs of {@code p} for a frame from it ({@code towardsPort} false) or to it: a flow a stateful rule admitted
     * passes before the rules; a frame a stateful rule admits records its flow.
     */
    private boolean aclAllows(Port p, boolean towardsPort, long remoteMac, DirectBuffer b, int l3, int end, int etype) {
        AclFlowTable flows = p.flows;
        boolean tracked = flows != null && flows.key(b, l3, end, etype, towardsPort);
        if (tracked && flows.refresh(nowNanos)) {
            return true;
        }
        if (towardsPort ? !p.aclIn : !p.aclOut) {
            return true;
        }
        int decision = PortAcl.decide(p.acls, towardsPort, remoteMac, b, l3, end, etype);
        if (decision == PortAcl.ALLOW_STATEFUL && tracked) {
            flows.record(nowNanos);
        }
        return decision != PortAcl.DENY;
    }

    private void transmit(Port out, int vlan) {
        out.deliveredSeq = frameSeq;
        if (!out.up) {
            out.counters.dropped(DropReason.PORT_DOWN);
            return;
        }
        if ((out.aclIn || out.flows != null)
            && !aclAllows(out, true, fSrc, fBuffer, fPayload + 2, fOffset + fLength, fEtype)) {
            out.counters.dropped(DropReason.ACL);
            return;
        }
        send(out, out.egressTagged(vlan), vlan, false);
    }

    private void mirror(int vlan) {
        Port[] dests = mirrorDestinations;
        for (Port m : dests) {
            if (m.deliveredSeq != frameSeq && m.up) {
                m.deliveredSeq = frameSeq;
                send(m, vlan != 0, vlan, true);
            }
        }
    }

    private void send(Port out, boolean tag, int vlan, boolean mirrored) {
        DirectBuffer b;
        int off;
        int len;
        PacketMeta meta;
        if (!tag) {
            if (fVid < 0) {
                b = fBuffer;
                off = fOffset;
                len = fLength;
                meta = fMeta;
            } else {
                buildUntagged();
                b = untagged;
                off = 0;
                len = fUntaggedLength;
                meta = fMeta.isPlain() ? PacketMeta.NONE : untaggedMeta;
            }
        } else if (fVid == vlan) {
            b = fBuffer;
            off = fOffset;
            len = fLength;
            meta = fMeta;
        } else {
            len = buildTagged(vlan);
            b = tagged;
            off = 0;
            meta = fMeta.isPlain() ? PacketMeta.NONE : taggedMeta;
        }
        // The L3 packet is the same whatever tag the frame leaves with.
        if (out.mtu != 0 && meta.gsoType == PacketMeta.GSO_NONE && fOffset + fLength - fPayload - 2 > out.mtu) {
            out.counters.dropped(DropReason.OVERSIZE); // would exceed the destination NIC's MTU
            return;
        }
        if (out.toPort != null && !mirrored && !out.toPort.tryAdmit(fIn.index, fIn.weight, len, nowNanos)) {
            // Policed, each sender to its weighted share: a TCP sender sees the loss and slows down.
            out.counters.dropped(DropReason.BANDWIDTH);
            return;
        }
        if ((meta.requiredOffloads() & ~out.offloads) != 0) {
            // The destination cannot finish this frame (partial checksum, GSO): do what its NIC would, in
            // segments no larger than its MTU.
            int r = software.transmit(out.sink, b, off, len, meta, out.mtu);
            if (mirrored) {
                out.counters.mirrored(software.sentFrames);
            } else if (software.sentFrames > 0) {
                out.counters.transmittedSoftware(software.sentFrames, software.sentBytes);
            }
            if (r == SoftwareOffload.FULL) {
                out.counters.dropped(DropReason.EGRESS_FULL);
            } else if (r == SoftwareOffload.UNSUPPORTED) {
                out.counters.dropped(DropReason.OFFLOAD_UNSUPPORTED);
            }
            return;
        }
        if (out.sink.tryTransmit(b, off, len, meta)) {
            if (mirrored) {
                out.counters.mirrored();
            } else {
                out.counters.transmitted(len);
            }
        } else {
            out.counters.dropped(DropReason.EGRESS_FULL);
        }
    }

    private void buildUntagged() {
        if (fUntaggedBuilt) {
            return;
        }
        fUntaggedBuilt = true;
        // MACs, then everything from the inner ethertype on.
        untagged.putBytes(0, fBuffer, fOffset, 12);
        int rest = fOffset + fLength - fPayload;
        untagged.putBytes(12, fBuffer, fPayload, rest);
        fUntaggedLength = 12 + rest;
        if (fUntaggedLength < MIN_FRAME) {
            // Removing the tag must not make a runt: pad to 802.3's 60 bytes as a hardware switch would.
            untagged.setMemory(fUntaggedLength, MIN_FRAME - fUntaggedLength, (byte) 0);
            fUntaggedLength = MIN_FRAME;
        }
        int delta = 12 - (fPayload - fOffset);
        untaggedMeta.copyShifted(fMeta, delta);
    }

    private int buildTagged(int vlan) {
        int rest = fOffset + fLength - fPayload;
        if (fTaggedVlan != vlan) {
            fTaggedVlan = vlan;
            tagged.putBytes(0, fBuffer, fOffset, 12);
            tagged.putShort(12, (short) TPID_8021Q, ByteOrder.BIG_ENDIAN);
            tagged.putShort(14, (short) ((fPcp << 13) | vlan), ByteOrder.BIG_ENDIAN);
            tagged.putBytes(16, fBuffer, fPayload, rest);
            taggedMeta.copyShifted(fMeta, 16 - (fPayload - fOffset));
        }
        return 16 + rest;
    }

    // ---- agent support ----------------------------------------------------------------------------------

    Port portAt(int i) {
        return ports[i];
    }

    int portLimit() {
        return portLimit;
    }

    @Override
    public String toString() {
        return "VSwitch[" + name + ", " + type + "]";
    }
}
