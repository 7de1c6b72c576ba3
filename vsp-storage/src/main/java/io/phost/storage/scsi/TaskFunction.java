package io.phost.storage.scsi;

/**
 * Task management functions (SAM-5 §7) a transport hands to {@link ScsiTarget#manage}. Every initiator of a
 * target is the one partition or VM behind it, so the task set of a LUN is all of its commands, and an
 * I_T nexus is the whole target.
 */
public enum TaskFunction {
    /** Abort the command with this tag on this LUN. */
    ABORT_TASK,
    /** Abort every command of this LUN. */
    ABORT_TASK_SET,
    /** The same as ABORT TASK SET here: the LUN has one initiator. */
    CLEAR_TASK_SET,
    /** Abort every command of this LUN (the LUN keeps no other state a reset would clear). */
    LOGICAL_UNIT_RESET,
    /** Abort every command of the target. */
    I_T_NEXUS_RESET,
    /** Is the command with this tag still in the task set? FUNCTION SUCCEEDED when it is. Aborts nothing. */
    QUERY_TASK,
    /** Has this LUN any command in its task set? FUNCTION SUCCEEDED when it has. Aborts nothing. */
    QUERY_TASK_SET;

    boolean aborts() {
        return this != QUERY_TASK && this != QUERY_TASK_SET;
    }

    boolean oneTask() {
        return this == ABORT_TASK || this == QUERY_TASK;
    }

    boolean wholeTarget() {
        return this == I_T_NEXUS_RESET;
    }
}
