package io.phost.appliance.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.perf.BenchResult;
import java.awt.image.BufferedImage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 17: the bench report as a browser shows it. Headless Chromium (a CI peer: .ci/run installs the Debian
 * package {@code chromium}) loads report.html with a probe script appended that measures every chart with the
 * browser's own layout and fonts: each {@code <svg>} is parsed as SVG (has a box), no text leaves its chart, no
 * two unrotated labels overlap, no rect has a negative size. The same run takes a screenshot, which must show
 * the charts (not a blank page). {@link BenchReportChartsTest} checks the same rules on the SVG text alone,
 * with estimated font widths; this test holds them with real ones.
 * Recipe: {@code chromium --headless=new --no-sandbox --dump-dom file:///…/report.html}.
 */
class BenchReportChromiumTest {
    private static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    /** Appended to the page: writes "charts=N problems=[...]" into a pre that --dump-dom prints. */
    private static final String PROBE = """
        <script>
        (function () {
          const problems = [];
          const svgs = document.querySelectorAll('svg');
          svgs.forEach((svg, i) => {
            if (!(svg instanceof SVGSVGElement)) { problems.push('chart ' + i + ' is not SVG'); return; }
            const frame = svg.getBoundingClientRect();
            if (frame.width <= 0 || frame.height <= 0) problems.push('chart ' + i + ' has no size');
            svg.querySelectorAll('rect').forEach(r => {
              if (r.width.baseVal.value < 0 || r.height.baseVal.value < 0) problems.push('chart ' + i + ': negative rect');
            });
            const boxes = [];
            svg.querySelectorAll('text').forEach(t => {
              const b = t.getBoundingClientRect();
              if (b.left < frame.left - 1 || b.right > frame.right + 1 || b.top < frame.top - 1 || b.bottom > frame.bottom + 1)
                problems.push('chart ' + i + ': "' + t.textContent + '" leaves the chart');
              if (!t.hasAttribute('transform')) boxes.push([b, t.textContent]);
            });
            for (let a = 0; a < boxes.length; a++)
              for (let c = a + 1; c < boxes.length; c++) {
                const p = boxes[a][0], q = boxes[c][0];
                // 1 px of slack: glyph boxes of adjacent lines touch without overlapping visibly
                if (p.left < q.right - 1 && q.left < p.right - 1 && p.top < q.bottom - 1 && q.top < p.bottom - 1)
                  problems.push('chart ' + i + ': "' + boxes[a][1] + '" overlaps "' + boxes[c][1] + '"');
              }
          });
          const pre = document.createElement('pre');
          pre.id = 'probe';
          pre.textContent = 'charts=' + svgs.length + ' problems=' + JSON.stringify(problems);
          document.body.appendChild(pre);
        })();
        </script>
        """;

    @Test
    void shouldRenderTheReportsChartsInChromiumWithoutOverlapsAndShowThemInAScreenshot(@TempDir Path dir) throws Exception {
        assertTrue(Files.isExecutable(CHROMIUM), "headless Chromium is a test peer: apt-get install chromium (bash .ci/run does)");
        Map<String, Object> machine = new LinkedHashMap<>();
        machine.put("cpu", "AMD EPYC 7B13");
        machine.put("cores", 2);
        BenchReport.write(dir, "storage", machine, results());
        Path page = dir.resolve("probe.html");
        String html = Files.readString(dir.resolve("report.html"));
        Files.writeString(page, html.replace("</body>", PROBE + "</body>"));

        String dom = chromium(dir, "--dump-dom", page.toUri().toString());
        Matcher m = Pattern.compile("charts=(\\d+) problems=(\\[.*?\\])</pre>").matcher(dom);
        assertTrue(m.find(), "the probe did not run: " + dom.substring(0, Math.min(dom.length(), 2000)));
        assertEquals(3, Integer.parseInt(m.group(1)), "ratio chart and two series charts");
        assertEquals("[]", m.group(2).replace("&quot;", "\""));

        Path png = dir.resolve("report.png");
        chromium(dir, "--screenshot=" + png, "--window-size=1000,1400", dir.resolve("report.html").toUri().toString());
        BufferedImage img = ImageIO.read(png.toFile());
        long inked = 0;
        for (int y = 0; y < img.getHeight(); y += 2) {
            for (int x = 0; x < img.getWidth(); x += 2) {
                int rgb = img.getRGB(x, y) & 0xffffff;
                if (rgb != 0xffffff) {
                    inked++;
                }
            }
        }
        double share = inked / (img.getWidth() * img.getHeight() / 4.0);
        assertTrue(share > 0.01, "the screenshot is nearly blank: " + share);
    }

    private static List<BenchResult> results() {
        Map<String, Double> qd = new LinkedHashMap<>();
        for (int d : new int[] {1, 2, 4, 8, 16, 32, 64, 128}) {
            qd.put("qd" + d, 1000.0 * d);
        }
        Map<String, Double> rounds = Map.of("ours_min", 240_000.0, "ours_median", 258_328.0, "ours_max", 270_000.0);
        return List.of(
            BenchResult.vsPeer("4k-randread-qd1 tmpfs", 258_328, "IOPS", "fio psync", 455_111).withSeries("IOPS", rounds),
            BenchResult.vsPeer("4k-randread-qd32 tmpfs with a rather long benchmark name", 378_077, "IOPS", "fio io_uring", 162_218),
            BenchResult.vsPeerLowerIsBetter("ping p99", 721, "us", "kernel bridge", 137),
            BenchResult.alone("randread by queue depth", 128_000, "IOPS").withSeries("IOPS", qd));
    }

    /** Runs headless Chromium in {@code dir} (its profile too, so nothing is left behind) and returns stdout. */
    private static String chromium(Path dir, String... args) throws Exception {
        List<String> argv = new java.util.ArrayList<>(List.of(CHROMIUM.toString(), "--headless=new", "--no-sandbox",
            "--disable-gpu", "--no-first-run", "--hide-scrollbars", "--user-data-dir=" + dir.resolve("profile"),
            "--virtual-time-budget=5000"));
        argv.addAll(List.of(args));
        Path out = dir.resolve("chromium.out");
        Process p = new ProcessBuilder(argv).directory(dir.toFile()).redirectOutput(out.toFile())
            .redirectError(dir.resolve("chromium.err").toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
        assertEquals(0, p.exitValue(), "chromium failed: " + Files.readString(dir.resolve("chromium.err")));
        return Files.readString(out, StandardCharsets.UTF_8);
    }
}
