package io.phost.appliance.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.perf.BenchResult;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.xml.parsers.DocumentBuilderFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/** The report's SVG is well-formed XML, has axes with units, no negative sizes, ordered bars and labels that do not overlap. */
class BenchReportChartsTest {
    private static final List<BenchResult> RESULTS = List.of(
        BenchResult.vsPeer("4k-randread-qd1 tmpfs", 258_328, "IOPS", "fio psync", 455_111),
        BenchResult.vsPeer("4k-randread-qd32 tmpfs with a rather long benchmark name", 378_077, "IOPS", "fio io_uring", 162_218),
        BenchResult.vsPeerLowerIsBetter("ping p99", 721, "us", "kernel bridge", 137),
        BenchResult.vsPeer("broken peer", -5, "IOPS", "raw", 100),
        BenchResult.alone("allocs", 1204, "allocs/s").withSeries("IOPS", series()),
        BenchResult.alone("mixed", 5, "us").withSeries(Map.of("lat_p99_us", 12.5, "iops", 48_000.0)));

    private static Map<String, Double> series() {
        Map<String, Double> m = new LinkedHashMap<>();
        for (String k : List.of("qd32", "qd1", "qd128", "qd2", "qd16", "qd4", "qd8", "qd64")) {
            m.put(k, k.equals("qd64") ? -3.0 : Double.parseDouble(k.substring(2)) * 1000);
        }
        m.put("qd256", Double.NaN);
        return m;
    }

    @Test
    void ratioChartIsValidSvgWithAnXAxisBestFirstAndNoOverlappingLabels() throws Exception {
        Document svg = parse(SvgCharts.ratioChart("Ratio to peer", RESULTS.stream().filter(r -> !Double.isNaN(r.ratio())).toList()));
        assertNoNegativeSizes(svg);
        assertNoOverlappingText(svg);
        List<String> texts = texts(svg);
        assertTrue(texts.stream().anyMatch(t -> t.contains("ours / peer")), "x axis title: " + texts);
        assertTrue(texts.contains("1x") && texts.contains("2x"), "x axis ticks: " + texts);
        int best = texts.indexOf("4k-randread-qd32 tmpfs with a rather long benchmark name");
        int worse = texts.indexOf("4k-randread-qd1 tmpfs");
        int worst = texts.indexOf("ping p99");
        assertTrue(best < worse && worse < worst, "bars ordered best ratio first: " + texts);
    }

    @Test
    void seriesChartOrdersQueueDepthsNumericallyAndNamesItsUnit() throws Exception {
        Document svg = parse(SvgCharts.seriesChart("randread by queue depth", "IOPS", series()));
        assertNoNegativeSizes(svg);
        assertNoOverlappingText(svg);
        List<String> texts = texts(svg);
        assertTrue(texts.contains("IOPS"), "y axis names the unit: " + texts);
        List<String> keys = texts.stream().filter(t -> t.startsWith("qd")).toList();
        assertEquals(List.of("qd1", "qd2", "qd4", "qd8", "qd16", "qd32", "qd64", "qd128", "qd256"), keys);
        assertTrue(texts.contains("0") && texts.contains("50k"), "y axis ticks in round steps: " + texts);
    }

    @Test
    void manyLongSeriesLabelsAreRotatedRatherThanOverlapping() throws Exception {
        Map<String, Double> m = new LinkedHashMap<>();
        for (int i = 0; i < 12; i++) {
            m.put("randread-qd" + i + "-latency-p99", 10.0 + i);
        }
        Document svg = parse(SvgCharts.seriesChart("long labels", "s", m));
        assertNoOverlappingText(svg);
    }

