package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.SwitchConfig;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The only place that turns a validated {@link ApplianceConfig} into running parts: disks, QoS, switches,
 * partitions, in that order (so each part finds what it depends on already running). A failure part-way
 * throws; the caller closes whatever was added to the {@link Appliance}.
 */
public final class Assembler {
    private Assembler() {}

    public static void assemble(ApplianceConfig cfg, Appliance app) throws Exception {
        DisksComponent disks = app.add(DisksComponent.open(cfg));
        QosComponent qos = app.add(new QosComponent(cfg));
        StorageComponent storage = app.add(new StorageComponent(cfg, disks, qos));
        app.add(PartitionsComponent.start(cfg, List.of(storage)));
        app.add(new PendingComponent(cfg));
    }

    /** Lists configured parts whose module is not wired yet, so the status is honest about them. */
    private record PendingComponent(ApplianceConfig cfg) implements Component {
        @Override
        public String name() {
            return "configured";
        }

        @Override
        public Object status() {
            List<Object> rows = new ArrayList<>();
            for (SwitchConfig s : cfg.switches()) {
                rows.add(row("switch", s.name(), s.type().toString().toLowerCase()));
            }
            return rows;
        }

        private static Map<String, Object> row(String kind, String name, String what) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("kind", kind);
            m.put("name", name);
            m.put("what", what);
            m.put("state", "configured (not wired yet)");
            return m;
        }

        @Override
        public void close() {
        }
    }
}
