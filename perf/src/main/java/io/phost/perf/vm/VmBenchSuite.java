package io.phost.perf.vm;

import io.phost.core.vm.Accelerator;
import io.phost.core.vm.BootSource;
import io.phost.core.vm.QemuCommandLine;
import io.phost.core.vm.VmDevice;
import io.phost.core.vm.VmPartition;
import io.phost.core.vm.VmSpec;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.Rounds;
import io.phost.vhdx.RawDisk;
import io.phost.storage.vhost.VhostUserBlkExport;
import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code phost bench vm}: the project's test guest ({@code tools/test-guest}, or {@code PHOST_TEST_GUEST=DIR}
 * holding {@code vmlinuz} and {@code initramfs.gz}) as a VM partition whose disk phost serves over
 * vhost-user-blk, against the same guest in a plain QEMU that opens the same raw file itself
 * ({@code -drive if=virtio}), rounds interleaved:
 * <ul>
 *   <li>start to marker: from launch to {@code PHOST-GUEST-DONE} on the console (lower is better);</li>
 *   <li>in-guest sequential read, 64 KiB direct, for information (under TCG the guest's CPU dominates);</li>
 *   <li>phost's CPU while the VM idles (the device agents' cost), as % of one core, alone.</li>
 * </ul>
 */
public final class VmBenchSuite implements BenchSuite {
    private static final long DISK = 64L << 20;
    private static final long MEMORY = 256L << 20;
    private static final Pattern IO = Pattern.compile("IO-START ([0-9.]+).*IO-END ([0-9.]+)", Pattern.DOTALL);
    /** Reads 32 MiB of the disk with O_DIRECT, timed by the guest's /proc/uptime (centiseconds). */
    private static final String SCRIPT = """
        echo "IO-START $(cut -d' ' -f1 /proc/uptime)"
        dd if=/dev/vda of=/dev/null bs=65536 count=512 iflag=direct 2>/dev/null
        echo "IO-END $(cut -d' ' -f1 /proc/uptime)"
        """;

    /** Every point runs this many interleaved rounds, with --quick too: one round has no spread to report. */
    static final int ROUNDS = 3;

    /** Seven TCG boots of the test guest (3 rounds of ours and plain QEMU, one idle VM; ~15-25 s each on 2 shared cores). */
    @Override
    public java.time.Duration quickDuration() {
        return java.time.Duration.ofSeconds(150);
    }

    @Override
    public String name() {
        return "vm";
    }

    @Override
    public String description() {
        return "VM partitions: start-to-marker time, in-guest I/O over phost's vhost-user-blk vs QEMU's own virtio-blk, phost CPU per idle VM";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        Path guest = guestKit(ctx);
        if (guest == null) {
            return List.of();
        }
        int rounds = ROUNDS;
        Path disk = ctx.workDir().resolve("vm-bench.raw");
        try (RandomAccessFile f = new RandomAccessFile(disk.toFile(), "rw")) {
            f.setLength(DISK);
        }
        Accelerator accel = Accelerator.detect();
        ctx.log("accelerator: " + accel);
        List<Double> oursStart = new ArrayList<>();
        List<Double> peerStart = new ArrayList<>();
        List<Double> oursIo = new ArrayList<>();
        List<Double> peerIo = new ArrayList<>();
        int steps = rounds * 2 + 1;
        int step = 0;
        String cmdline = "console=ttyS0 quiet phost.script=" + Base64.getEncoder().encodeToString(SCRIPT.getBytes(StandardCharsets.UTF_8));
        for (int r = 0; r < rounds; r++) {
            for (boolean ours : new boolean[] {Rounds.oursFirst(r), !Rounds.oursFirst(r)}) { // ABBA: drift hits both
                if (ours) {
                    ctx.progress(step++, steps, "round " + (r + 1) + ": VM partition (vhost-user-blk)");
                    oursIo.add(mibPerSecond(runPhost(ctx.workDir(), guest, disk, cmdline, accel, "bench" + r, oursStart)));
                } else {
                    ctx.progress(step++, steps, "round " + (r + 1) + ": plain QEMU (-drive if=virtio)");
                    peerIo.add(mibPerSecond(runPlainQemu(guest, disk, cmdline, accel, peerStart)));
                }
            }
        }
        ctx.progress(step, steps, "phost CPU while a VM idles");
        double idle = idleCpu(ctx, guest, disk, accel);
        ctx.progress(steps, steps, "done");
        List<BenchResult> results = new ArrayList<>();
        results.add(Rounds.compare("start to marker (" + accel.type().qemuName + ")", "s", array(oursStart), "plain QEMU",
            array(peerStart), true));
        results.add(Rounds.compare("in-guest 64k seq read, direct (" + accel.type().qemuName + ")", "MiB/s", array(oursIo),
            "QEMU virtio-blk", array(peerIo), false));
        results.add(new BenchResult("phost CPU per idle VM (1 disk)", idle, "% core", null, Double.NaN, true, Map.of()));
        return results;
    }

