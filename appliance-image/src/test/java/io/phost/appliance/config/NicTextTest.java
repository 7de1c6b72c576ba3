package io.phost.appliance.config;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** NIC keys written into a config's text, for NICs as [[partition.nic]] tables and as inline tables. */
class NicTextTest {
    private static final String HEAD = "[host]\nname = \"h\"\ndata_dir = \"/tmp\"\n[[switch]]\nname = \"s\"\ntype = \"private\"\n";

    @Test
    void shouldReplaceAddAndRemoveKeysOfATableNicKeepingTheRest() throws Exception {
        String text = HEAD + """
            [[partition]]
            name = "p"
              [[partition.nic]]   # first
              switch = "s"
              vlan_access = 5
              acl = [
                "deny both 10.0.0.1",
              ]
              [[partition.nic]]
              switch = "s"
            """;
        Map<String, String> v = new LinkedHashMap<>();
        v.put("vlan_access", null);
        v.put("acl", NicText.strings(List.of("allow both 10.0.0.0/8")));
        v.put("dhcp_guard", "true");
        String out = NicText.set(text, 0, 0, v);
        assertEquals(HEAD + """
            [[partition]]
            name = "p"
              [[partition.nic]]   # first
              dhcp_guard = true
              switch = "s"
              acl = ["allow both 10.0.0.0/8"]
              [[partition.nic]]
              switch = "s"
            """, out);
        NicConfig n = ConfigLoader.parse("t.toml", out).partitions().getFirst().nics().getFirst();
        assertEquals(List.of("allow both 10.0.0.0/8"), n.acl());
        assertEquals(null, n.vlanAccess());
    }

    @Test
    void shouldEditAnInlineNicOnItsLine() throws Exception {
        String text = HEAD + """
            [[partition]]
            name = "p"
            nic = [{ switch = "s", vlan_access = 5 }, { switch = "s", acl = ["deny both 10.0.0.1"] }]  # two
            """;
        String out = NicText.set(text, 0, 1, Map.of("acl", NicText.strings(List.of("a \"b\""))));
        assertEquals(HEAD + """
            [[partition]]
            name = "p"
            nic = [{ switch = "s", vlan_access = 5 }, { switch = "s", acl = ["a \\"b\\""] }]  # two
            """, out);
        out = NicText.set(text, 0, 0, Map.of("max_bandwidth_in", "1000"));
        assertEquals(1000, ConfigLoader.parse("t.toml", out).partitions().getFirst().nics().getFirst().maxBandwidthIn());
    }
}
