package io.phost.appliance.cli;

import io.phost.appliance.UserException;
import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigException;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementServer;
import io.phost.appliance.run.Appliance;
import io.phost.appliance.run.Assembler;
import io.phost.appliance.run.Dashboard;
import io.phost.appliance.run.RuntimeDir;
import io.phost.appliance.run.Signals;
import io.phost.appliance.run.StatusView;
import io.phost.appliance.util.Durations;
import io.phost.appliance.util.Trees;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "run", description = {
    "Run the parent partition host from a config, or without --config the embedded demo appliance",
    "(a dynamic VHDX, an internal switch the host reaches at 10.213.0.254/24 and two process partitions",
    "in a temporary data dir).",
    "Stops cleanly on SIGTERM/SIGINT/SIGHUP (exit 0). Prints 'phost: ready ...' once serving."})
public final class RunCommand implements Callable<Integer> {
    private static final Logger LOG = System.getLogger("phost.run");

    @Option(names = "--config", paramLabel = "FILE", description = "appliance.toml to run; without it, the embedded demo.")
    Path config;

    @Option(names = "--duration", paramLabel = "D", description = "Stop after this long (e.g. 30s, 5m); default: until SIGTERM/SIGINT.")
    String duration;

    @Option(names = "--plain", description = "No live status view even on a terminal: log lines only.")
    boolean plain;

    @Option(names = "--on-config-error", paramLabel = "ADDRESS", description = {
        "When the config is invalid, keep serving its errors at ADDRESS (unix:/PATH or tcp://HOST:PORT) until",
        "stopped, instead of exiting at once: GET /health answers 503 with the FILE:LINE:COL lines. For headless",
        "appliances; nothing else is started. Exit code is still 2."})
    String onConfigError;

    @Override
    public Integer call() throws Exception {
        Duration limit = duration == null ? null : parseDuration(duration);
        CountDownLatch stop = Signals.stopOnTermination();
        io.phost.core.sys.ProcessExit.prepare(); // linked now, not during the stop
        Path demoDir = null;
        ApplianceConfig cfg;
        String configText = null;
        try {
            if (config != null) {
                cfg = ConfigLoader.load(config);
                Path chosen = io.phost.appliance.run.AppliedConfig.choose(config, cfg.host().dataDir());
                if (!chosen.equals(config)) {
                    try {
                        cfg = ConfigLoader.load(chosen);
                    } catch (ConfigException e) { // a saved file is always valid; if not, say so and run FILE
                        LOG.log(Level.WARNING, "the applied config is invalid, running " + config + " instead: "
                            + e.errors().getFirst());
                        chosen = config;
                    }
                }
                configText = readText(chosen);
            } else {
                demoDir = Files.createTempDirectory("phost-demo-");
                String subnet = io.phost.appliance.run.DemoSubnet.pick();
                if (subnet == null) {
                    throw new UserException("the demo's internal switch needs a free /24 in 10.213.0.0/16, and this "
                        + "machine routes all of them (ip route); run a config of your own instead", 1);
                }
                io.phost.appliance.run.DemoVm vm = io.phost.appliance.run.DemoVm.find(subnet);
                cfg = ConfigLoader.loadDemo(demoDir, vm.toml() == null ? "" : vm.toml(), subnet);
                LOG.log(Level.INFO, "running the embedded demo data_dir=" + demoDir);
                LOG.log(Level.INFO, "demo subnet=" + subnet + "0/24 host_address=" + subnet + "254 partitions=" + subnet
                    + "1," + subnet + "2" + (subnet.equals(ConfigLoader.DEMO_SUBNET_PREFIX) ? ""
                    : " reason=\"" + ConfigLoader.DEMO_SUBNET_PREFIX + "0/24 is already routed on this machine\""));
                LOG.log(Level.INFO, vm.note());
            }
        } catch (ConfigException e) {
            System.err.println(e.getMessage());
            if (onConfigError != null) {
                serveConfigErrors(e, stop, limit);
            }
            throw new UserException("config has " + e.errors().size() + " error(s); nothing was started", 2);
        }

        Appliance app = new Appliance(cfg.host().name());
        io.phost.appliance.run.Privileges privileges = io.phost.appliance.run.Privileges.current();
        app.privileges(privileges);
        if (!privileges.root()) {
            LOG.log(Level.WARNING, privileges.notice()); // once, before anything fails for want of it
        }
        if (demoDir != null && !privileges.netAdmin()) {
            // The notice above names the feature (host vNICs, need CAP_NET_ADMIN); the demo's disk I/O still runs.
            cfg = cfg.withoutHostVnics();
        } else if (demoDir != null && !Files.exists(Path.of("/dev/net/tun"))) {
            LOG.log(Level.WARNING, "demo host vNIC off reason=\"no /dev/net/tun (modprobe tun)\" switch=demo-net runs=private");
            cfg = cfg.withoutHostVnics();
        }
        ManagementServer server = null;
        StatusView view = null;
        try {
            io.phost.core.sys.SocketFiles.createPrivateDirectories(cfg.host().dataDir()); // 0700 when we create it
            try {
                server = startManagement(cfg, app);
            } catch (IOException | RuntimeException e) {
                throw new UserException("management endpoint " + cfg.host().management() + ": " + e, 1, e);
            }
            try {
                Assembler.assemble(cfg, configText, app);
            } catch (Exception e) {
                // Never a half-configured appliance: stop what was started, report, exit non-zero.
                app.close();
                throw new UserException("start failed, everything stopped: " + e.getMessage(), 1, e);
            }
            app.state("running");
            String ready = "phost: ready name=" + cfg.host().name() + " management=" + server.address()
                + " components=" + app.components().size();
            System.out.println(ready);
            System.out.flush();
            if (!plain) {
                view = StatusView.startIfTerminal(ready, () -> Dashboard.render(app.status()));
            }
            boolean stopped = limit == null ? awaitForever(stop) : stop.await(limit.toMillis(), TimeUnit.MILLISECONDS);
            LOG.log(Level.INFO, stopped ? "stopping reason=signal" : "stopping reason=duration");
            return 0;
        } finally {
            if (view != null) {
                view.close();
            }
            long t0 = System.nanoTime();
            app.close(); // partitions stopped, disks flushed and closed
            if (server != null) {
                server.close();
                RuntimeDir.withdraw(server.address().toString()); // only our own record, only if we made one
            }
            LOG.log(Level.INFO, "stopped ms=" + (System.nanoTime() - t0) / 1_000_000);
            if (demoDir != null) {
                removeInBackground(demoDir);
            }
        }
    }

