"""What DAGMan itself says about each of its runs of a DAG: started, refused, running, ended how.

A submit directory is run by one DAGMan job per submission (``bps submit``, each
``bps restart``), each a scheduler-universe job with its own cluster id. Four files
tell what became of them, each the authority on something:

- ``<dag>.dagman.log``: the DAGMan *job's* event log (the ``log`` of
  ``<dag>.condor.sub``). The schedd writes its termination (exit code) or abort
  (``condor_rm``, ``bps cancel``) even when DAGMan dies without a word, so this says
  whether a DAGMan job has ended.
- ``<dag>.dagman.out``: DAGMan's own log, appended to by every run. Each run starts
  with ``STARTING UP`` and names its job (``Workflow batch-id: <767.0>``); it has the
  ``ERROR`` lines (a DAG it refused to parse, an assertion it died of), the DAG status
  (``DAG status: 4 (DAG_STATUS_RM)``) and, unless it died, ``EXITING WITH STATUS N``.
- ``<dag>.metrics``: written at a normal exit; ``DagStatus`` and the ``exitcode``.
  DAGMan's exit is the FINAL node's, so ``exitcode`` 0 with ``DagStatus`` 2 (a node
  failed) or 4 (removed) is a run that did not succeed.
- ``<dag>.rescueNNN``: the nodes that were done when the run stopped (``DONE`` lines).

Reading needs no schedd, so a report works long after the schedd forgot the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layout import DagLayout

#: DAGMan's DAG status values (``DAG status: N (NAME)`` in .dagman.out, ``DagStatus`` in metrics).
DAG_STATUS = {
    0: "ok",
    1: "error",
    2: "a node failed",
    3: "aborted (ABORT-DAG-ON)",
    4: "removed (condor_rm / bps cancel)",
    5: "cycle in the DAG",
    6: "halted",
}
DAG_STATUS_OK, DAG_STATUS_NODE_FAILED, DAG_STATUS_RM = 0, 2, 4

#: A DAGMan start-up in .dagman.out (real DAGMan, and the test runner's stand-in).
_STARTING = ("(CONDOR_DAGMAN) STARTING UP", "DAGMan starting")
_BATCH_ID = re.compile(r"Workflow batch-id: <(\d+)\.")
_EXITING = re.compile(r"EXITING WITH STATUS (-?\d+)")
_DAG_STATUS = re.compile(r"DAG status: (\d+)")
#: ``12/05/26 13:58:44 ERROR: ...`` (a timestamp, then the message)
_ERROR = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (ERROR\b.*)$")
#: DAGMan finished reading the DAG (a refused DAG never gets here).
_PARSED = ("Dag contains", "Bootstrapping...")
MAX_ERRORS = 20

# Job event numbers of the DAGMan job's own log.
_SUBMIT, _TERMINATED, _ABORTED = 0, 5, 9


@dataclass
class DagmanSection:
    """One DAGMan run as ``.dagman.out`` tells it."""

    cluster: int | None = None
    parsed: bool = False
    exit_status: int | None = None
    dag_status: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class DagmanJobEnd:
    """How the schedd saw a DAGMan job end (its own event log)."""

    submitted: bool = False
    exit_code: int | None = None
    removed: bool = False

    @property
    def ended(self) -> bool:
        return self.exit_code is not None or self.removed


@dataclass
class DagmanRun:
    """One submission's DAGMan job, from all the files together."""

    cluster: int | None
    #: its section of .dagman.out (None: DAGMan has not started writing yet)
    section: DagmanSection | None
    job: DagmanJobEnd
    metrics: dict[str, Any] | None

    @property
    def ended(self) -> bool:
        """The DAGMan job is gone: exited, removed, or died (its job log or its own last words say so)."""
        return self.job.ended or (self.section is not None and self.section.exit_status is not None)

    @property
    def exit_status(self) -> int | None:
        if self.section is not None and self.section.exit_status is not None:
            return self.section.exit_status
        if self.metrics is not None and "exitcode" in self.metrics:
            return int(self.metrics["exitcode"])
        return self.job.exit_code

    @property
    def dag_status(self) -> int | None:
        if self.metrics is not None and "DagStatus" in self.metrics:
            return int(self.metrics["DagStatus"])
        return self.section.dag_status if self.section is not None else None

    @property
    def refused(self) -> bool:
        """DAGMan exited without ever finishing reading the DAG (parse error, bad config)."""
        return (
            self.section is not None
            and not self.section.parsed
            and self.ended
            and (self.exit_status or 0) != 0
        )

    @property
    def died(self) -> bool:
        """DAGMan ended without its EXITING line and metrics (an assertion, a kill)."""
        return (
            self.ended and self.metrics is None and (self.section is None or self.section.exit_status is None)
        )

    @property
    def errors(self) -> list[str]:
        return self.section.errors if self.section is not None else []


