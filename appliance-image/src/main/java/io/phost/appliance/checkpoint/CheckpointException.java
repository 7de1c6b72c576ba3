package io.phost.appliance.checkpoint;

/** A checkpoint (or backup) operation refused or failed; {@link #status} is the HTTP status the API answers with. */
public final class CheckpointException extends Exception {
    private final int status;

    public CheckpointException(int status, String message) {
        super(message);
        this.status = status;
    }

    CheckpointException(int status, String message, Throwable cause) {
        super(message, cause);
        this.status = status;
    }

    public int status() {
        return status;
    }
}
