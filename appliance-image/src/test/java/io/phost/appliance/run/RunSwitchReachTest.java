package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two VMs and a process partition reach each other across one switch, through `phost run` with a config: VM
 * NICs on vhost-user-net, the process partition's synthetic NIC bridged by the built-in {@code net} workload to
 * a TAP in a namespace it creates. Every pair pings, and TCP runs VM→VM (vm-b to vm-a), VM→process (vm-a to
 * the namespace) and process→VM (the namespace to vm-b), each with busybox {@code nc} exchanging a line both
 * ways. Recipe of a guest's exchange: {@code nc -l -p 7001 -e /bin/sh -c 'echo FROM-VM-A; read x; ...'} and
 * {@code echo FROM-VM-B | nc -w 5 10.86.0.1 7001}. Needs root (TAP, netns), QEMU and the test guest kit.
 */
@Timeout(420)
class RunSwitchReachTest {
    private static final Duration BOOT = Duration.ofSeconds(240);

    @TempDir
    Path dir;

    /** A guest script: address, a one-shot TCP server, pings to {@code peers}, then a TCP exchange with a server. */
    private static String script(String me, String ip, int port, String peers, String server, int serverPort) {
        return """
            ip link set eth0 up
            ip addr add %2$s/24 dev eth0
            nc -l -p %3$d -e /bin/sh -c 'echo FROM-%1$s; read x; echo "%1$s-GOT $x" >/dev/console' &
            for ip in %4$s; do
              i=0; until ping -c 1 -W 2 $ip >/dev/null; do i=$((i+1)); [ $i -lt 60 ] || exit 1; done
              echo "PING-OK $ip"
            done
            i=0; until r=$(echo FROM-%1$s | nc -w 5 %5$s %6$d) && [ -n "$r" ]; do i=$((i+1)); [ $i -lt 90 ] || exit 2; sleep 1; done
            echo "TCP-OK $r"
            wait
            """.formatted(me, ip, port, peers, server, serverPort);
    }

