package io.phost.appliance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The module graph of docs/architecture.md, enforced: each module's POM may name only the project
 * modules in its row, and its main sources may import only those modules' packages. A wrong import or a
 * new dependency edge fails this test (and a cycle already fails the Maven reactor).
 */
class ModuleDependencyRulesTest {
    private static final Map<String, Set<String>> ALLOWED = Map.of(
        "hypervisor-core", Set.of(),
        "vhdx-engine", Set.of("hypervisor-core"),
        "qos", Set.of(),
        "vswitch", Set.of("hypervisor-core", "qos"),
        "vsp-storage", Set.of("hypervisor-core", "vhdx-engine", "qos"),
        "vsp-network", Set.of("hypervisor-core", "vswitch", "qos"),
        "perf", Set.of("hypervisor-core", "vhdx-engine", "qos", "vswitch", "vsp-storage", "vsp-network"),
        "appliance-image", Set.of("hypervisor-core", "vhdx-engine", "qos", "vswitch", "vsp-storage", "vsp-network", "perf"));

    private static final Map<String, String> PACKAGE_OF = Map.of(
        "hypervisor-core", "io.phost.core", "vhdx-engine", "io.phost.vhdx", "qos", "io.phost.qos",
        "vswitch", "io.phost.vswitch", "vsp-storage", "io.phost.storage", "vsp-network", "io.phost.network",
        "perf", "io.phost.perf", "appliance-image", "io.phost.appliance");

    /**
     * Edges limited to some packages of the module they reach: vhdx-engine is a library of image formats
     * and uses hypervisor-core for its native layer only, never for anything about guests.
     */
    private static final Map<String, Set<String>> ONLY_PACKAGES = Map.of(
        "vhdx-engine", Set.of("io.phost.core.sys"));
    private static final Pattern CORE_IMPORT =
        Pattern.compile("^import\\s+(?:static\\s+)?(io\\.phost\\.core(?:\\.[a-z]+)*)\\.[A-Z]", Pattern.MULTILINE);
    private static final Pattern QUALIFIED_CORE_USE = Pattern.compile("\\bio\\.phost\\.core\\.([a-z]+)\\.[A-Z]");

    private static final Pattern PROJECT_DEP = Pattern.compile(
        "<dependency>\\s*<groupId>io\\.phost</groupId>\\s*<artifactId>([a-z-]+)</artifactId>");
    private static final Pattern IMPORT = Pattern.compile("^import\\s+(?:static\\s+)?(io\\.phost\\.[a-z]+)\\.", Pattern.MULTILINE);

    static Path root() {
        Path p = Path.of("").toAbsolutePath();
        while (p != null && !Files.exists(p.resolve("hypervisor-core/pom.xml"))) {
            p = p.getParent();
        }
        return p;
    }

    @Test
    void shouldDeclareOnlyAllowedModuleDependencies() throws IOException {
        Path root = root();
        for (var e : ALLOWED.entrySet()) {
            String pom = Files.readString(root.resolve(e.getKey()).resolve("pom.xml"));
            Set<String> declared = new TreeSet<>();
            Matcher m = PROJECT_DEP.matcher(pom);
            while (m.find()) {
                declared.add(m.group(1));
            }
            declared.removeAll(e.getValue());
            assertEquals(Set.of(), declared, e.getKey() + "/pom.xml depends on modules it must not use");
        }
    }

    @Test
    void shouldImportOnlyAllowedModulePackages() throws IOException {
        Path root = root();
        List<String> violations = new ArrayList<>();
        for (var e : ALLOWED.entrySet()) {
            Set<String> ok = new TreeSet<>();
            ok.add(PACKAGE_OF.get(e.getKey()));
            e.getValue().forEach(d -> ok.add(PACKAGE_OF.get(d)));
            Path src = root.resolve(e.getKey()).resolve("src/main/java");
            if (!Files.isDirectory(src)) {
                continue;
            }
            try (Stream<Path> files = Files.walk(src)) {
                for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                    Matcher m = IMPORT.matcher(Files.readString(f));
                    while (m.find()) {
                        if (!ok.contains(m.group(1))) {
                            violations.add(root.relativize(f) + " imports " + m.group(1));
                        }
                    }
                }
            }
        }
        assertTrue(violations.isEmpty(), "imports across forbidden module edges: " + violations);
    }

    @Test
    void shouldUseOnlyTheNativeLayerOfHypervisorCoreFromVhdxEngine() throws IOException {
        Path root = root();
        List<String> violations = new ArrayList<>();
        for (var e : ONLY_PACKAGES.entrySet()) {
            try (Stream<Path> files = Files.walk(root.resolve(e.getKey()).resolve("src/main/java"))) {
                for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                    String text = Files.readString(f);
                    Matcher m = CORE_IMPORT.matcher(text);
                    while (m.find()) {
                        if (!e.getValue().contains(m.group(1))) {
                            violations.add(root.relativize(f) + " imports " + m.group(1));
                        }
                    }
                    Matcher q = QUALIFIED_CORE_USE.matcher(text);
                    while (q.find()) {
                        if (!e.getValue().contains("io.phost.core." + q.group(1))) {
                            violations.add(root.relativize(f) + " uses io.phost.core." + q.group(1));
                        }
                    }
                }
            }
        }
        assertTrue(violations.isEmpty(), "vhdx-engine may use io.phost.core.sys only: " + violations);
    }
}
