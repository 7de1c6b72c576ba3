package io.phost.perf.vhost;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The native baseline of {@code phost bench vhost}: fio on the same raw file the export serves, with the same
 * block size and queue depth, io_uring and O_DIRECT, so "vhost-user-blk over native" is what the vhost-user
 * path (driver, rings, eventfds, phost) costs on top of the kernel doing the same I/O.
 * <pre>
 *   fio --name=native --filename=FILE --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=32 \
 *       --ramp_time=300ms --runtime=2000ms --time_based --norandommap --randrepeat=0 --output-format=json
 * </pre>
 */
final class NativeFio {
    private static final Pattern READ_IOPS = Pattern.compile("\"read\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");
    private static final Pattern WRITE_IOPS = Pattern.compile("\"write\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");

    private NativeFio() {}

    /**
     * fio's engine at {@code qd}: psync at QD1 (a lone synchronous preadv/pwritev is the fastest a QD1 thread can do on
     * this kind of disk; fio io_uring's QD1 writes were 0.42x of psync's here, issue 14 tenth session), io_uring above.
     */
    static String engine(int qd) {
        return qd == 1 ? "psync" : "io_uring";
    }

    static List<String> command(Path file, boolean write, int bs, int qd, double seconds) {
        return List.of("fio", "--name=native", "--filename=" + file, "--ioengine=" + engine(qd), "--direct=1",
            "--rw=" + (write ? "randwrite" : "randread"), "--bs=" + bs, "--iodepth=" + qd,
            "--ramp_time=300ms", "--runtime=" + Math.round(seconds * 1000) + "ms", "--time_based",
            "--norandommap", "--randrepeat=0", "--output-format=json");
    }

    /** fio's IOPS for the direction run, from its JSON output; NaN when it is not there. */
    static double iops(String json, boolean write) {
        Matcher m = (write ? WRITE_IOPS : READ_IOPS).matcher(json);
        return m.find() ? Double.parseDouble(m.group(1)) : Double.NaN;
    }

    /** Runs fio; returns its IOPS, or throws with fio's first error line. */
    static double run(Path file, boolean write, int bs, int qd, double seconds) throws Exception {
        List<String> cmd = command(file, write, bs, qd, seconds);
        Process p = new ProcessBuilder(cmd).start();
        byte[] err = new byte[0];
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        } else {
            err = p.getErrorStream().readAllBytes();
        }
        double iops = p.isAlive() || p.exitValue() != 0 ? Double.NaN : iops(out, write);
        if (Double.isNaN(iops)) {
            throw new IllegalStateException("fio failed (" + String.join(" ", cmd) + "): "
                + new String(err, StandardCharsets.UTF_8).lines().findFirst().orElse("no output"));
        }
        return iops;
    }
}
