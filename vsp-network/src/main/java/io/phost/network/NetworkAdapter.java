package io.phost.network;

import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SriovUplink;
import io.phost.vswitch.VlanMode;

/**
 * A partition's network adapter as the appliance configures it (Add-VMNetworkAdapter + Set-VMNetworkAdapter):
 * a synthetic NIC on a switch port, plus an SR-IOV virtual function when the switch has IOV and the adapter's
 * {@code iov_weight > 0}. The synthetic NIC always stays as the failover; the guest moves its data path with
 * SWITCH_DATA_PATH ({@link NetVsp#dataPath()}). Offer {@link #vsp()} to the partition.
 */
public final class NetworkAdapter {
    private final NetVsp vsp;
    private final SriovUplink.VfAssignment vf;
    private final String vfStatus;

    private NetworkAdapter(NetVsp vsp, SriovUplink.VfAssignment vf, String vfStatus) {
        this.vsp = vsp;
        this.vf = vf;
        this.vfStatus = vfStatus;
    }

    /** Creates the adapter on {@code sw}: port with {@code config} (bandwidth mode applied), VF if possible. */
    public static NetworkAdapter attach(ManagedSwitch sw, String partition, String nic, PortConfig config, int mtu) {
        NetVsp vsp = new NetVsp(partition, nic, sw.effective(config), mtu, sw.agent());
        if (config.iovWeight() == 0) {
            return new NetworkAdapter(vsp, null, "SR-IOV not requested (iov_weight = 0)");
        }
        SriovUplink iov = sw.sriov();
        if (iov == null) {
            return new NetworkAdapter(vsp, null, sw.iovStatus());
        }
        try {
            int vlan = config.vlanMode() == VlanMode.ACCESS ? config.accessVlan() : 0;
            SriovUplink.VfAssignment a = iov.allocate(config.mac(), vlan, !config.macSpoofing(), false);
            return new NetworkAdapter(vsp, a, "VF " + a.vf() + (a.netdev() != null ? " netdev " + a.netdev()
                : " for VFIO at " + a.pciAddress()) + "; settings " + a.settingsResult());
        } catch (RuntimeException e) {
            return new NetworkAdapter(vsp, null, "SR-IOV unused: " + e.getMessage());
        }
    }

    public NetVsp vsp() {
        return vsp;
    }

    /** The VF, or null when traffic stays on the synthetic path ({@link #vfStatus()} says why). */
    public SriovUplink.VfAssignment vf() {
        return vf;
    }

    public String vfStatus() {
        return vfStatus;
    }

    /** "synthetic" or "vf": which path the guest currently uses. */
    public String dataPath() {
        return vsp.dataPath() == 1 ? "vf" : "synthetic";
    }
}
