package io.phost.appliance.config;

import io.phost.appliance.config.ConfigError.Reason;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.tomlj.Toml;
import org.tomlj.TomlParseError;
import org.tomlj.TomlParseResult;
import org.tomlj.TomlPosition;

/**
 * Reads {@code appliance.toml} into an {@link ApplianceConfig}, or fails with every problem found.
 *
 * <p>Loading is pure: it reads the one file it is given and nothing else (no disk, switch or directory is looked
 * at, created or changed), so where the file lives (a config partition, {@code /etc}, a test's temp dir) does
 * not matter, and validation can run anywhere.
 */
public final class ConfigLoader {
    /** Larger files are refused before parsing: a config is a few KiB; this bounds memory for hostile input. */
    public static final int MAX_BYTES = 1 << 20;

    /** The classpath resource of the embedded demo ({@code phost run} without {@code --config}). */
    public static final String DEMO_RESOURCE = "/io/phost/appliance/demo.toml";

    /** The classpath resource printed by {@code phost config example}; a copy of {@code examples/appliance.toml}. */
    public static final String EXAMPLE_RESOURCE = "/io/phost/appliance/examples/appliance.toml";

    private ConfigLoader() {
    }

    /** Reads and validates a file (UTF-8, at most {@link #MAX_BYTES}). */
    public static ApplianceConfig load(Path file) throws ConfigException {
        String name = file.toString();
        byte[] bytes;
        try {
            if (Files.size(file) > MAX_BYTES) {
                throw single(name, 1, 1, Reason.UNREADABLE,
                    "file is larger than " + Units.formatSize(MAX_BYTES) + "; not a config");
            }
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw single(name, 1, 1, Reason.UNREADABLE, "cannot read: " + describe(e));
        }
        return parse(name, file, decode(name, bytes));
    }

    /**
     * Validates one {@code [[qos_policy]]} given as key/value strings (the management API's query arguments)
     * exactly as the config file's table: each value is read as the TOML integer it spells, or else as a TOML
     * string, so {@code max_bandwidth=100MB/s}, {@code normalization_size=8KiB} and {@code weight=200} mean what
     * they mean in appliance.toml, and every mistake gets the config file's message (without FILE:LINE:COL).
     *
     * @throws IllegalArgumentException with {@code key: message} for each error, joined by "; "
     */
    public static QosPolicyConfig parseQosPolicy(Map<String, String> fields) {
        StringBuilder toml = new StringBuilder("[[qos_policy]]\n");
        fields.forEach((k, v) -> toml.append(tomlString(k)).append(" = ")
            .append(v.matches("-?[0-9]{1,18}") ? v : tomlString(v)).append('\n'));
        List<ConfigError> errors = new ArrayList<>();
        TomlParseResult parsed = Toml.parse(toml.toString());
        QosPolicyConfig policy = parsed.hasErrors() ? null : new ConfigBinder("<api>", null, errors).bindPolicy(parsed);
        if (!errors.isEmpty() || policy == null) {
            List<String> lines = errors.stream()
                .map(e -> e.keyPath().replaceFirst("^qos_policy\\[0\\]\\.?", "") + ": " + e.message()).toList();
            throw new IllegalArgumentException(lines.isEmpty() ? "invalid policy" : String.join("; ", lines));
        }
        return policy;
    }

