"""What every workflow system offers: prepare, submit, report, restart, cancel.

One small interface, in the spirit of Parsl's executors: a `WorkflowService` decides
how the jobs of a `~bps.workflow.GenericWorkflow` run; it never decides what they are.
Each service keeps its own record of a run inside the submit directory
(``run_record.json``) so that ``bps report`` works after the scheduler's history has
rolled over (the schedd keeps a bounded history: an old run is no longer in it).

Services are looked up by name with `get_service`; their modules are imported only
when used, so ``bps report`` on a local run never imports ``htcondor2``, ``Pegasus`` or ``parsl``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supertask.atomic_write import atomic_write_text
from supertask.report.model import JobRecord
from supertask.states import JobState, RunState, parse_state

from ..job_environment import JobEnvironment
from ..workflow import GenericWorkflow, Job, SiteConfig

#: wms name -> "module:ClassName"
SERVICES: dict[str, str] = {
    "local": "bps.wms.local:LocalService",
    "htcondor": "bps.wms.htcondor.service:HTCondorService",
    "pegasus": "bps.wms.pegasus.service:PegasusService",
    "parsl": "bps.wms.parsl.service:ParslService",
}

RUN_RECORD = "run_record.json"

#: Job states used in reports, in display order.
STATES: tuple[JobState, ...] = tuple(JobState)


class WmsError(RuntimeError):
    """A workflow-system operation failed; the message says what to do next."""


class WmsUnavailableError(WmsError):
    """The workflow system is not reachable or not installed here (the submit directory stays usable)."""


@dataclass
class JobFailure:
    """One failed (or held) job, with what an operator needs to act on it."""

    name: str
    label: str
    exit_code: int | None = None
    attempt: int = 1
    reason: str = ""
    hold_reason: str | None = None
    log_file: str | None = None
    log_tail: str = ""


@dataclass
class RunReport:
    """State of one submitted run, per job label."""

    submit_dir: str
    wms: str
    run_id: str | None = None
    state: RunState = RunState.UNKNOWN
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[JobFailure] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    #: every job with what the workflow system recorded of it (times, peak and requested
    #: memory) for the HTML report; a service that records nothing leaves the times None
    jobs: list[JobRecord] = field(default_factory=list)

    def add(self, label: str, state: JobState | str, n: int = 1) -> None:
        """Count ``n`` jobs of ``label`` in ``state`` (a `JobState` or its text)."""
        state = parse_state(JobState, state, f"the jobs of {label!r}")
        per_label = self.counts.setdefault(label, dict.fromkeys(STATES, 0))
        per_label[state] += n

    def add_recorded_job(self, job: Job, info: dict[str, Any], runner_gone: bool) -> JobState:
        """Count ``job`` and list it as a run record's entry ``info`` says; its state.

        A job the record says is running is failed when ``runner_gone`` (the process that
        ran it is gone: the job will not finish).
        """
        state = parse_state(JobState, info.get("state", JobState.PENDING), f"the run record's job {job.name}")
        if state == JobState.RUNNING and runner_gone:
            state = JobState.FAILED
        self.add(job.label, state)
        self.jobs.append(
            JobRecord(
                name=job.name,
                label=job.label,
                state=state,
                start=info.get("start"),
                end=info.get("end"),
                peak_memory_mb=info.get("peak_memory_mb"),
                request_memory_mb=job.resources.memory_mb,
                attempts=info.get("attempts", 0),
            )
        )
        return state

    def totals(self) -> dict[str, int]:
        """Counts summed over labels."""
        total: dict[str, int] = dict.fromkeys(STATES, 0)
        for per_label in self.counts.values():
            for state, n in per_label.items():
                total[state] += n
        return total

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class WorkflowService(ABC):
    """A workflow system: turns a generic workflow into its own files and runs them."""

    #: the name used in configs and on the command line
    name: str = ""

    @abstractmethod
    def prepare(self, workflow: GenericWorkflow) -> Path:
        """Write this system's files for ``workflow`` into ``workflow.submit_dir``; submit nothing.

        Returns the main file (the DAG, the Pegasus workflow, ...). Raise `WmsError`
        with the fix when the site cannot run the workflow (e.g. a job asks for more
        memory than any slot offers). Each system writes ``workflow.json`` too unless it
        exists; those of `bps.prepare.FORKED_WMS` take ``save=False``, for `bps.prepare`
        writes it in a child process meanwhile.
        """

    def precheck(self, site: SiteConfig, submit_dir: Path) -> None:
        """Refuse, before the graph is read, a site or submit directory this system cannot use.

        Called by `bps.prepare` first thing, so that a mistake in the site or the
        directory costs a second, not the minutes and gigabytes of reading a 10^6-quantum
        graph and building its workflow. Raise `WmsError` naming the fix; `prepare`
        may check again, together with what needs the workflow (e.g. its resources).
        The default finds nothing to refuse.
        """
        return None

    def job_environment(self, site: SiteConfig) -> JobEnvironment | None:
        """The interpreter and complete environment this system's jobs start with on ``site``.

        `bps.prepare` imports the graph's task classes with them (`bps.job_environment`),
        so that a task package the jobs cannot see is refused at prepare time rather than
        failing every job. None: this system's jobs are not checked (the default).
        """
        return None

    @abstractmethod
    def submit(self, submit_dir: Path) -> str:
        """Submit a prepared directory; return the run id. Raise `WmsUnavailableError` when unreachable."""

    @abstractmethod
    def report(self, submit_dir: Path) -> RunReport:
        """Report per-label job states and failures of a run, from the submit directory's own records."""

    @abstractmethod
    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        """Resubmit only what did not succeed; ``overrides`` may change resources and retries."""

    @abstractmethod
    def cancel(self, submit_dir: Path) -> str | None:
        """Stop a running workflow; may return a sentence saying what was done and what follows."""


def get_service(name: str) -> WorkflowService:
    """Instantiate the service registered under ``name``."""
    try:
        target = SERVICES[name]
    except KeyError:
        raise WmsError(f"unknown workflow system {name!r}; choose one of {sorted(SERVICES)}") from None
    module_name, class_name = target.split(":")
    service: WorkflowService = getattr(importlib.import_module(module_name), class_name)()
    return service


def write_run_record(submit_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into the submit directory's run record (atomically)."""
    path = Path(submit_dir) / RUN_RECORD
    record = read_run_record(submit_dir)
    record.update(fields)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))


def read_run_record(submit_dir: Path) -> dict[str, Any]:
    """The run record, or an empty dict for a directory never submitted."""
    path = Path(submit_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else {}