    /**
     * Removes the demo's scratch directory after the host has stopped, without holding up the exit: unlinking
     * a large image takes seconds on a discard-mounted disk. A detached {@code rm -rf} outlives this JVM; only
     * if it cannot be started is the tree removed here.
     */
    static void removeInBackground(Path dir) {
        try {
            new ProcessBuilder("rm", "-rf", "--", dir.toAbsolutePath().toString())
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.DISCARD)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
        } catch (IOException e) {
            Trees.deleteTree(dir);
        }
    }

    /** Serves only /health = 503 + the errors, so a headless appliance shows why it is not running. */
    private void serveConfigErrors(ConfigException e, CountDownLatch stop, Duration limit) throws Exception {
        ManagementAddress address;
        try {
            address = ManagementAddress.parse(onConfigError);
        } catch (IllegalArgumentException bad) {
            throw new UserException("--on-config-error: " + bad.getMessage(), 2);
        }
        // A TCP endpoint needs a token; nobody knows this one, so only /health (which needs none) answers.
        String token = address.isUnix() ? null : java.util.UUID.randomUUID().toString();
        String body = "{\"status\":\"config_error\",\"errors\":" + io.phost.core.text.Json.write(
            e.errors().stream().map(Object::toString).toList()) + "}";
        try (ManagementServer server = new ManagementServer(address, token)) {
            server.route(ManagementServer.HEALTH, q -> new io.phost.appliance.mgmt.HttpResponse(503, "application/json",
                body.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
            server.start();
            System.out.println("phost: config-error management=" + server.address() + " errors=" + e.errors().size());
            System.out.flush();
            if (limit == null) {
                stop.await();
            } else {
                stop.await(limit.toMillis(), TimeUnit.MILLISECONDS);
            }
        }
    }

    /** The text live changes start from; null (no live changes) if it cannot be read again. */
    private static String readText(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            LOG.log(Level.WARNING, "cannot read " + file + " again; live changes (phost apply) are off: " + e.getMessage());
            return null;
        }
    }

    private static boolean awaitForever(CountDownLatch stop) throws InterruptedException {
        stop.await();
        return true;
    }

    private static Duration parseDuration(String text) {
        try {
            return Durations.parse(text);
        } catch (IllegalArgumentException e) {
            throw new UserException("--duration: " + e.getMessage(), 2);
        }
    }

    /** A token any local user can read is no secret: say so (the host still starts). */
    static boolean warnIfOthersCanRead(Path tokenFile) {
        try {
            var perms = Files.getPosixFilePermissions(tokenFile);
            if (perms.contains(java.nio.file.attribute.PosixFilePermission.OTHERS_READ)
                || perms.contains(java.nio.file.attribute.PosixFilePermission.GROUP_READ)) {
                LOG.log(Level.WARNING, "management token file is readable by other users path=" + tokenFile
                    + " mode=" + java.nio.file.attribute.PosixFilePermissions.toString(perms) + " (chmod 600 it)");
                return true;
            }
        } catch (IOException | UnsupportedOperationException ignored) {
            // reading it below reports a missing file
        }
        return false;
    }

    private static ManagementServer startManagement(ApplianceConfig cfg, Appliance app) throws IOException {
        ManagementAddress address = ManagementAddress.parse(cfg.host().management());
        String token = null;
        Path tokenFile = null;
        if (!address.isUnix()) {
            tokenFile = cfg.host().resolvedTokenFile();
            warnIfOthersCanRead(tokenFile);
            token = Files.readString(tokenFile).strip();
            if (token.isEmpty()) {
                throw new IOException("management token file " + tokenFile + " is empty");
            }
        }
        ManagementServer server = new ManagementServer(address, token);
        app.serve(server);
        server.start();
        RuntimeDir.publish(server.address().toString(), tokenFile);
        LOG.log(Level.INFO, "management listening address=" + server.address());
        return server;
    }
}
