"""Job states of a Pegasus run, read from the files Pegasus leaves in its submit directory.

Pegasus's monitoring daemon appends one line per job event to ``jobstate.log``
(``TIMESTAMP JOBNAME EVENT CONDOR_ID SITE SEQ``). The last event of a job gives its
state, the number of ``SUBMIT`` events its attempts, and the ``INTERNAL ***
DAGMAN_FINISHED <status> ***`` line the end of the run. Reading this file needs
neither Pegasus nor HTCondor, and it survives the scheduler's history rolling over
(after which the scheduler can no longer report the run at all).

Pegasus names a compute job's DAG node ``<transformation>_<id>`` and a
sub-workflow's ``pegasus-plan_<id>``; the jobs it adds itself (``create_dir_``,
``stage_in_``, ``stage_out_``, ``stage_inter_``, ``clean_up_``, ``cleanup_``,
``register_``, ...) are reported apart, one label per kind, so a failed transfer
is not lost and is never counted as one of ours.

A sub-workflow is planned into its own run directory inside the parent's
(``00/00/<name>_<id>`` links to the current attempt, ``<name>_<id>.000``,
``.001``...), with its own ``braindump.yml`` and ``jobstate.log``: `run_dirs`
finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supertask import states

#: Last event -> report state (see `bps.wms.base.STATES`).
EVENT_STATES: dict[str, states.JobState] = {
    "SUBMIT": states.JobState.IDLE,
    "JOB_RELEASED": states.JobState.IDLE,
    "JOB_EVICTED": states.JobState.IDLE,
    "PRE_SCRIPT_STARTED": states.JobState.IDLE,
    "PRE_SCRIPT_TERMINATED": states.JobState.IDLE,
    "PRE_SCRIPT_SUCCESS": states.JobState.IDLE,
    "EXECUTE": states.JobState.RUNNING,
    "IMAGE_SIZE": states.JobState.RUNNING,
    "JOB_TERMINATED": states.JobState.RUNNING,
    "JOB_SUCCESS": states.JobState.RUNNING,
    "POST_SCRIPT_STARTED": states.JobState.RUNNING,
    "POST_SCRIPT_TERMINATED": states.JobState.RUNNING,
    "JOB_HELD": states.JobState.HELD,
    "POST_SCRIPT_SUCCESS": states.JobState.SUCCEEDED,
    "POST_SCRIPT_FAILURE": states.JobState.FAILED,
    "PRE_SCRIPT_FAILURE": states.JobState.FAILED,
    "JOB_FAILURE": states.JobState.FAILED,
    "JOB_ABORTED": states.JobState.FAILED,
    "SUBMIT_FAILED": states.JobState.FAILED,
}

#: Name prefixes of the jobs Pegasus adds to move data, make and remove directories, register.
AUXILIARY_PREFIXES = (
    "stage_in_",
    "stage_out_",
    "stage_inter_",
    "stage_worker_",
    "create_dir_",
    "clean_up_",
    "cleanup_",
    "register_",
    "chmod_",
)
#: DAG node name prefix of a sub-workflow job (Pegasus plans it in the node's PRE script).
SUBWORKFLOW_PREFIX = "pegasus-plan"


@dataclass
class JobState:
    """What ``jobstate.log`` says about one DAG node."""

    name: str
    state: str
    attempts: int
    last_event: str
    site: str = ""
    #: epoch seconds of the latest attempt's first ``EXECUTE`` and of its end
    #: (``JOB_TERMINATED``, ``JOB_ABORTED``, ``JOB_FAILURE``), for the report's timeline
    started: float | None = None
    ended: float | None = None


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
                    # a node without a POST script (a sub-workflow's) ends with JOB_SUCCESS
                    for ended in jobs.values():
                        if ended.last_event == "JOB_SUCCESS":
                            ended.state = states.JobState.SUCCEEDED
                elif len(fields) > 3 and fields[3] == "DAGMAN_STARTED":
                    status = None  # a resubmission (pegasus-run of a rescue DAG) is running again
                continue
            state = EVENT_STATES.get(event)
            if state is None:
                continue
            job = jobs.get(name)
            if job is None:
                job = jobs[name] = JobState(name, state, 0, event)
            if event == "JOB_SUCCESS" and name.startswith(SUBWORKFLOW_PREFIX + "_"):
                state = (
                    states.JobState.SUCCEEDED
                )  # its node has no POST script: JOB_SUCCESS is its last event
            job.state, job.last_event = state, event
            if event == "SUBMIT":
                job.attempts += 1
                job.started = job.ended = None
            elif event == "EXECUTE" and job.started is None:
                job.started = _timestamp(fields[0])
            elif event in ("JOB_TERMINATED", "JOB_ABORTED", "JOB_FAILURE") and job.started is not None:
                job.ended = _timestamp(fields[0])
            if len(fields) > 4 and fields[4] not in ("-", "None"):
                job.site = fields[4]
    return RunState(jobs, status)


def _timestamp(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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


def auxiliary_label(dag_node: str) -> str:
    """The report label of a job Pegasus added: ``(pegasus stage_out)``, ``(pegasus clean_up)``..."""
    for prefix in AUXILIARY_PREFIXES:
        if dag_node.startswith(prefix):
            return f"(pegasus {prefix.rstrip('_')})"
    raise ValueError(f"{dag_node} is not a job Pegasus adds")


def run_dirs(run_dir: Path) -> list[Path]:
    """``run_dir`` and the run directories of its sub-workflows (current attempts only), parents first.

    A sub-workflow planned again (a retry of its node) gets ``<name>.001`` next
    to ``<name>.000``; only the highest attempt is the run's current state.
    """
    import os
    import re

    attempt = re.compile(r"^(.*)\.(\d{3})$")
    found: list[Path] = [run_dir]
    newest: dict[tuple[Path, str], tuple[int, Path]] = {}
    for root, dirnames, _ in os.walk(run_dir):  # does not follow the links to the attempts
        for name in dirnames:
            path = Path(root) / name
            if not (path / "braindump.yml").is_file():
                continue
            match = attempt.match(name)
            base, number = (match.group(1), int(match.group(2))) if match else (name, -1)
            key = (Path(root), base)
            if key not in newest or number > newest[key][0]:
                newest[key] = (number, path)
    found += sorted(path for _, path in newest.values())
    return found


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
        current = entry[slot]
        if current is None or path.name > current.name:
            entry[slot] = path
    return {node: (pair[0], pair[1]) for node, pair in newest.items()}


def tail(path: Path | None, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' when absent)."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
