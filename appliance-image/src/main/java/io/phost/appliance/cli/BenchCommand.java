package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.bench.BenchReport;
import io.phost.appliance.bench.BenchRunner;
import io.phost.appliance.bench.MachineInfo;
import io.phost.core.text.Json;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "bench", description = {
    "Run a benchmark suite: ours against a named peer in the same run, as ratios (higher is better).",
    "Suites: vhdx, vmbus, storage, vhost, rbd, qos, switch, image (those built into this phost: phost bench --list).",
    "`phost bench jmh [REGEX]` runs the JMH micro-benchmarks in perf/."})
public final class BenchCommand implements Callable<Integer> {
    @Parameters(index = "0", arity = "0..1", paramLabel = "SUITE", description = "Suite to run, or 'jmh'.")
    String suite;

    @Parameters(index = "1", arity = "0..1", paramLabel = "REGEX", description = "With 'jmh': which benchmarks (default all).")
    String jmhRegex;

    @Option(names = "--list", description = "List the suites and exit.")
    boolean list;

    @Option(names = "--quick", description = {"Short runs: a minute or less per suite; a suite that takes longer (switch ~105 s, storage ~110 s, vm ~150 s, rbd ~210 s) says so before it starts."})
    boolean quick;

    @Option(names = "--json", paramLabel = "FILE", description = "Write results as JSON to FILE.")
    Path json;

    @Option(names = "--report", paramLabel = "DIR", description = "Write report.md, report.html and SVG charts to DIR.")
    Path report;

    @Option(names = "--prof", paramLabel = "PROFILER", description = "With 'jmh': add a JMH profiler, e.g. gc.")
    List<String> profilers = new ArrayList<>();

    @Override
    public Integer call() throws Exception {
        Map<String, BenchSuite> suites = BenchRunner.suites();
        if (list || suite == null) {
            System.out.println("suites:");
            suites.values().forEach(s -> System.out.printf("  %-8s %s%n", s.name(), s.description()));
            System.out.println("  jmh      JMH micro-benchmarks in perf/ (phost bench jmh [REGEX] [--prof gc])");
            return 0;
        }
        if (suite.equals("jmh")) {
            return runJmh();
        }
        BenchSuite s = suites.get(suite);
        if (s == null) {
            throw new UserException("no bench suite '" + suite + "'; available: " + String.join(", ", suites.keySet()) + ", jmh", 2);
        }
        if (quick) {
            System.err.println(BenchRunner.quickNotice(s));
        }
        List<BenchResult> results = BenchRunner.run(s, quick, System.err);
        System.out.print(BenchReport.table(results));
        Map<String, Object> doc = BenchRunner.document(suite, quick, results);
        if (json != null) {
            Files.writeString(json, Json.pretty(doc));
            System.err.println("bench: wrote " + json);
        }
        if (report != null) {
            @SuppressWarnings("unchecked")
            Map<String, Object> machine = (Map<String, Object>) doc.get("machine");
            BenchReport.write(report, suite, machine, results);
            System.err.println("bench: wrote " + report.resolve("report.html") + " and report.md");
        }
        return 0;
    }

    private int runJmh() throws Exception {
        ChainedOptionsBuilder o = new OptionsBuilder()
            .include(jmhRegex == null ? "io\\.phost\\.perf\\..*" : jmhRegex)
            .jvmArgsAppend(io.phost.core.partition.GuestLauncher.inheritedJvmFlags().toArray(String[]::new));
        if (quick) {
            o.forks(1).warmupIterations(1).measurementIterations(2)
                .warmupTime(TimeValue.seconds(1)).measurementTime(TimeValue.seconds(1));
        }
        for (String p : profilers) {
            o.addProfiler(p);
        }
        if (json != null) {
            o.resultFormat(org.openjdk.jmh.results.format.ResultFormatType.JSON).result(json.toString());
        }
        new Runner(o.build()).run();
        return 0;
    }
}
