package io.phost.appliance.run;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.Comparator;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * The embedded demo's VM partition: added when {@code qemu-system-x86_64} is installed and a test guest is
 * found ({@code PHOST_TEST_GUEST=DIR}, or the newest build of {@code tools/test-guest} in its cache). The
 * guest writes and reads its own VHDX (served by phost over vhost-user-blk) in a loop, visible live in the
 * view's "vm disks" rows, and pings the demo's storage worker across the demo switch from its vhost-user-net
 * NIC every few seconds (its console says each result: {@code phost partition console demo-vm}). When either
 * is missing the demo runs without it and says how to get it.
 *
 * @param toml the stanzas to append to the demo config, or null
 * @param note one line for the log: what was added, or what is missing and how to get it
 */
public record DemoVm(String toml, String note) {
    /** The demo VM's host number on the demo subnet, and the one it pings (demo.toml's storage worker). */
    static final int ADDRESS_HOST = 3;
    static final int PEER_HOST = 1;

    /**
     * Disk I/O forever: 256 KiB written and read back with O_DIRECT each second, at offsets moving through
     * 64 MiB; every 5 s one ping to the storage worker across the switch, its result on the console.
     * {@code subnet} is the demo's /24 prefix ({@link DemoSubnet}), e.g. {@code "10.213.0."}.
     */
    static String script(String subnet) {
        String peer = subnet + PEER_HOST;
        return """
            ip link set eth0 up
            ip addr add %s/24 dev eth0
            i=0
            while :; do
              dd if=/dev/urandom of=/dev/vda bs=4096 count=64 seek=$((i * 64)) oflag=direct conv=notrunc 2>/dev/null
              dd if=/dev/vda of=/dev/null bs=4096 count=64 skip=$((i * 64)) iflag=direct 2>/dev/null
              if [ $((i %% 5)) -eq 0 ]; then
                if ping -c 1 -W 2 %s >/dev/null 2>&1; then echo "demo-vm: ping %s ok"; else echo "demo-vm: ping %s failed"; fi
              fi
              i=$(( (i + 1) %% 256 ))
              sleep 1
            done
            """.formatted(subnet + ADDRESS_HOST, peer, peer, peer);
    }

    /** The demo VM for the demo running on {@code subnet} (its /24 prefix, e.g. {@code "10.213.0."}). */
    public static DemoVm find(String subnet) {
        String home = System.getProperty("user.home", "/root");
        String cache = System.getenv("PHOST_GUEST_CACHE");
        Path cacheDir = cache != null ? Path.of(cache) : Path.of(System.getenv().getOrDefault("XDG_CACHE_HOME", home + "/.cache"),
            "phost", "test-guest");
        return find(onPath("qemu-system-x86_64"), System.getenv("PHOST_TEST_GUEST"), cacheDir, subnet);
    }

    static DemoVm find(boolean qemu, String guestEnv, Path cacheDir, String subnet) {
        if (!qemu) {
            return new DemoVm(null, "no VM partition in the demo: qemu-system-x86_64 is not installed "
                + "(Debian: apt-get install qemu-system-x86)");
        }
        Optional<Path> guest = guestEnv != null ? Optional.of(Path.of(guestEnv)).filter(DemoVm::isKit) : newestKit(cacheDir);
        if (guest.isEmpty()) {
            return new DemoVm(null, "no VM partition in the demo: no test guest (build one with "
                + "`bash tools/test-guest/build.sh`, or set PHOST_TEST_GUEST=DIR holding vmlinuz and initramfs.gz)");
        }
        Path g = guest.get().toAbsolutePath();
        String cmdline = "console=ttyS0 quiet phost.script="
            + Base64.getEncoder().encodeToString(script(subnet).getBytes(StandardCharsets.UTF_8)) + " phost.hold=1";
        String toml = """

            # Added at run time because QEMU and a test guest are installed (see docs/partitions.md).
            [[disk]]
            name = "demo-vm-disk"
            path = "demo-vm.vhdx"
            create = { type = "dynamic", size = "256MiB" }

            [[partition]]
            name = "demo-vm"
            kind = "vm"
            vcpus = 1
            memory = "256MiB"
            kernel = "%s"
            initrd = "%s"
            cmdline = "%s"
            on_crash = "restart"
            stop_timeout = 5
            ready_marker = "PHOST-GUEST-READY"
            disk = [{ disk = "demo-vm-disk" }]
            nic = [{ switch = "demo-net" }]
            """.formatted(tomlString(g.resolve("vmlinuz")), tomlString(g.resolve("initramfs.gz")), cmdline);
        return new DemoVm(toml, "demo VM partition demo-vm boots " + g.resolve("vmlinuz")
            + " (console: phost partition console demo-vm)");
    }

    private static Optional<Path> newestKit(Path cacheDir) {
        if (!Files.isDirectory(cacheDir)) {
            return Optional.empty();
        }
        try (Stream<Path> s = Files.list(cacheDir)) {
            return s.filter(DemoVm::isKit).max(Comparator.comparing(DemoVm::modified));
        } catch (IOException e) {
            return Optional.empty();
        }
    }

    private static long modified(Path p) {
        try {
            return Files.getLastModifiedTime(p.resolve("initramfs.gz")).toMillis();
        } catch (IOException e) {
            return 0;
        }
    }

    private static boolean isKit(Path dir) {
        return Files.isRegularFile(dir.resolve("vmlinuz")) && Files.isRegularFile(dir.resolve("initramfs.gz"));
    }

    /** A path as a TOML basic string body (the config rejects control characters anyway). */
    private static String tomlString(Path p) {
        return p.toString().replace("\\", "\\\\").replace("\"", "\\\"");
    }

    private static boolean onPath(String exe) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(d, exe))) {
                return true;
            }
        }
        return false;
    }
}