def dagman_log_path(layout: DagLayout) -> Path:
    """The DAGMan job's event log (``log`` of the ``.condor.sub`` that ``condor_submit_dag`` writes)."""
    return layout.submit_dir / f"{layout.dag.name}.dagman.log"


def metrics_path(layout: DagLayout) -> Path:
    return layout.submit_dir / f"{layout.dag.name}.metrics"


def lock_path(layout: DagLayout) -> Path:
    return layout.submit_dir / f"{layout.dag.name}.lock"


def read_sections(dagman_out: Path, offset: int = 0) -> list[DagmanSection]:
    """Every DAGMan run in ``.dagman.out`` from byte ``offset`` on, oldest first (one streaming pass).

    ``offset``: the file's size before a submission, so that waiting for a new DAGMan
    does not read the earlier runs again and again.
    """
    sections: list[DagmanSection] = []
    if not dagman_out.exists():
        return sections
    current: DagmanSection | None = None
    with dagman_out.open("rb") as raw:
        raw.seek(offset if offset <= dagman_out.stat().st_size else 0)  # rotated or truncated: all
        for data in raw:
            line = data.decode(errors="replace")
            if any(marker in line for marker in _STARTING):
                current = DagmanSection()
                sections.append(current)
                continue
            if current is None:
                continue
            if "batch-id" in line and (m := _BATCH_ID.search(line)):
                current.cluster = int(m.group(1))
            elif "EXITING" in line and (m := _EXITING.search(line)):
                current.exit_status = int(m.group(1))
            elif "DAG status:" in line and (m := _DAG_STATUS.search(line)):
                current.dag_status = int(m.group(1))
                current.parsed = True
            elif "ERROR" in line and (m := _ERROR.match(line.rstrip("\n"))):
                if len(current.errors) < MAX_ERRORS:
                    current.errors.append(m.group(1))
            elif any(marker in line for marker in _PARSED):
                current.parsed = True
    return sections


def read_dagman_job_log(path: Path) -> dict[int, DagmanJobEnd]:
    """DAGMan cluster -> how its job ended (``{}`` without the log)."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    import htcondor2  # only when there is a log to read

    jobs: dict[int, DagmanJobEnd] = {}
    for event in htcondor2.JobEventLog(str(path)).events(stop_after=0):
        code = int(event.type)
        job = jobs.setdefault(int(event.cluster), DagmanJobEnd())
        if code == _SUBMIT:
            job.submitted = True
        elif code == _TERMINATED:
            normal = event.get("TerminatedNormally", True)
            job.exit_code = (
                int(event.get("ReturnValue", 0)) if normal else -int(event.get("TerminatedBySignal", 0))
            )
        elif code == _ABORTED:
            job.removed = True
    return jobs


def read_metrics(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def dagman_run(
    layout: DagLayout, cluster: int | None, since: float | None = None, offset: int = 0
) -> DagmanRun:
    """What became of the DAGMan job ``cluster`` (the last submission of the run record).

    Sections of ``.dagman.out`` are matched by the cluster they name. A DAGMan that names
    none (the test runner) is matched as the last section, if ``.dagman.out`` was written
    after the submission time ``since`` (a previous run's exit is not this one's).
    ``offset``: where in ``.dagman.out`` to start reading (see `read_sections`).
    """
    sections = read_sections(layout.dagman_out, offset)
    jobs = read_dagman_job_log(dagman_log_path(layout))
    job = jobs.get(cluster, DagmanJobEnd()) if cluster is not None else DagmanJobEnd()
    section: DagmanSection | None = None
    if cluster is not None:
        section = next((s for s in reversed(sections) if s.cluster == cluster), None)
    # The schedd logs a DAGMan job's submission before bps records it: a cluster the job
    # log does not know was not run by a schedd (the test runner, which names no cluster).
    if section is None and not job.submitted and sections and fresh(layout.dagman_out, since):
        section = sections[-1]
    metrics = read_metrics(metrics_path(layout))
    if metrics is not None and cluster is not None and str(metrics.get("dagman_id", cluster)) != str(cluster):
        metrics = None  # an earlier DAGMan's metrics
    if metrics is not None and section is None and not job.ended:
        metrics = None
    return DagmanRun(cluster, section, job, metrics)


def fresh(path: Path, since: float | None) -> bool:
    """``path`` exists and was written at or after ``since`` (None: any time)."""
    return path.exists() and (since is None or path.stat().st_mtime >= since)


def rescue_done(path: Path) -> set[str]:
    """The nodes a rescue DAG marks ``DONE``."""
    done = set()
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "DONE":
            done.add(parts[1])
    return done


def describe_status(status: int | None) -> str:
    return DAG_STATUS.get(status, f"status {status}") if status is not None else "unknown"
