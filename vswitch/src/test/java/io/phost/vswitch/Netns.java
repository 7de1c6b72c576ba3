package io.phost.vswitch;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Test helper: runs ip/ping/iperf3, creates namespaces and veths, and removes all of them at the end. */
final class Netns implements AutoCloseable {
    private final List<String> namespaces = new ArrayList<>();
    private final List<String> links = new ArrayList<>();
    final String tag = Long.toString(ProcessHandle.current().pid() % 10000);

    static boolean available() {
        try {
            return run(5, "ip", "netns", "list").exitCode == 0 && new java.io.File("/dev/net/tun").exists()
                && run(5, "iperf3", "--version").exitCode == 0;
        } catch (RuntimeException e) {
            return false;
        }
    }

    record Result(int exitCode, String output) {}

    static Result run(int timeoutSeconds, String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                p.waitFor(5, TimeUnit.SECONDS);
                return new Result(-1, String.join(" ", cmd) + ": timed out");
            }
            return new Result(p.exitValue(), new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new RuntimeException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException(e);
        }
    }

    static String must(String... cmd) {
        Result r = run(30, cmd);
        if (r.exitCode != 0) {
            throw new IllegalStateException(String.join(" ", cmd) + " failed (" + r.exitCode + "): " + r.output);
        }
        return r.output;
    }

    String ns(String base) {
        String name = "ph" + base + tag;
        run(5, "ip", "netns", "del", name);
        must("ip", "netns", "add", name);
        namespaces.add(name);
        must("ip", "-n", name, "link", "set", "lo", "up");
        return name;
    }

    /** Moves interface {@code ifname} into {@code ns}, gives it {@code cidr} and brings it up. */
    void place(String ifname, String ns, String cidr) {
        must("ip", "link", "set", ifname, "netns", ns);
        must("ip", "-n", ns, "addr", "add", cidr, "dev", ifname);
        must("ip", "-n", ns, "link", "set", ifname, "up");
    }

    /** A veth pair in the root namespace; removed at close. */
    void veth(String a, String b) {
        run(5, "ip", "link", "del", a);
        must("ip", "link", "add", a, "type", "veth", "peer", "name", b);
        links.add(a);
    }

    String ifname(String base) {
        return "ph" + base + tag;
    }

    static Result exec(String ns, int timeoutSeconds, String... cmd) {
        String[] full = new String[cmd.length + 4];
        full[0] = "ip";
        full[1] = "netns";
        full[2] = "exec";
        full[3] = ns;
        System.arraycopy(cmd, 0, full, 4, cmd.length);
        return run(timeoutSeconds, full);
    }

    /** Starts {@code cmd} in {@code ns} in the background (output discarded); the caller destroys it. */
    static Process start(String ns, String... cmd) {
        List<String> full = new ArrayList<>(List.of("ip", "netns", "exec", ns));
        full.addAll(List.of(cmd));
        try {
            return new ProcessBuilder(full).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    static boolean ping(String ns, String ip, int count) {
        return exec(ns, count + 5, "ping", "-c", Integer.toString(count), "-i", "0.2", "-W", "1", ip).exitCode == 0;
    }

    /** iperf3 from {@code clientNs} to a one-shot server in {@code serverNs}; returns the JSON report. */
    static String iperf(String serverNs, String serverIp, String clientNs, int seconds, String... extra) {
        return iperf(serverNs, serverIp, 5201, clientNs, seconds, extra);
    }

    /** As above with the server on {@code port} (in the test's own namespace), so several can run at once. */
    static String iperf(String serverNs, String serverIp, int port, String clientNs, int seconds, String... extra) {
        Process server;
        try {
            server = new ProcessBuilder("ip", "netns", "exec", serverNs, "iperf3", "-s", "-1", "-B", serverIp,
                    "-p", Integer.toString(port))
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
        try {
            List<String> cmd = new ArrayList<>(List.of("iperf3", "-c", serverIp, "-p", Integer.toString(port), "-t",
                Integer.toString(seconds), "-J"));
            cmd.addAll(List.of(extra));
            Result r = null;
            for (int attempt = 0; attempt < 60; attempt++) {
                r = exec(clientNs, seconds + 15, cmd.toArray(new String[0]));
                if (!r.output.contains("Connection refused")) {
                    break;
                }
                try {
                    Thread.sleep(200);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (r.exitCode != 0 || r.output.contains("\"error\"")) {
                throw new IllegalStateException("iperf3 failed: " + r.output);
            }
            return r.output;
        } finally {
            server.destroy();
            try {
                server.waitFor(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            server.destroyForcibly();
        }
    }

    /**
     * TCP that must hold on a loaded machine, judged by its bytes, not its speed: {@code bytes} of seeded random data
     * go from {@code clientNs} to {@code serverIp} in {@code serverNs} with busybox {@code nc} (the receiver reads to
     * EOF into a file); fails unless the receiver got exactly those bytes (size and content) within {@code timeoutSeconds}.
     * Skips (assumption) when busybox is missing. Returns a line for the log (size, time, Mbit/s).
     */
    static String assertVerifiedTcp(String serverNs, String serverIp, String clientNs, int bytes, int timeoutSeconds)
        throws Exception {
        int busybox = run(5, "busybox", "nc", "--help").exitCode;
        org.junit.jupiter.api.Assumptions.assumeTrue(busybox == 0 || busybox == 1, "needs busybox (nc)");
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("phost-tcp");
        byte[] data = new byte[bytes];
        new java.util.Random(bytes).nextBytes(data);
        java.nio.file.Path sent = java.nio.file.Files.write(dir.resolve("sent.bin"), data);
        java.nio.file.Path received = dir.resolve("received.bin");
        Process server = start(serverNs, "busybox", "nc", "-l", "-p", "7012", "-e", "busybox", "sh", "-c",
            "cat > '" + received + "'");
        long t0 = System.nanoTime();
        long deadline = t0 + timeoutSeconds * 1_000_000_000L;
        try {
            String client = "never connected";
            while (System.nanoTime() < deadline) {
                Process c = new ProcessBuilder("ip", "netns", "exec", clientNs, "busybox", "nc", serverIp, "7012")
                    .redirectInput(sent.toFile()).redirectErrorStream(true).start();
                if (!c.waitFor(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                    c.destroyForcibly();
                    client = "still sending after " + timeoutSeconds + " s";
                    break;
                }
                client = "exit " + c.exitValue() + " " + new String(c.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
                if (c.exitValue() == 0) {
                    break;
                }
                Thread.sleep(100); // connection refused: the listener is not up yet
            }
            boolean done = server.waitFor(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            double secs = (System.nanoTime() - t0) / 1e9;
            byte[] got = java.nio.file.Files.exists(received) ? java.nio.file.Files.readAllBytes(received) : new byte[0];
            String what = got.length + " of " + bytes + " bytes, client " + client + (done ? "" : ", receiver not done");
            org.junit.jupiter.api.Assertions.assertTrue(done, "TCP transfer did not finish in " + timeoutSeconds + " s: " + what);
            org.junit.jupiter.api.Assertions.assertArrayEquals(data, got, "TCP transfer arrived changed: " + what);
            return String.format("%d bytes intact in %.2f s (%.1f Mbit/s)", bytes, secs, bytes * 8 / secs / 1e6);
        } finally {
            server.destroyForcibly();
            server.waitFor(5, TimeUnit.SECONDS);
            for (java.nio.file.Path f : new java.nio.file.Path[] {sent, received, dir}) {
                java.nio.file.Files.deleteIfExists(f);
            }
        }
    }

    /** A number following {@code "key":} after the last occurrence of {@code section} in iperf3's JSON. */
    static double json(String json, String section, String key) {
        int s = json.lastIndexOf("\"" + section + "\"");
        if (s < 0) {
            throw new IllegalStateException("no " + section + " in iperf3 output: " + json);
        }
        int k = json.indexOf("\"" + key + "\"", s);
        int colon = json.indexOf(':', k);
        int end = colon + 1;
        while (end < json.length() && "0123456789.eE+- \t\n\r".indexOf(json.charAt(end)) >= 0) {
            end++;
        }
        return Double.parseDouble(json.substring(colon + 1, end).trim());
    }

    @Override
    public void close() {
        for (String l : links) {
            run(5, "ip", "link", "del", l);
        }
        for (String n : namespaces) {
            run(5, "ip", "netns", "del", n);
        }
    }
}
