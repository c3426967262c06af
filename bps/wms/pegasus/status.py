"""Job states of a Pegasus run, read from the files Pegasus leaves in its submit directory.

Pegasus's monitoring daemon appends one line per job event to ``jobstate.log``
(``TIMESTAMP JOBNAME EVENT CONDOR_ID SITE SEQ``). The last event of a job gives its
state, the number of ``SUBMIT`` events its attempts, and the ``INTERNAL ***
DAGMAN_FINISHED <status> ***`` line the end of the run. Reading this file needs
neither Pegasus nor HTCondor, and it survives the scheduler's history rolling over
(field note 11).

Pegasus names a compute job's DAG node ``<transformation>_<id>``; auxiliary
jobs (``stage_in_``, ``stage_out_``, ``create_dir_``, ``cleanup_``, ...) move
data and are reported under their own label so a failed transfer is not lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Last event -> report state (see `bps.wms.base.STATES`).
EVENT_STATES: dict[str, str] = {
    "SUBMIT": "idle",
    "JOB_RELEASED": "idle",
    "JOB_EVICTED": "idle",
    "PRE_SCRIPT_STARTED": "idle",
    "PRE_SCRIPT_TERMINATED": "idle",
    "PRE_SCRIPT_SUCCESS": "idle",
    "EXECUTE": "running",
    "IMAGE_SIZE": "running",
    "JOB_TERMINATED": "running",
    "JOB_SUCCESS": "running",
    "POST_SCRIPT_STARTED": "running",
    "POST_SCRIPT_TERMINATED": "running",
    "JOB_HELD": "held",
    "POST_SCRIPT_SUCCESS": "succeeded",
    "POST_SCRIPT_FAILURE": "failed",
    "PRE_SCRIPT_FAILURE": "failed",
    "JOB_FAILURE": "failed",
    "JOB_ABORTED": "failed",
    "SUBMIT_FAILED": "failed",
}

#: Name prefixes of the jobs Pegasus adds to move data and make directories.
AUXILIARY_PREFIXES = (
    "stage_in_",
    "stage_out_",
    "stage_inter_",
    "stage_worker_",
    "create_dir_",
    "cleanup_",
    "register_",
    "chmod_",
)
AUXILIARY_LABEL = "(pegasus data staging)"


@dataclass
class JobState:
    """What ``jobstate.log`` says about one DAG node."""

    name: str
    state: str
    attempts: int
    last_event: str
    site: str = ""


@dataclass
class RunState:
    """All jobs seen, and the DAGMan exit status once the run has ended."""

    jobs: dict[str, JobState]
    dagman_status: int | None = None


def read_jobstate(path: Path) -> RunState:
    """Parse ``jobstate.log`` (an absent file is a run with no events yet)."""
    jobs: dict[str, JobState] = {}
    status: int | None = None
    if not path.exists():
        return RunState(jobs)
    with path.open() as stream:
        for line in stream:
            fields = line.split()
            if len(fields) < 3:
                continue
            name, event = fields[1], fields[2]
            if name == "INTERNAL":
                if len(fields) > 4 and fields[3] == "DAGMAN_FINISHED":
                    status = int(fields[4]) if fields[4].lstrip("-").isdigit() else 1
                elif len(fields) > 3 and fields[3] == "DAGMAN_STARTED":
                    status = None  # a resubmission (pegasus-run of a rescue DAG) is running again
                continue
            state = EVENT_STATES.get(event)
            if state is None:
                continue
            job = jobs.get(name)
            if job is None:
                job = jobs[name] = JobState(name, state, 0, event)
            job.state, job.last_event = state, event
            if event == "SUBMIT":
                job.attempts += 1
            if len(fields) > 4 and fields[4] not in ("-", "None"):
                job.site = fields[4]
    return RunState(jobs, status)


def match_job(dag_node: str, transformations: list[str], ids: set[str]) -> str | None:
    """The Pegasus job id behind a DAG node name ``<transformation>_<id>``, if it is one of ``ids``."""
    for name in transformations:
        prefix = name + "_"
        if dag_node.startswith(prefix) and dag_node[len(prefix) :] in ids:
            return dag_node[len(prefix) :]
    return None


def is_auxiliary(dag_node: str) -> bool:
    """True for the jobs Pegasus adds itself (transfers, directories, clean-up)."""
    return dag_node.startswith(AUXILIARY_PREFIXES)


def job_files(run_dir: Path) -> dict[str, tuple[Path | None, Path | None]]:
    """DAG node -> its newest ``.out.NNN`` and ``.err.NNN`` (Pegasus keeps one pair per attempt).

    One walk of the run directory, however many jobs failed: a run of 10^5 jobs
    has 10^5 such files, and a walk per failure would not finish.
    """
    newest: dict[str, list[Path | None]] = {}
    for path in run_dir.rglob("*"):
        stem, dot, attempt = path.name.rpartition(".")
        if not dot or not attempt.isdigit():
            continue
        node, dot, kind = stem.rpartition(".")
        if not dot or kind not in ("out", "err"):
            continue
        slot = 0 if kind == "out" else 1
        entry = newest.setdefault(node, [None, None])
        if entry[slot] is None or path.name > entry[slot].name:
            entry[slot] = path
    return {node: (pair[0], pair[1]) for node, pair in newest.items()}


def tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' when absent)."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
