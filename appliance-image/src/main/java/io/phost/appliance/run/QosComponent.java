package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.QosPolicyConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.core.text.Json;
import io.phost.appliance.util.Query;
import io.phost.appliance.util.Records;
import io.phost.qos.QosFlowSnapshot;
import io.phost.qos.QosPolicy;
import io.phost.qos.QosService;
import io.prometheus.metrics.model.snapshots.Unit;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/** Storage QoS: the policies of appliance.toml, one flow per (partition, disk), and the flows' view. */
public final class QosComponent implements Component {
    private static final java.util.List<String> QOS_STATUSES =
        java.util.Arrays.stream(io.phost.qos.QosFlowStatus.values()).map(Enum::name).toList();

    private static final Logger LOG = System.getLogger("phost.qos");

    private final QosService service = new QosService();
    /** Told each policy {@code POST /v1/qos/policies} set, so the running config (and its saved copy) follows. */
    private volatile java.util.function.Consumer<QosPolicyConfig> onPolicySet = p -> { };
    private final ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r ->
        Thread.ofPlatform().daemon().name("qos-tick").unstarted(r));

    public QosComponent(ApplianceConfig cfg) {
        for (QosPolicyConfig p : cfg.qosPolicies()) {
            service.updatePolicy(toPolicy(p));
        }
        service.onAlert(a -> LOG.log(Level.WARNING, "qos alert partition=" + LogfmtLoggerFinder.quote(a.partition())
            + " disk=" + LogfmtLoggerFinder.quote(a.disk()) + " policy=" + LogfmtLoggerFinder.quote(String.valueOf(a.policy()))
            + " status=" + Records.enumValue(a.status()) + " message=" + LogfmtLoggerFinder.quote(a.message())));
        // The controller also runs on I/O; the timer keeps windows and statuses fresh when I/O is sparse.
        ticker.scheduleAtFixedRate(service::tick, 100, 100, TimeUnit.MILLISECONDS);
    }

    static QosPolicy toPolicy(QosPolicyConfig p) {
        return new QosPolicy(p.name(), QosPolicy.Type.valueOf(p.type().name()), p.minIops(), p.maxIops(),
            p.maxBandwidth(), p.normalizationSize(), p.weight());
    }

    void onPolicySet(java.util.function.Consumer<QosPolicyConfig> listener) {
        onPolicySet = listener;
    }

    public QosService service() {
        return service;
    }

    @Override
    public String name() {
        return "qos";
    }

    @Override
    public Object status() {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("policies", Records.toJsonable(service.policies()));
        s.put("flows", Records.toJsonable(service.flows()));
        s.put("alerts", service.alertCount());
        return s;
    }

    /** GET /v1/qos/flows (the flows in the shape of Get-StorageQosFlow), GET and POST /v1/qos/policies. */
    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        return Map.of("GET /v1/qos/flows", q -> HttpResponse.json(Json.pretty(Records.toJsonable(service.flows()))),
            "GET /v1/qos/policies", q -> HttpResponse.json(Json.pretty(Records.toJsonable(service.policies()))),
            "POST /v1/qos/policies", this::setPolicy);
    }

    /** The most policies a running host accepts over the API (each shows in /v1/status and /v1/metrics). */
    static final int MAX_POLICIES = 256;

    /**
     * POST /v1/qos/policies?name=N[&type=][&min_iops=][&max_iops=][&max_bandwidth=][&normalization_size=][&weight=]:
     * creates or changes a policy on the running host; live flows pick it up within a second. Unset fields keep
     * the policy's current values (a new policy: the config defaults). The values and their checks are those of
     * [[qos_policy]] in appliance.toml ({@link ConfigLoader#parseQosPolicy}), with the same messages.
     */
    private HttpResponse setPolicy(String query) {
        Map<String, String> q = Query.parse(query);
        if (!q.containsKey("name")) {
            return HttpResponse.error(400, HttpResponse.Reason.INVALID_ARGUMENT, "name: required key is missing");
        }
        Map<String, String> fields = new LinkedHashMap<>();
        service.policy(q.get("name")).ifPresent(base -> {
            fields.put("type", Records.enumValue(base.type()));
            fields.put("min_iops", Long.toString(base.minIops()));
            fields.put("max_iops", Long.toString(base.maxIops()));
            fields.put("max_bandwidth", Long.toString(base.maxBandwidthBytesPerSec()));
            fields.put("normalization_size", Long.toString(base.normalizationSize()));
            fields.put("weight", Long.toString(base.weight()));
        });
        boolean isNew = fields.isEmpty();
        fields.putAll(q);
        QosPolicyConfig config = ConfigLoader.parseQosPolicy(fields); // IllegalArgumentException: 400 with the message
        QosPolicy p = toPolicy(config);
        synchronized (this) {
            if (isNew && service.policy(p.name()).isEmpty() && service.policies().size() >= MAX_POLICIES) {
                return HttpResponse.error(409, HttpResponse.Reason.LIMIT_REACHED, "the host already has " + MAX_POLICIES
                    + " QoS policies; change one of them instead");
            }
            service.updatePolicy(p);
        }
        onPolicySet.accept(config);
        LOG.log(Level.INFO, "policy changed name=" + p.name() + " type=" + Records.enumValue(p.type()) + " min_iops="
            + p.minIops() + " max_iops=" + p.maxIops() + " max_bandwidth=" + p.maxBandwidthBytesPerSec()
            + " normalization_size=" + p.normalizationSize() + " weight=" + p.weight());
        return HttpResponse.json(Json.pretty(Records.toJsonable(p)));
    }

    @Override
    public void metrics(Metrics m) {
        for (QosFlowSnapshot f : service.flows()) {
            String[] l = {"partition", f.partition(), "disk", f.disk()};
            // Rates are counters: rate() over them gives IOPS, bandwidth and (sum / count) mean latency for any window.
            m.counter("phost_qos_flow_normalized_ios", "Normalized I/Os the flow completed (rate() = normalized IOPS)",
                f.completedNormalizedIos(), l);
            m.counter("phost_qos_flow_ios", "I/Os the flow completed, unnormalized", f.completedIos(), l);
            m.counter("phost_qos_flow_bytes", "Bytes the flow completed", Unit.BYTES, f.completedBytes(), l);
            m.counter("phost_qos_flow_latency_seconds", "Sum of the flow's completion latencies, queueing in QoS included "
                + "(divided by phost_qos_flow_ios_total: mean latency)", Unit.SECONDS, f.latencySumNanos() / 1e9, l);
            m.gauge("phost_qos_flow_minimum_iops", "Reserved normalized IOPS in force for the flow", f.minimumIops(), l);
            m.gauge("phost_qos_flow_maximum_iops", "Normalized IOPS limit in force for the flow (0 = unlimited)", f.maximumIops(), l);
            m.gauge("phost_qos_flow_maximum_bandwidth_bytes_per_second", "Bandwidth limit in force (0 = unlimited)",
                f.maximumBandwidth(), l);
            m.gauge("phost_qos_flow_outstanding_ios", "I/Os admitted and not yet completed", f.outstanding(), l);
            m.state("phost_qos_flow_status", "Status of the flow, as Get-StorageQosFlow shows it",
                QOS_STATUSES, f.status().name(), l);
            m.info("phost_qos_flow_policy", "The policy a flow follows", "partition", f.partition(), "disk", f.disk(),
                "policy", f.policy() == null ? "" : f.policy());
        }
        m.counter("phost_qos_alerts", "QoS alerts raised", service.alertCount());
    }

    @Override
    public void close() {
        ticker.shutdownNow();
    }
}
