package io.phost.appliance.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.text.Json;
import java.util.List;
import org.junit.jupiter.api.Test;

/** How the CLI reads partition documents: the exit code of `phost status` and the `partition list` table. */
class PartitionCliTest {
    private static final String STATUS = """
        {"name": "h", "state": "running", "partitions": [
          {"name": "web", "kind": "process", "state": "running", "pid": 10, "vcpus": 2, "memory_bytes": 268435456,
           "fault_count": 0, "reason": null},
          {"name": "vm1", "kind": "vm", "state": "crashed", "pid": null, "vcpus": 1, "memory_bytes": 536870912,
           "fault_count": 1, "reason": "QEMU exited with code 137"},
          {"name": "vm2", "kind": "vm", "state": "faulted", "pid": null, "vcpus": 1, "memory_bytes": 536870912,
           "fault_count": 8, "reason": "8 crashes in a row"}]}
        """;

    @Test
    void shouldNameEveryCrashedOrFaultedPartitionForTheStatusExitCode() {
        // The API's enum casing is snake_case ("crashed"); the check once compared with "CRASHED" and found none.
        assertEquals(List.of("vm1 (crashed: QEMU exited with code 137)", "vm2 (faulted: 8 crashes in a row)"),
            StatusCommand.troubled(Json.parse(STATUS)));
        assertEquals(List.of(), StatusCommand.troubled(Json.parse("{\"partitions\": [{\"name\": \"a\", \"state\": \"stopped\"}]}")));
        assertEquals(3, StatusCommand.EXIT_PARTITION_DOWN);
    }

    @Test
    void shouldShowEachVmsGuestAgentDataAsATable() {
        String doc = """
            {"partitions": [{"name": "web", "kind": "process", "details": {"restarts": "0"}},
              {"name": "vm1", "kind": "vm", "details": {"heartbeat": "OK", "guest_os": "Debian GNU/Linux 12",
                "guest_hostname": "web1", "guest_addresses": "eth0 10.0.0.2/24"}},
              {"name": "vm2", "kind": "vm", "details": {"heartbeat": "NO_CONTACT"}}]}
            """;
        List<String> lines = StatusCommand.guests(Json.parse(doc)).lines().toList();
        assertEquals("guests (qemu-guest-agent):", lines.get(1));
        assertTrue(lines.get(2).matches(" +partition +heartbeat +os +hostname +addresses"), lines.toString());
        assertTrue(lines.get(3).matches(" +vm1 +OK +Debian GNU/Linux 12 +web1 +eth0 10.0.0.2/24"), lines.toString());
        assertTrue(lines.get(4).matches(" +vm2 +NO_CONTACT +- +- +-"), lines.toString());
        assertEquals("", StatusCommand.guests(Json.parse("{\"partitions\": []}")), "no VM, no section");
    }

    @Test
    void shouldListPartitionsWithKindStateAndReason() {
        String t = PartitionCommand.table((List<?>) ((java.util.Map<?, ?>) Json.parse(STATUS)).get("partitions"));
        List<String> lines = t.lines().toList();
        assertTrue(lines.getFirst().matches("NAME +KIND +STATE +PID +VCPUS +MEMORY +FAULTS +REASON"), t);
        assertTrue(lines.get(1).matches("web +process +running +10 +2 +256MiB +0 +-"), t);
        assertTrue(lines.get(2).matches("vm1 +vm +crashed +- +1 +512MiB +1 +QEMU exited with code 137"), t);
        assertEquals("no partitions\n", PartitionCommand.table(List.of()));
    }
}
