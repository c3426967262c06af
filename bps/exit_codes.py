"""Exit codes of ``run_quantum`` and ``bps finalize``: the contract with workflow systems.

Workflow systems decide whether to retry a job from its exit code. Codes in
`NO_RETRY` mean that running the same job again cannot help (bad input, bad
configuration, a science failure the task itself declared); every other non-zero
code, and death by a signal (out-of-memory kills arrive as SIGKILL), may succeed on
a retry. Values follow BSD ``sysexits.h`` where one fits so operators recognise them.

"No work" is success. A quantum that finds no work (``NoWorkFound``) is an outcome,
as in ``supertask run``: ``run_quantum`` leaves a tombstone in place of each of its
outputs (see `bps.staging`) and, if nothing else failed, exits 0 (`SUCCESS`). So
every workflow system runs the consumers with no special rule, and a job is never
marked failed, retried or reported for finding no work. `TASK_NO_WORK` (3) is no
longer emitted; it stays reserved. It is in `NO_RETRY`: an HTCondor job (which has no
POST script to translate codes) exiting 3 is not retried and fails its node.

``bps finalize`` also tells the workflow system's verdict back: given the DAG's status
(``--dag-status``, ``--failed-count``) it exits `WORKFLOW_FAILED` when jobs failed or the run
was removed, even if everything that was made is registered.
"""

SUCCESS = 0
#: An unexpected exception: may be transient (a filesystem hiccup), so retry.
UNEXPECTED = 1
#: Reserved: older ``run_quantum`` exited 3 when a quantum had no work; now that is `SUCCESS`.
TASK_NO_WORK = 3
#: The command line is wrong: do not retry.
USAGE = 64
#: The graph file or a staged input is corrupt, truncated or of the wrong version: do not retry.
DATA_ERROR = 65
#: An input that the plan says exists is missing: a retry may see it (shared filesystem lag).
MISSING_INPUT = 66
#: ``bps finalize`` only: expected outputs were neither produced nor declared no-work (jobs
#: failed, were cancelled or have not run yet). What was made is registered; the run is not
#: a success, so the workflow system must not call it one. A restart makes the rest.
OUTPUTS_MISSING = 69
#: ``bps finalize`` only: the workflow system reported failed nodes or a removed run
#: (``--dag-status`` / ``--failed-count``). What was made is registered; the run is no success.
WORKFLOW_FAILED = 70
#: Temporary failure, e.g. staging I/O: retry.
TEMPORARY = 75
#: A configuration error (pipeline or task config invalid): do not retry.
CONFIG_ERROR = 78

#: Exit codes for which a workflow system must not retry the job.
NO_RETRY: tuple[int, ...] = (TASK_NO_WORK, USAGE, DATA_ERROR, CONFIG_ERROR)

DESCRIPTIONS: dict[int, str] = {
    SUCCESS: "success",
    UNEXPECTED: "unexpected error (retry may help)",
    TASK_NO_WORK: "no work (older run_quantum; now exits 0): an outcome, treated as success",
    USAGE: "bad command line (not retried)",
    DATA_ERROR: "corrupt or incompatible graph file or input (not retried)",
    MISSING_INPUT: "an input file is missing (retry may help)",
    OUTPUTS_MISSING: "finalize: expected outputs are missing (registered what was made; restart the run)",
    WORKFLOW_FAILED: "finalize: the workflow reported failed or removed jobs (registered what was made)",
    TEMPORARY: "temporary I/O failure (retry may help)",
    CONFIG_ERROR: "invalid configuration (not retried)",
}


#: the exit code of each failure kind of the core runner (`supertask.execution.single_quantum.failure_kind`,
#: which classifies a task's exception by its type)
FAILURE_CODES: dict[str, int] = {
    "missing_input": MISSING_INPUT,
    "config": CONFIG_ERROR,
    "unexpected": UNEXPECTED,
}


def of_failure(kind: str) -> int:
    """The exit code of a failed quantum, from the core runner's failure kind (unknown kinds: `UNEXPECTED`)."""
    return FAILURE_CODES.get(kind, UNEXPECTED)


def describe(code: int) -> str:
    """A human description of an exit code, including signal deaths (negative or 128+N).

    A signal is named with what usually sends it (``SIGSEGV``: a crash in compiled code;
    ``SIGKILL``: often an out-of-memory kill), so a segfault is not taken for a memory limit.
    """
    if code in DESCRIPTIONS:
        return DESCRIPTIONS[code]
    # imported here: a job's own exit code is in DESCRIPTIONS, and `signal` builds its enums on import
    from supertask.signal_names import describe_signal, signal_of_exit_code

    sig = signal_of_exit_code(code)
    if sig is not None:
        return f"killed by {describe_signal(sig)}"
    return f"exit code {code}"
