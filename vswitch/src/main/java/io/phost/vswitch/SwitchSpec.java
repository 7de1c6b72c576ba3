package io.phost.vswitch;

import java.nio.file.Path;

/**
 * What the appliance asks for (New-VMSwitch parity).
 *
 * @param name              switch name (unique per appliance)
 * @param type              private, internal or external
 * @param uplink            external only: the interface to bind with AF_PACKET (never guessed)
 * @param allowManagementOs external: also give the host a vNIC (TAP); internal switches always have one
 * @param enableIov         try SR-IOV on the uplink for vNICs with iov_weight > 0
 * @param bandwidthMode     how minimum bandwidth is expressed (NONE disables weights)
 * @param vmqWorkers        VMQ worker threads for TAP-backed vNICs (0 = deliver on the switch thread)
 * @param hostTap           name of the management-OS TAP (null: derived, see {@link #hostTapName})
 * @param sysfsRoot         "/sys" in production; tests use a simulated tree
 * @param mtu               the switch's MTU: the host TAP's MTU and the upper bound of its vNICs' (68..9000)
 * @param uplinks           external: every uplink interface, {@code uplink} first; two or more form a team
 *                          ({@link TeamUplink}); null or empty = just {@code uplink}
 */
public record SwitchSpec(String name, SwitchType type, String uplink, boolean allowManagementOs, boolean enableIov,
                         BandwidthMode bandwidthMode, int vmqWorkers, String hostTap, Path sysfsRoot, int mtu,
                         java.util.List<String> uplinks) {
    public SwitchSpec(String name, SwitchType type, String uplink, boolean allowManagementOs, boolean enableIov,
                      BandwidthMode bandwidthMode, int vmqWorkers, String hostTap, Path sysfsRoot, int mtu) {
        this(name, type, uplink, allowManagementOs, enableIov, bandwidthMode, vmqWorkers, hostTap, sysfsRoot, mtu, null);
    }

    public SwitchSpec(String name, SwitchType type, String uplink, boolean allowManagementOs, boolean enableIov,
                      BandwidthMode bandwidthMode, int vmqWorkers, String hostTap, Path sysfsRoot) {
        this(name, type, uplink, allowManagementOs, enableIov, bandwidthMode, vmqWorkers, hostTap, sysfsRoot,
            PortConfig.DEFAULT_MTU);
    }

    public SwitchSpec {
        if (mtu < PortConfig.MIN_MTU || mtu > PortConfig.MAX_MTU) {
            throw new IllegalArgumentException("switch " + name + ": MTU must be " + PortConfig.MIN_MTU + ".."
                + PortConfig.MAX_MTU + ": " + mtu);
        }
        if (name == null || !name.matches("[A-Za-z0-9._-]{1,32}")) {
            throw new IllegalArgumentException("switch name must match [A-Za-z0-9._-]{1,32}: " + name);
        }
        if (type == SwitchType.EXTERNAL && (uplink == null || uplink.isBlank())) {
            throw new IllegalArgumentException("external switch " + name + " needs an uplink interface name");
        }
        if (type != SwitchType.EXTERNAL && uplink != null) {
            throw new IllegalArgumentException(type + " switch " + name + " cannot have an uplink");
        }
        if (vmqWorkers < 0) {
            throw new IllegalArgumentException("vmq workers must be >= 0");
        }
        uplinks = uplinks == null || uplinks.isEmpty() ? (uplink == null ? java.util.List.of() : java.util.List.of(uplink))
            : java.util.List.copyOf(uplinks);
        if (uplink != null && !uplinks.getFirst().equals(uplink)) {
            throw new IllegalArgumentException("switch " + name + ": uplink " + uplink + " must be the first of uplinks " + uplinks);
        }
        bandwidthMode = bandwidthMode == null ? BandwidthMode.WEIGHT : bandwidthMode;
        sysfsRoot = sysfsRoot == null ? Path.of("/sys") : sysfsRoot;
    }

    public static SwitchSpec privateSwitch(String name) {
        return new SwitchSpec(name, SwitchType.PRIVATE, null, false, false, BandwidthMode.WEIGHT, 0, null, null);
    }

    public static SwitchSpec internal(String name, String hostTap) {
        return new SwitchSpec(name, SwitchType.INTERNAL, null, true, false, BandwidthMode.WEIGHT, 0, hostTap, null);
    }

    public static SwitchSpec external(String name, String uplink, boolean allowManagementOs) {
        return new SwitchSpec(name, SwitchType.EXTERNAL, uplink, allowManagementOs, false, BandwidthMode.WEIGHT, 0, null, null);
    }

    /** True when the uplink is a team of two or more interfaces. */
    public boolean teamed() {
        return uplinks.size() > 1;
    }

    public boolean hasHostPort() {
        return type == SwitchType.INTERNAL || (type == SwitchType.EXTERNAL && allowManagementOs);
    }

    /**
     * The management-OS TAP: {@code hostTap} when given, else {@code phost-NAME} when that fits Linux's 15-byte
     * limit, else {@code ph} + the first 8 characters + {@code -} + 4 hex digits of a hash of the whole name,
     * so {@code internal-1} and {@code internal-2} no longer both become {@code phost-internal-}.
     */
    public String hostTapName() {
        if (hostTap != null) {
            return hostTap;
        }
        String n = "phost-" + name;
        if (n.length() <= 15) {
            return n;
        }
        return "ph" + name.substring(0, 8) + "-" + String.format("%04x", hash(name) & 0xffff);
    }

    /**
     * The name to use when {@link #hostTapName} is held by another process (a second phost on this machine
     * with the same switch name): unique per process, {@code ph} + 6 characters + {@code -} + 6 hex digits.
     */
    public String hostTapFallbackName(long pid) {
        return "ph" + name.substring(0, Math.min(6, name.length())) + "-"
            + String.format("%06x", (hash(name) * 31 + Long.hashCode(pid)) & 0xffffff);
    }

    private static int hash(String s) {
        java.util.zip.CRC32 crc = new java.util.zip.CRC32();
        crc.update(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        return (int) crc.getValue();
    }
}
