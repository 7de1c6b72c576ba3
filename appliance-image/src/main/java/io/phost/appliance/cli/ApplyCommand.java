package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Query;
import io.phost.core.text.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code phost apply FILE [--dry-run]}: changes the running host to FILE without a restart, through
 * {@code POST /v1/config}. Prints the plan (one line per change), then the outcome.
 */
@Command(name = "apply", mixinStandardHelpOptions = true, description = {
    "Change the running host to FILE without a restart: FILE is validated as `phost run` does, compared with",
    "the running config, and the plan is printed (one line per change: + added, ~ changed, - removed). What can",
    "change live is changed in one step, all or nothing: QoS policies and a disk's policy, port settings (VLAN,",
    "guards, bandwidth, acl, ip_addresses, weights), process partitions added (started if autostart) or removed",
    "(stopped), switches added or removed. Anything else (a running partition's memory, a disk's file, [host]) is",
    "refused as FILE:LINE:COL with the reason, and nothing changes. The applied config is saved as",
    "DATA_DIR/applied.toml; `phost run --config FILE` runs it while it is newer than FILE.",
    "Exit 0 applied (or nothing to change), 2 invalid or refused, 1 failed (every step undone)."})
public final class ApplyCommand implements Callable<Integer> {
    @Mixin
    StatusCommand.EndpointOptions endpoint;

    @Parameters(index = "0", paramLabel = "FILE", description = "The new appliance.toml.")
    Path file;

    @Option(names = "--dry-run", description = "Validate and print the plan; change nothing.")
    boolean dryRun;

    @Override
    public Integer call() throws IOException {
        byte[] text;
        try {
            text = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UserException(file + ":1:1: cannot read: " + e.getMessage(), 2);
        }
        HttpResponse r = endpoint.post("/v1/config?" + Query.encode(Map.of("dry_run", dryRun, "file", file.toString())), text);
        if (!r.contentType().startsWith("application/json")) {
            throw new UserException("host answered " + r.status() + ": " + r.bodyText().strip());
        }
        Map<?, ?> body = (Map<?, ?>) Json.parse(r.bodyText());
        if (body.get("result") == null) { // an API error: {"error", "reason"}
            throw new UserException("host answered " + r.status() + ": " + body.get("error"));
        }
        String result = (String) body.get("result");
        List<?> plan = (List<?>) body.get("plan");
        List<?> errors = (List<?>) body.get("errors");
        if (!result.equals("invalid")) {
            System.out.println(plan.isEmpty() ? "plan: no changes" : "plan:");
            plan.forEach(line -> System.out.println("  " + line));
        }
        errors.forEach(System.err::println);
        System.out.flush();
        return switch (result) {
            case "applied" -> {
                System.out.println("applied " + plan.size() + " change(s); saved for the next start");
                yield 0;
            }
            case "dry_run" -> {
                System.out.println("dry run: nothing was changed");
                yield 0;
            }
            case "unchanged" -> {
                System.out.println("nothing to change");
                yield 0;
            }
            case "failed" -> {
                System.err.println("phost: apply failed; every change was undone, the host runs the previous config");
                yield 1;
            }
            default -> {
                System.err.println("phost: " + errors.size() + " error(s); nothing was changed");
                yield 2;
            }
        };
    }
}
