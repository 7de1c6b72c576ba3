package io.phost.appliance.cli;

/** Test access to {@link StatusCommand}'s package-private rendering from other packages. */
public final class StatusCommandAccess {
    private StatusCommandAccess() {}

    public static String render(Object statusDocument) {
        return StatusCommand.render(statusDocument);
    }
}
