package io.phost.appliance.config;

/**
 * One difference between the running config and a new one that can be made live (see {@link ConfigDiff}).
 *
 * @param name   the QoS policy, disk, switch or partition; for {@link Subject#PORT} and {@link Subject#ATTACHMENT}
 *               the partition (an attachment's before/after is its {@link DiskAttachment})
 * @param nic    the NIC's index in its partition for {@link Subject#PORT} and {@link Subject#NIC}, else -1
 * @param before the running item (null for an addition)
 * @param after  the new item (null for a removal)
 * @param detail the changed keys with old and new values ({@code vlan_access 10 -> 20}), empty for add/remove
 */
public record ConfigChange(Op op, Subject subject, String name, int nic, Object before, Object after, String detail) {
    public enum Op { ADD, CHANGE, REMOVE }

    /** In the order {@link ConfigDiff} lists (and a live apply makes) them. */
    public enum Subject { QOS_POLICY, SWITCH, DISK, PARTITION, DISK_POLICY, PORT, AUTOSTART, ATTACHMENT, NIC }

    /** The plan's line: {@code + qos_policy gold}, {@code ~ port web nic 0: vlan_access 10 -> 20}, {@code - switch lab}. */
    public String planLine() {
        String sign = switch (op) {
            case ADD -> "+";
            case CHANGE -> "~";
            case REMOVE -> "-";
        };
        String what = switch (subject) {
            case QOS_POLICY -> "qos_policy " + name;
            case SWITCH -> "switch " + name;
            case PARTITION -> "partition " + name + (op == Op.ADD ? " (started if autostart)" : " (stopped)");
            case DISK_POLICY -> "disk " + name;
            case DISK -> "disk " + name + (op == Op.ADD ? " (opened)" : " (closed)");
            case ATTACHMENT -> {
                DiskAttachment a = (DiskAttachment) (op == Op.ADD ? after : before);
                yield "disk " + a.disk() + " of partition " + name + " at controller " + a.controller() + " lun " + a.lun()
                    + (op == Op.ADD ? " (hot-add)" : " (hot-remove)");
            }
            case PORT -> "port of partition " + name + " nic " + nic;
            case NIC -> "nic " + nic + " of partition " + name + (op == Op.ADD
                ? " on switch " + ((NicConfig) after).switchName() + " (hot-add)" : " (hot-remove)");
            case AUTOSTART -> "partition " + name;
        };
        return sign + " " + what + (detail.isEmpty() ? "" : ": " + detail);
    }
}