    @Test
    void shouldLetTwoVmsAndAProcessPartitionPingAndTalkTcpAcrossASwitch() throws Exception {
        Assumptions.assumeTrue(ProcessHandle.current().info().user().orElse("").equals("root")
            && Files.exists(Path.of("/dev/net/tun")), "needs root and /dev/net/tun (the process partition's TAP, netns)");
        Path guest = TestGuestKit.directory();
        String tag = Long.toString(ProcessHandle.current().pid() % 100000);
        String ns = "phsr" + tag;
        Path got = dir.resolve("proc-got.txt");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "reach-test"
            data_dir = "%1$s"

            [[switch]]
            name = "sr%2$s"
            type = "private"

            [[partition]]
            name = "vm-a"
            kind = "vm"
            memory = "256MiB"
            kernel = "%3$s/vmlinuz"
            initrd = "%3$s/initramfs.gz"
            cmdline = "%4$s"
            nic = [{ switch = "sr%2$s", mac = "02:86:00:00:00:01" }]

            [[partition]]
            name = "vm-b"
            kind = "vm"
            memory = "256MiB"
            kernel = "%3$s/vmlinuz"
            initrd = "%3$s/initramfs.gz"
            cmdline = "%5$s"
            nic = [{ switch = "sr%2$s", mac = "02:86:00:00:00:02" }]

            [[partition]]
            name = "proc"
            memory = "64MiB"
            workload = { kind = "net", args = ["--netns", "%6$s", "--address", "10.86.0.3/24"] }
            nic = [{ switch = "sr%2$s", mac = "02:86:00:00:00:03" }]
            """.formatted(dir.resolve("data"), tag, guest,
                TestGuestKit.cmdline(script("VM-A", "10.86.0.1", 7001, "10.86.0.2 10.86.0.3", "10.86.0.3", 7003), true)
                    + TestGuestKit.NO_AGENT,
                TestGuestKit.cmdline(script("VM-B", "10.86.0.2", 7002, "10.86.0.1 10.86.0.3", "10.86.0.1", 7001), true)
                    + TestGuestKit.NO_AGENT, ns));
        run(5, "ip", "netns", "del", ns);
        Process server = null;
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(90));
            ManagementClient client = new ManagementClient(ManagementAddress.parse(
                Files.readAllLines(dir.resolve("run/endpoint")).getFirst()), null);
            long deadline = System.nanoTime() + BOOT.toNanos();
            while (run(5, "ip", "-n", ns, "addr", "show").isEmpty() || !run(5, "ip", "-n", ns, "addr", "show").contains("10.86.0.3/24")) {
                assertTrue(System.nanoTime() < deadline, "the process partition's namespace never got its address:\n" + p.stderr());
                Thread.sleep(300);
            }
            // the process partition's side: a one-shot TCP server for vm-a in its namespace
            server = new ProcessBuilder("ip", "netns", "exec", ns, "busybox", "nc", "-l", "-p", "7003", "-e", "busybox", "sh", "-c",
                "echo FROM-PROC; read x; echo \"$x\" > " + got).redirectErrorStream(true).start();
            // process → vm-b over TCP (retried until vm-b's server listens)
            String fromB = "";
            while (!fromB.contains("FROM-VM-B")) {
                assertTrue(System.nanoTime() < deadline, "vm-b never answered on TCP 7002:\n"
                    + client.get("/v1/partitions/console?name=vm-b").bodyText());
                fromB = runWithInput("FROM-PROC\n", 10, "ip", "netns", "exec", ns, "busybox", "nc", "-w", "5", "10.86.0.2", "7002");
                if (!fromB.contains("FROM-VM-B")) {
                    Thread.sleep(1000);
                }
            }
            String consoleA = "";
            String consoleB = "";
            while (!(consoleA.contains("PHOST-GUEST-DONE") && consoleB.contains("PHOST-GUEST-DONE"))) {
                assertTrue(System.nanoTime() < deadline, "guests did not finish:\nvm-a:\n" + consoleA + "\nvm-b:\n" + consoleB
                    + "\nphost:\n" + p.stderr());
                Thread.sleep(500);
                consoleA = client.get("/v1/partitions/console?name=vm-a").bodyText();
                consoleB = client.get("/v1/partitions/console?name=vm-b").bodyText();
            }
            for (String want : List.of("PING-OK 10.86.0.2", "PING-OK 10.86.0.3", "TCP-OK FROM-PROC", "VM-A-GOT FROM-VM-B",
                    "PHOST-GUEST-DONE rc=0")) {
                assertTrue(consoleA.contains(want), "vm-a: " + want + " in\n" + consoleA);
            }
            for (String want : List.of("PING-OK 10.86.0.1", "PING-OK 10.86.0.3", "TCP-OK FROM-VM-A", "VM-B-GOT FROM-PROC",
                    "PHOST-GUEST-DONE rc=0")) {
                assertTrue(consoleB.contains(want), "vm-b: " + want + " in\n" + consoleB);
            }
            assertTrue(server.waitFor(30, TimeUnit.SECONDS), "the namespace's server never had its client");
            assertEquals("FROM-VM-A", Files.readString(got).strip(), "the process partition received vm-a's line");
            for (String vm : List.of("10.86.0.1", "10.86.0.2")) {
                assertTrue(run(20, "ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.3", "-W", "3", vm).contains(" 0% packet loss"),
                    "the process partition pings " + vm);
            }
            p.process().destroy();
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
        } finally {
            if (server != null) {
                server.destroyForcibly();
            }
            run(5, "ip", "netns", "del", ns);
        }
    }

    private static String run(int timeoutSeconds, String... cmd) throws Exception {
        return runWithInput("", timeoutSeconds, cmd);
    }

    private static String runWithInput(String input, int timeoutSeconds, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        try (var in = p.getOutputStream()) {
            in.write(input.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            // the command did not read its input
        }
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
