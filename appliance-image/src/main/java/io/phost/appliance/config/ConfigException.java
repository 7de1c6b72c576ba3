package io.phost.appliance.config;

import io.phost.appliance.UserException;
import java.util.List;

/**
 * A config file that cannot be used, with every problem found in it (validation does not stop at the first).
 * Nothing has been created or changed when this is thrown: loading is pure.
 */
public final class ConfigException extends Exception {
    /** The exit code of {@code phost config validate} and {@code phost run} for an invalid config. */
    public static final int EXIT_CODE = 2;

    private final List<ConfigError> errors;

    public ConfigException(List<ConfigError> errors) {
        super(render(errors));
        if (errors.isEmpty()) {
            throw new IllegalArgumentException("a ConfigException needs at least one error");
        }
        this.errors = List.copyOf(errors);
    }

    /** The errors in file order. */
    public List<ConfigError> errors() {
        return errors;
    }

    /** One line per error, {@code FILE:LINE:COL: key.path: message}, then no trailing newline. */
    public String lines() {
        return getMessage();
    }

    /**
     * For commands that report through {@link UserException}: the message is every error line followed by a
     * count, and the exit code is {@link #EXIT_CODE}.
     */
    public UserException toUserException() {
        int n = errors.size();
        String count = n == 1 ? "1 error" : n + " errors";
        return new UserException("invalid config (" + count + "):\n" + lines(), EXIT_CODE, this);
    }

    private static String render(List<ConfigError> errors) {
        StringBuilder b = new StringBuilder();
        for (ConfigError e : errors) {
            if (!b.isEmpty()) {
                b.append('\n');
            }
            b.append(e);
        }
        return b.toString();
    }
}