    private static Path guestKit(BenchContext ctx) throws IOException, InterruptedException {
        if (!onPath(QemuCommandLine.QEMU)) {
            ctx.log("skipped: qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)");
            return null;
        }
        String env = System.getenv("PHOST_TEST_GUEST");
        if (env != null) {
            return Path.of(env);
        }
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.isRegularFile(root.resolve("tools/test-guest/build.sh"))) {
            root = root.getParent();
        }
        if (root == null) {
            ctx.log("skipped: no test guest (set PHOST_TEST_GUEST=DIR with vmlinuz and initramfs.gz, or run from the source tree)");
            return null;
        }
        Process p = new ProcessBuilder("bash", root.resolve("tools/test-guest/build.sh").toString()).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        if (!p.waitFor(300, TimeUnit.SECONDS) || p.exitValue() != 0) {
            ctx.log("skipped: tools/test-guest/build.sh failed: " + err);
            return null;
        }
        return Path.of(out.lines().reduce((a, b) -> b).orElse(""));
    }

    /** One VM partition run: launch to PHOST-GUEST-DONE, then the guest powers off. Returns the console. */
    private static String runPhost(Path work, Path guest, Path disk, String cmdline, Accelerator accel, String name,
                                   List<Double> startSeconds) throws Exception {
        try (RawDisk d = RawDisk.openFile(disk, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start(name, d, work.resolve(name + ".sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(1))) {
            VmPartition vm = vm(work, guest, cmdline, accel, name, e);
            long t0 = System.nanoTime();
            vm.start();
            String console = awaitConsole(vm, "PHOST-GUEST-DONE");
            startSeconds.add((System.nanoTime() - t0) / 1e9);
            vm.awaitState(io.phost.core.partition.PartitionState.STOPPED, Duration.ofSeconds(30));
            vm.turnOff("bench round over");
            return console;
        }
    }

    private static VmPartition vm(Path work, Path guest, String cmdline, Accelerator accel, String name, VhostUserBlkExport e) {
        VmSpec spec = new VmSpec(name, 1, MEMORY, VmSpec.Machine.Q35,
            new BootSource.Kernel(guest.resolve("vmlinuz"), guest.resolve("initramfs.gz"), cmdline),
            List.of(VmDevice.blk("disk0", e.socketPath(), 1)), VmSpec.CrashPolicy.STOP, Duration.ofSeconds(5));
        return new VmPartition(spec, work, work.resolve(name + ".console.log"), accel, VmPartition.Options.defaults());
    }

    /** The peer: the same guest, kernel and file in a QEMU that runs its own virtio-blk and block layer. */
    private static String runPlainQemu(Path guest, Path disk, String cmdline, Accelerator accel, List<Double> startSeconds)
        throws Exception {
        List<String> argv = List.of(QemuCommandLine.QEMU, "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35", "-accel", accel.type() == Accelerator.Type.KVM ? "kvm" : "tcg,tb-size=64",
            "-cpu", accel.type() == Accelerator.Type.KVM ? "host" : "max", "-smp", "1", "-m", (MEMORY >> 20) + "M",
            "-kernel", guest.resolve("vmlinuz").toString(), "-initrd", guest.resolve("initramfs.gz").toString(),
            "-append", cmdline, "-serial", "stdio",
            "-drive", "file=" + disk.toString().replace(",", ",,") + ",format=raw,if=virtio,cache=none,aio=threads");
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(argv).redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
            .redirectErrorStream(true).start();
        StringBuilder out = new StringBuilder();
        try (InputStream in = p.getInputStream()) {
            byte[] buf = new byte[4096];
            int n;
            while ((n = in.read(buf)) >= 0) {
                out.append(new String(buf, 0, n, StandardCharsets.UTF_8));
                if (out.indexOf("PHOST-GUEST-DONE") >= 0 && startSeconds.size() < 1_000) {
                    startSeconds.add((System.nanoTime() - t0) / 1e9);
                    break;
                }
            }
        } finally {
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
        return out.toString();
    }

    /** phost's process CPU (all threads) over a few seconds while a VM whose disk it serves sits idle. */
    private static double idleCpu(BenchContext ctx, Path guest, Path disk, Accelerator accel) throws Exception {
        String hold = "console=ttyS0 quiet phost.hold=1";
        long window = ctx.quick() ? 3 : 10;
        try (RawDisk d = RawDisk.openFile(disk, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start("idle", d, ctx.workDir().resolve("idle.sock"),
                 VhostUserBlkExport.Options.defaults().withQueues(1))) {
            VmPartition vm = vm(ctx.workDir(), guest, hold, accel, "idle", e);
            vm.start();
            try {
                awaitConsole(vm, "PHOST-GUEST-DONE");
                Thread.sleep(1000);
                long c0 = selfCpuNanos();
                long t0 = System.nanoTime();
                Thread.sleep(window * 1000);
                double pct = 100.0 * (selfCpuNanos() - c0) / (System.nanoTime() - t0);
                ctx.log(String.format(Locale.ROOT, "phost CPU with one idle VM over %d s: %.2f%% of a core (the bench "
                    + "harness and JVM included)", window, pct));
                return pct;
            } finally {
                vm.turnOff("bench over");
            }
        }
    }

    /** utime + stime of this process from /proc/self/stat, in nanoseconds (USER_HZ = 100). */
    static long selfCpuNanos() throws IOException {
        String stat = Files.readString(Path.of("/proc/self/stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return (Long.parseLong(f[11]) + Long.parseLong(f[12])) * 10_000_000L;
    }

    private static String awaitConsole(VmPartition vm, String marker) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(180).toNanos();
        while (System.nanoTime() < deadline) {
            String c = vm.console().tail(1 << 20);
            if (c.contains(marker)) {
                return c;
            }
            if (!vm.state().live()) {
                throw new IllegalStateException("VM " + vm.name() + " is " + vm.state() + ": " + vm.status().reason());
            }
            Thread.sleep(50);
        }
        throw new IllegalStateException("no " + marker + " from " + vm.name() + " in 180 s");
    }

    static double mibPerSecond(String console) {
        Matcher m = IO.matcher(console);
        if (!m.find()) {
            return Double.NaN;
        }
        double seconds = Double.parseDouble(m.group(2)) - Double.parseDouble(m.group(1));
        return seconds <= 0 ? Double.NaN : 32.0 / seconds;
    }

    private static double[] array(List<Double> v) {
        return v.stream().mapToDouble(Double::doubleValue).toArray();
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