    @Test
    void theReportDefinesItsHeadlineAndDescribesTheMachineInWords(@TempDir Path dir) throws Exception {
        Map<String, Object> machine = new LinkedHashMap<>();
        machine.put("date", "2026-12-06T06:20:11.123Z");
        machine.put("cpu", "AMD EPYC 7B13");
        machine.put("cores", 2);
        machine.put("memory_gib", 7.8);
        machine.put("kernel", "6.1.0-26-amd64");
        machine.put("java", "25+36");
        machine.put("host", "bench-1");
        BenchReport.write(dir, "storage", machine, RESULTS);
        String html = Files.readString(dir.resolve("report.html"));
        String md = Files.readString(dir.resolve("report.md"));
        String words = "AMD EPYC 7B13 with 2 cores and 7.8 GiB of memory, Linux 6.1.0-26-amd64, Java 25+36, host bench-1, measured 2026-12-06 06:20 UTC";
        assertTrue(html.contains(words) && md.contains(words), html);
        assertFalse(html.contains("{date="), "no Java map dump");
        // ratios: 0.568, 2.331, 0.190 (a negative measurement has none): median 0.57, min 0.19, max 2.33
        assertTrue(md.contains("median 0.57x of peer over 3 pairs (min 0.19x, max 2.33x)"), md);
        assertTrue(html.contains("The headline is the median"), html);
        int start = html.indexOf("<svg");
        while (start >= 0) {
            int end = html.indexOf("</svg>", start) + 6;
            Document svg = parse(html.substring(start, end));
            assertNoNegativeSizes(svg);
            assertNoOverlappingText(svg);
            start = html.indexOf("<svg", end);
        }
        assertTrue(Files.exists(dir.resolve("ratios.svg")) && Files.exists(dir.resolve("series-0.svg")));
        assertFalse(Files.exists(dir.resolve("series-1.svg")), "a series of mixed units gets no chart");
        assertTrue(md.contains("- mixed: iops=48000, lat_p99_us=12.5"), md);
    }

    @Test
    void aQuickRunThatTakesLongerThanAMinuteSaysSoBeforeItStarts() {
        var suites = BenchRunner.suites();
        assertTrue(BenchRunner.quickNotice(suites.get("storage")).contains("about 110 s (over a minute)"));
        assertTrue(BenchRunner.quickNotice(suites.get("qos")).contains("under a minute"));
    }

    static Document parse(String svg) throws Exception {
        var f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        Document d = f.newDocumentBuilder().parse(new ByteArrayInputStream(svg.getBytes(StandardCharsets.UTF_8)));
        assertEquals("http://www.w3.org/2000/svg", d.getDocumentElement().getNamespaceURI());
        return d;
    }

    private static List<String> texts(Document d) {
        List<String> out = new ArrayList<>();
        NodeList n = d.getElementsByTagName("text");
        for (int i = 0; i < n.getLength(); i++) {
            out.add(n.item(i).getTextContent());
        }
        return out;
    }

    private static void assertNoNegativeSizes(Document d) {
        NodeList n = d.getElementsByTagName("rect");
        for (int i = 0; i < n.getLength(); i++) {
            Element e = (Element) n.item(i);
            for (String a : List.of("width", "height")) {
                String v = e.getAttribute(a);
                if (!v.endsWith("%")) {
                    double x = Double.parseDouble(v);
                    assertTrue(x >= 0 && !Double.isNaN(x), a + "=" + v + " in rect " + i);
                }
            }
        }
    }

    /** Boxes of unrotated text estimated from font size and anchor; rotated labels are checked by their spacing. */
    private static void assertNoOverlappingText(Document d) {
        double svgW = Double.parseDouble(d.getDocumentElement().getAttribute("width"));
        NodeList n = d.getElementsByTagName("text");
        List<double[]> boxes = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int i = 0; i < n.getLength(); i++) {
            Element e = (Element) n.item(i);
            double size = Double.parseDouble(e.getAttribute("font-size"));
            double w = e.getTextContent().length() * size * SvgCharts.CHAR_WIDTH_EM;
            double x = Double.parseDouble(e.getAttribute("x"));
            double y = Double.parseDouble(e.getAttribute("y"));
            if (e.hasAttribute("transform")) {
                continue;
            }
            String anchor = e.getAttribute("text-anchor");
            double x0 = anchor.equals("end") ? x - w : anchor.equals("middle") ? x - w / 2 : x;
            assertTrue(x0 >= -0.5 && x0 + w <= svgW + 0.5, "text '" + e.getTextContent() + "' leaves the chart");
            boxes.add(new double[] {x0, y - size * 0.8, x0 + w, y + size * 0.2});
            names.add(e.getTextContent());
        }
        for (int i = 0; i < boxes.size(); i++) {
            for (int j = i + 1; j < boxes.size(); j++) {
                double[] a = boxes.get(i);
                double[] b = boxes.get(j);
                boolean overlap = a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
                assertFalse(overlap, "labels overlap: '" + names.get(i) + "' and '" + names.get(j) + "'");
            }
        }
    }
}
