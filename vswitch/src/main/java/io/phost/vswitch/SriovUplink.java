package io.phost.vswitch;

import io.phost.core.sys.NetSyscalls;
import io.phost.core.sys.RtNetlink;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

/**
 * The SR-IOV model of an external switch's uplink, through the real Linux interfaces:
 * <pre>
 *  {sysfs}/class/net/{pf}/device/sriov_totalvfs   VFs the device supports (absent: no SR-IOV)
 *  {sysfs}/class/net/{pf}/device/sriov_numvfs     VFs enabled (write 0, then N, to change)
 *  {sysfs}/class/net/{pf}/device/virtfn{i}        link to VF i's PCI device (its name = the VFIO address)
 *  {sysfs}/class/net/{pf}/device/virtfn{i}/net/*  VF i's netdev, when a host driver is bound
 *  rtnetlink RTM_SETLINK IFLA_VFINFO_LIST          VF MAC, VLAN, spoofchk, trust (see {@link RtNetlink})
 * </pre>
 * {@code sysfsRoot} is {@code /sys} in production; tests point it at a temp tree with the same files and a
 * veth standing in for the VF's netdev. A vNIC with {@code iov_weight > 0} gets a VF; its synthetic NIC stays
 * as the failover and the guest says which path is live with SWITCH_DATA_PATH.
 */
public final class SriovUplink {
    private final Path device;
    private final String pf;
    private final int totalVfs;
    private final boolean[] assigned;

    /** A VF handed to a vNIC: its index, its netdev (null when only a VFIO consumer can use it), its PCI address. */
    public record VfAssignment(int vf, String netdev, String pciAddress, String settingsResult) {}

    private SriovUplink(Path device, String pf, int totalVfs) {
        this.device = device;
        this.pf = pf;
        this.totalVfs = totalVfs;
        this.assigned = new boolean[totalVfs];
    }

    /**
     * Probes {@code pf}. Returns the uplink, or throws {@link UnsupportedOperationException} whose message says
     * plainly why the VF path is unused (which the switch reports and then carries traffic synthetically).
     */
    public static SriovUplink probe(Path sysfsRoot, String pf) {
        Path dev = sysfsRoot.resolve("class/net").resolve(pf).resolve("device");
        Path total = dev.resolve("sriov_totalvfs");
        if (!Files.isDirectory(sysfsRoot.resolve("class/net").resolve(pf))) {
            throw new UnsupportedOperationException("SR-IOV unused: interface " + pf + " does not exist");
        }
        if (!Files.exists(total)) {
            throw new UnsupportedOperationException("SR-IOV unused: " + pf + " is not an SR-IOV capable device (no "
                + total + "); no SR-IOV hardware on this host, traffic stays on the synthetic path");
        }
        int n = readInt(total);
        if (n <= 0) {
            throw new UnsupportedOperationException("SR-IOV unused: " + pf + " reports sriov_totalvfs=" + n);
        }
        return new SriovUplink(dev, pf, n);
    }

    /** Why the VF path is unused on {@code pf}, or null when it can be used. */
    public static String whyUnused(Path sysfsRoot, String pf) {
        try {
            probe(sysfsRoot, pf);
            return null;
        } catch (UnsupportedOperationException e) {
            return e.getMessage();
        }
    }

    public int totalVfs() {
        return totalVfs;
    }

    public int numVfs() {
        return readInt(device.resolve("sriov_numvfs"));
    }

    /** Enables {@code n} VFs (the kernel requires going through 0 to change a non-zero count). */
    public void enableVfs(int n) {
        if (n < 0 || n > totalVfs) {
            throw new IllegalArgumentException(pf + ": " + n + " VFs requested, device supports " + totalVfs);
        }
        int cur = numVfs();
        if (cur == n) {
            return;
        }
        if (cur != 0) {
            write(device.resolve("sriov_numvfs"), "0");
        }
        write(device.resolve("sriov_numvfs"), Integer.toString(n));
    }

    /**
     * Takes the first free enabled VF for a vNIC, applies MAC/VLAN/spoofchk/trust through rtnetlink, and
     * returns where it is. {@code vlan} 0 = untagged. The settings result is "ok" or the kernel's refusal.
     */
    public synchronized VfAssignment allocate(long mac, int vlan, boolean spoofCheck, boolean trust) {
        int enabled = numVfs();
        for (int vf = 0; vf < Math.min(enabled, totalVfs); vf++) {
            if (!assigned[vf]) {
                assigned[vf] = true;
                Path fn = device.resolve("virtfn" + vf);
                String pci = pciAddress(fn);
                String netdev = netdevOf(fn);
                String result = applySettings(vf, mac, vlan, spoofCheck, trust);
                return new VfAssignment(vf, netdev, pci, result);
            }
        }
        throw new IllegalStateException(pf + ": all " + enabled + " enabled VFs are assigned");
    }

    public synchronized void release(int vf) {
        assigned[vf] = false;
    }

    private String applySettings(int vf, long mac, int vlan, boolean spoofCheck, boolean trust) {
        int index;
        try {
            index = NetSyscalls.ifNameToIndex(pf);
        } catch (RuntimeException e) {
            return "not applied: " + pf + " is not a kernel interface in this namespace (" + e.getMessage() + ")";
        }
        int r = RtNetlink.setVf(index, new RtNetlink.VfSettings(vf, mac, vlan, spoofCheck, trust));
        return r == 0 ? "ok" : "not applied: kernel refused RTM_SETLINK vf " + vf + " on " + pf + ": "
            + io.phost.core.sys.Native.strerror(-r) + " (errno " + (-r) + ")";
    }

    private static String pciAddress(Path virtfn) {
        try {
            return Files.isSymbolicLink(virtfn) ? Files.readSymbolicLink(virtfn).getFileName().toString()
                : virtfn.getFileName().toString();
        } catch (IOException e) {
            return null;
        }
    }

    private static String netdevOf(Path virtfn) {
        Path net = virtfn.resolve("net");
        if (!Files.isDirectory(net)) {
            return null; // bound to vfio-pci (or no driver): only a VFIO consumer can use it
        }
        try (Stream<Path> s = Files.list(net)) {
            List<String> names = new ArrayList<>(s.map(p -> p.getFileName().toString()).toList());
            names.sort(null);
            return names.isEmpty() ? null : names.getFirst();
        } catch (IOException e) {
            return null;
        }
    }

    private static int readInt(Path p) {
        try {
            return Integer.parseInt(Files.readString(p).trim());
        } catch (IOException | NumberFormatException e) {
            throw new UnsupportedOperationException("SR-IOV unused: cannot read " + p + ": " + e.getMessage());
        }
    }

    private static void write(Path p, String value) {
        try {
            Files.writeString(p, value);
        } catch (IOException e) {
            throw new IllegalStateException("cannot write " + value + " to " + p + ": " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "SriovUplink[" + pf + ", totalvfs=" + totalVfs + ", assigned=" + Arrays.toString(assigned) + "]";
    }
}
