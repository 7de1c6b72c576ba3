package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.phost.core.partition.GuestLauncher;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code phost run} on a real terminal (a detached tmux session, read with capture-pane): the live view uses the
 * alternate screen, its log pane holds the start-up lines (the NBD URI), and after it stops the scrollback has
 * the log lines and not a copy of every frame.
 */
class LiveViewTmuxTest {
    @TempDir
    Path dir;

    @Test
    void theLiveViewUsesTheAlternateScreenAndShowsTheNbdUriLine() throws Exception {
        String session = "phost-live-" + ProcessHandle.current().pid() + "-" + Long.toHexString(System.nanoTime());
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "live-view"
            data_dir = "%s"
            nbd = "unix:%s"

            [[disk]]
            name = "scratch"
            path = "scratch.raw"
            format = "raw"
            nbd_export = true
            create = { type = "fixed", size = "4MiB" }
            """.formatted(dir.resolve("data"), dir.resolve("nbd.sock")));
        Path script = dir.resolve("run.sh");
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(GuestLauncher.inheritedJvmFlags());
        cmd.add("-Dphost.runtime.dir=" + dir.resolve("rt"));
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), "io.phost.appliance.Main", "run", "--config", cfg.toString(),
            "--duration", "12s"));
        StringBuilder sh = new StringBuilder("printf 'before-phost\\n'\n");
        for (String c : cmd) {
            sh.append('\'').append(c.replace("'", "'\\''")).append("' ");
        }
        sh.append("2>").append(dir.resolve("stderr.txt")).append("\necho \"phost-exit=$?\"\nsleep 60\n");
        Files.writeString(script, sh);
        tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "bash " + script);
        try {
            String screen = awaitScreen(session, "nbd exports", 60);
            assertEquals("1", tmux("display-message", "-p", "-t", session, "#{alternate_on}").strip(),
                "the live view is on the alternate screen:\n" + screen);
            assertTrue(screen.contains("nbd+unix:///scratch?socket=") || screen.contains("nbd://"), screen);
            assertTrue(Pattern.compile("uri=\\S*scratch").matcher(screen).find(),
                "the log pane keeps the start-up line with the NBD URI:\n" + screen);
            assertTrue(screen.contains("phost: ready name=live-view"), "the ready line is in the header:\n" + screen);
            assertFalse(screen.contains("before-phost"), "the normal screen is hidden:\n" + screen);

            String after = awaitScreen(session, "phost-exit=", 60);
            assertTrue(after.contains("phost-exit=0"), after);
            assertEquals("0", tmux("display-message", "-p", "-t", session, "#{alternate_on}").strip(), "normal screen restored");
            String all = tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session);
            assertTrue(all.contains("before-phost"), "what was on the screen before is back:\n" + all);
            assertEquals(0, count(all, "(Ctrl-C stops)"), "no frame of the view is left in the scrollback:\n" + all);
            String stderr = Files.readString(dir.resolve("stderr.txt"));
            assertTrue(stderr.contains("msg=\"stopping\" reason=duration"), "log lines logged under the view are printed afterwards:\n" + stderr);
        } finally {
            tmux("kill-session", "-t", session);
        }
    }

    private static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) {
            n++;
        }
        return n;
    }

    private static String awaitScreen(String session, String text, int seconds) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        String screen = "";
        while (System.nanoTime() < deadline) {
            screen = tmux("capture-pane", "-p", "-J", "-t", session);
            if (screen.contains(text)) {
                return screen;
            }
            Thread.sleep(250);
        }
        return fail("'" + text + "' did not appear within " + seconds + " s; the screen:\n" + screen);
    }

    private static String tmux(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of("tmux", "-L", "phost-test-" + ProcessHandle.current().pid()));
        cmd.addAll(List.of(args));
        Process p;
        try {
            p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        } catch (IOException e) {
            return fail("tmux is not installed (Debian package tmux; .ci/run installs it): " + e.getMessage());
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(20, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            return fail("tmux " + String.join(" ", args) + " hung");
        }
        if (p.exitValue() != 0 && !args[0].equals("kill-session")) {
            return fail("tmux " + String.join(" ", args) + " failed: " + out);
        }
        return out;
    }
}