    /** A TOML basic string: quotes, backslashes and control characters escaped. */
    private static String tomlString(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    /** Validates text; {@code sourceName} is used in error lines and as {@link ApplianceConfig#source()}. */
    public static ApplianceConfig parse(String sourceName, String text) throws ConfigException {
        return parse(sourceName, Path.of(sourceName.isEmpty() ? "<config>" : sourceName.replace('\0', '?')), text);
    }

    /** Validates UTF-8 bytes (as read from a config partition, say). */
    public static ApplianceConfig parse(String sourceName, byte[] utf8) throws ConfigException {
        if (utf8.length > MAX_BYTES) {
            throw single(sourceName, 1, 1, Reason.UNREADABLE,
                "file is larger than " + Units.formatSize(MAX_BYTES) + "; not a config");
        }
        return parse(sourceName, decode(sourceName, utf8));
    }

    /** The embedded demo, its {@code ${tmp}} data dir replaced by {@code dataDir}. */
    public static ApplianceConfig loadDemo(Path dataDir) {
        return loadDemo(dataDir, "");
    }

    /** The embedded demo with {@code extra} TOML appended (the run-time VM partition, when there is one). */
    public static ApplianceConfig loadDemo(Path dataDir, String extra) {
        return loadDemo(dataDir, extra, DEMO_SUBNET_PREFIX);
    }

    /** The first three octets of the demo's /24 as the demo file writes them (its switch and partitions). */
    public static final String DEMO_SUBNET_PREFIX = "10.213.0.";

    /**
     * The embedded demo with {@code extra} appended and its subnet moved to {@code subnetPrefix} ("10.213.N.", as
     * {@code DemoSubnet} picks one the machine does not route yet).
     */
    public static ApplianceConfig loadDemo(Path dataDir, String extra, String subnetPrefix) {
        try {
            return parse("<demo>", resourceText(DEMO_RESOURCE).replace(DEMO_SUBNET_PREFIX, subnetPrefix) + extra)
                .withDataDir(dataDir);
        } catch (ConfigException e) {
            throw new IllegalStateException("the embedded demo config is invalid:\n" + e.getMessage(), e);
        }
    }

    /** A classpath resource as text (the demo and the example ship inside the jar). */
    public static String resourceText(String resource) {
        try (InputStream in = ConfigLoader.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("missing classpath resource " + resource);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static ApplianceConfig parse(String sourceName, Path source, String text) throws ConfigException {
        if (text.length() > MAX_BYTES) {
            throw single(sourceName, 1, 1, Reason.UNREADABLE,
                "file is larger than " + Units.formatSize(MAX_BYTES) + "; not a config");
        }
        List<ConfigError> errors = new ArrayList<>();
        TomlParseResult toml;
        try {
            toml = Toml.parse(text);
        } catch (StackOverflowError | AssertionError | RuntimeException e) {
            // tomlj's recursive descent can exhaust the stack on absurd nesting, and with -ea one of its own
            // assertions fails on an unclosed header followed by a comment ("[d#2xa 0", found by the 100k
            // ConfigFuzzTest soak); report either as a config error.
            throw single(sourceName, 1, 1, Reason.SYNTAX, "cannot parse: nesting too deep or malformed document");
        }
        Set<Integer> syntaxLines = new HashSet<>();
        for (TomlParseError e : toml.errors()) {
            TomlPosition p = e.position();
            int line = p == null ? 1 : p.line();
            int column = p == null ? 1 : p.column();
            syntaxLines.add(line);
            errors.add(new ConfigError(sourceName, line, column, "", Reason.SYNTAX, "TOML syntax: " + message(e)));
        }
        List<ConfigError> semantic = new ArrayList<>();
        ApplianceConfig config = new ConfigBinder(sourceName, source, semantic).bind(toml);
        // A key on a line that failed to parse is already explained by the syntax error.
        for (ConfigError e : semantic) {
            if (!syntaxLines.contains(e.line())) {
                errors.add(e);
            }
        }
        if (!errors.isEmpty() || config == null) {
            if (errors.isEmpty()) {
                errors.add(new ConfigError(sourceName, 1, 1, "", Reason.SYNTAX, "invalid config"));
            }
            errors.sort(ConfigError.BY_POSITION);
            throw new ConfigException(dedupe(errors));
        }
        return config;
    }

    private static String message(TomlParseError e) {
        String m = e.getMessage();
        // tomlj appends " (line L, column C)"; the position is already at the front of our line.
        int at = m.lastIndexOf(" (line ");
        return at > 0 ? m.substring(0, at) : m;
    }

    private static List<ConfigError> dedupe(List<ConfigError> errors) {
        List<ConfigError> out = new ArrayList<>(errors.size());
        for (ConfigError e : errors) {
            if (out.isEmpty() || !out.getLast().equals(e)) {
                out.add(e);
            }
        }
        return out;
    }

    /** Strict UTF-8: the first malformed byte is reported with its line and column. */
    private static String decode(String name, byte[] bytes) throws ConfigException {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(bytes.length);
        CoderResult r = decoder.decode(in, out, true);
        if (r.isError()) {
            int offset = in.position();
            int line = 1;
            int lineStart = 0;
            for (int i = 0; i < offset; i++) {
                if (bytes[i] == '\n') {
                    line++;
                    lineStart = i + 1;
                }
            }
            throw single(name, line, offset - lineStart + 1, Reason.ENCODING,
                "not valid UTF-8 (byte offset " + offset + ")");
        }
        decoder.flush(out);
        String text = out.flip().toString();
        // Editors on some systems start UTF-8 files with a byte order mark; TOML has no use for it.
        return text.startsWith("\uFEFF") ? text.substring(1) : text;
    }

    private static ConfigException single(String file, int line, int column, Reason reason, String message) {
        return new ConfigException(List.of(new ConfigError(file, line, column, "", reason, message)));
    }

    private static String describe(IOException e) {
        if (e instanceof java.nio.file.NoSuchFileException) {
            return "no such file";
        }
        if (e instanceof java.nio.file.AccessDeniedException) {
            return "permission denied";
        }
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    }
}
