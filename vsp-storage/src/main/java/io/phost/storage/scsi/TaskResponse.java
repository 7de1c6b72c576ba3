package io.phost.storage.scsi;

/** The service response of a task management function (SAM-5 §7.1); transports map it to their wire's code. */
public enum TaskResponse {
    /** Done: every command in scope that had not reached the kernel was aborted, and the rest have completed. */
    FUNCTION_COMPLETE,
    /** A query found what it asked about. */
    FUNCTION_SUCCEEDED,
    /** The function is not supported. */
    FUNCTION_REJECTED,
    /** No LUN at that address. */
    INCORRECT_LUN,
    /** Commands in scope still ran at the timeout (the kernel did not finish them): the function did not complete. */
    SERVICE_DELIVERY_FAILURE
}
