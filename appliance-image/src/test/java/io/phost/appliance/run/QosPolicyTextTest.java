package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.QosPolicyConfig;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** A saved {@code qos set-policy}: its table is replaced in place (comments kept) or appended, and the file stays valid. */
class QosPolicyTextTest {
    private static final String TEXT = """
        [host]
        name = "h"
        data_dir = "/var/lib/phost-qtext"

        # gold: the database tier
        [[qos_policy]]
        name = "gold"
        max_iops = 1000 # agreed with the DBAs

        # bronze follows
        [[qos_policy]]
        name = "bronze"
        max_iops = 10
        """;

    @Test
    void shouldReplaceThePolicysTableInPlaceAndKeepTheRest() throws Exception {
        QosPolicyConfig gold = ConfigLoader.parseQosPolicy(Map.of("name", "gold", "max_iops", "500", "weight", "200"));
        String text = QosPolicyText.upsert(TEXT, gold);
        ApplianceConfig cfg = ConfigLoader.parse("t.toml", text);
        assertEquals(gold, cfg.qosPolicy("gold").orElseThrow());
        assertEquals(10, cfg.qosPolicy("bronze").orElseThrow().maxIops());
        assertTrue(text.contains("# gold: the database tier\n[[qos_policy]]\nname = \"gold\"") && text.contains("# bronze follows"), text);
    }

    @Test
    void shouldAppendANewPolicy() throws Exception {
        QosPolicyConfig silver = ConfigLoader.parseQosPolicy(Map.of("name", "silver", "min_iops", "20"));
        ApplianceConfig cfg = ConfigLoader.parse("t.toml", QosPolicyText.upsert(TEXT, silver));
        assertEquals(silver, cfg.qosPolicy("silver").orElseThrow());
        assertEquals(3, cfg.qosPolicies().size());
    }
}
