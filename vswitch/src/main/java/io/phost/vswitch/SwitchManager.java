package io.phost.vswitch;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Several switches per appliance, by name. Thread-safe. */
public final class SwitchManager implements AutoCloseable {
    private final Map<String, ManagedSwitch> switches = new LinkedHashMap<>();
    private io.phost.core.vmbus.PollingMode polling = io.phost.core.vmbus.PollingMode.ADAPTIVE;

    /** How the agents of switches created from now on spin after work ({@code [host] polling}). */
    public synchronized void polling(io.phost.core.vmbus.PollingMode mode) {
        this.polling = java.util.Objects.requireNonNull(mode, "polling");
    }

    public synchronized ManagedSwitch create(SwitchSpec spec) {
        if (switches.containsKey(spec.name())) {
            throw new IllegalArgumentException("switch " + spec.name() + " already exists");
        }
        ManagedSwitch s = ManagedSwitch.create(spec, polling);
        switches.put(spec.name(), s);
        return s;
    }

    public synchronized ManagedSwitch get(String name) {
        ManagedSwitch s = switches.get(name);
        if (s == null) {
            throw new IllegalArgumentException("no switch named " + name);
        }
        return s;
    }

    public synchronized List<ManagedSwitch> all() {
        return new ArrayList<>(switches.values());
    }

    public synchronized void remove(String name) {
        ManagedSwitch s = switches.remove(name);
        if (s != null) {
            s.close();
        }
    }

    /** Every switch's per-port counters: switch to port to counter. */
    public synchronized Map<String, Map<String, Map<String, Long>>> counters() {
        Map<String, Map<String, Map<String, Long>>> m = new LinkedHashMap<>();
        for (ManagedSwitch s : switches.values()) {
            m.put(s.spec().name(), s.counters());
        }
        return m;
    }

    public synchronized String metrics() {
        StringBuilder sb = new StringBuilder();
        for (ManagedSwitch s : switches.values()) {
            sb.append(s.metrics());
        }
        return sb.toString();
    }

    @Override
    public synchronized void close() {
        for (ManagedSwitch s : switches.values()) {
            s.close();
        }
        switches.clear();
    }
}
