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
 * @param hostTap           name of the management-OS TAP (null: "phost-" + name, cut to 15 bytes)
 * @param sysfsRoot         "/sys" in production; tests use a simulated tree
 */
public record SwitchSpec(String name, SwitchType type, String uplink, boolean allowManagementOs, boolean enableIov,
                         BandwidthMode bandwidthMode, int vmqWorkers, String hostTap, Path sysfsRoot) {
    public SwitchSpec {
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

    public boolean hasHostPort() {
        return type == SwitchType.INTERNAL || (type == SwitchType.EXTERNAL && allowManagementOs);
    }

    public String hostTapName() {
        String n = hostTap != null ? hostTap : "phost-" + name;
        return n.length() > 15 ? n.substring(0, 15) : n;
    }
}
