package io.phost.qos;

/** A policy or store setting that cannot be enforced; {@link #reason()} says which rule it breaks. */
public final class QosPolicyException extends IllegalArgumentException {
    public enum Reason {
        BLANK_NAME,
        NEGATIVE_VALUE,
        MIN_ABOVE_MAX,
        BAD_NORMALIZATION_SIZE,
        BAD_WEIGHT,
        MISSING_TYPE
    }

    private final Reason reason;

    public QosPolicyException(Reason reason, String detail) {
        super(reason + ": " + detail);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
