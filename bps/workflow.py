"""The generic workflow: what every workflow-system translator reads.

Contract
--------
A `GenericWorkflow` is built from a saved QuantumGraph (``bps.workflow_builder``)
and is independent of any workflow system. Translators (``bps.wms.local``,
``bps.wms.htcondor``, ``bps.wms.pegasus``, ``bps.wms.parsl``) read it and must not need anything
else except the `SiteConfig` it carries:

- ``jobs`` is ordered so that every job comes after all of its parents;
- ``parents[name]`` lists the jobs whose outputs ``name`` reads (no self edges);
- each `Job` names the quanta it runs (ids in the graph file) and carries its
  command-line ``arguments`` for ``run_quantum`` *without* the staging options:
  translators add ``--repo`` (shared filesystem) or ``--inputs-dir`` /
  ``--outputs-dir`` (file transfer, Pegasus) themselves;
- ``Job.inputs`` are the files the job reads that it does not make itself;
  ``producer`` is the job that makes each one, or ``None`` for an overall input
  that already exists in the datastore at ``path`` (relative to the datastore root);
- ``Job.outputs`` are the files the job makes, each with its logical file name
  (`dataset_lfn`): stable, unique in the workflow, safe as a file name;
- ``final`` is the registration job (``bps finalize``); it always runs last, even
  after failures, and never has retries that could double-register (finalize is
  idempotent anyway).

The workflow is kept as JSON (``workflow.json`` in the submit directory) so that
``bps report`` and ``bps restart`` need no graph file: `bps.workflow_io.save_workflow`
and `bps.workflow_io.load_workflow`, which import this module (never the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from . import exit_codes
from .names import dataset_lfn as dataset_lfn  # re-exported: the workflow's naming rules
from .names import safe_name as safe_name


@dataclass(frozen=True)
class Resources:
    """What one job asks of a worker slot."""

    memory_mb: int = 2048
    cpus: int = 1
    disk_mb: int = 2048
    walltime_s: int | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed job is retried.

    ``memory_multiplier`` and ``memory_max_mb`` implement memory escalation: after a
    memory-related failure the next attempt asks for ``multiplier`` times more
    memory, up to ``memory_max_mb``; past the cap the job is removed, not held.
    """

    retries: int = 3
    no_retry_exit_codes: tuple[int, ...] = exit_codes.NO_RETRY
    memory_multiplier: float = 2.0
    memory_max_mb: int = 32768


@dataclass(frozen=True, slots=True)
class WorkflowFile:
    """A dataset file read or written by a job."""

    lfn: str
    dataset_type: str
    data_id: dict[str, Any]
    path: str
    producer: str | None = None


@dataclass(slots=True)
class Job:
    """One batch job: one quantum, or a cluster of quanta run in one process.

    Slotted: a workflow of 10^6 jobs holds 10^6 of them."""

    name: str
    label: str
    quantum_ids: list[int]
    arguments: list[str]
    resources: Resources = field(default_factory=Resources)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    inputs: list[WorkflowFile] = field(default_factory=list)
    outputs: list[WorkflowFile] = field(default_factory=list)
    log_subdir: str = ""
    priority: int = 0
    throttle: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    executable: str = "run_quantum"


@dataclass
class SiteConfig:
    """Where and how jobs run: the facts a translator needs about a cluster.

    Loaded from ``site_configs/<name>.yaml`` by ``bps.config``. The ``max_*``
    values are what the largest slot of the site offers: prepare refuses a job
    (the final job included) that asks for more, since it would sit idle forever.
    """

    name: str = "local"
    wms: str = "local"
    staging: Literal["shared", "transfer"] = "shared"
    python: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    accounting_group: str | None = None
    project: str | None = None
    requirements: str | None = None
    max_memory_mb: int = 16384
    max_cpus: int = 2
    max_disk_mb: int = 100_000
    scratch_dir: str | None = None
    #: transfer staging: at most this many quanta per graph slice shipped to jobs (`bps.slices`)
    slice_quanta: int = 4096
    condor: dict[str, Any] = field(default_factory=dict)
    pegasus: dict[str, Any] = field(default_factory=dict)
    parsl: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenericWorkflow:
    """A workflow-system-independent DAG of jobs; see the module docstring for the contract."""

    name: str
    submit_dir: str
    graph_file: str
    repo: str
    output_run: str
    site: SiteConfig = field(default_factory=SiteConfig)
    jobs: dict[str, Job] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    final: Job | None = None
    throttles: dict[str, int] = field(default_factory=dict)

    def add_job(self, job: Job, parents: list[str] | tuple[str, ...] = ()) -> None:
        """Add a job after its parents (which must already be present)."""
        if job.name in self.jobs:
            raise ValueError(f"duplicate job name {job.name!r}")
        for parent in parents:
            if parent not in self.jobs:
                raise ValueError(f"job {job.name!r}: parent {parent!r} must be added first")
            if parent == job.name:
                raise ValueError(f"job {job.name!r} cannot depend on itself")
        self.jobs[job.name] = job
        self.parents[job.name] = sorted(set(parents))

    def children(self) -> dict[str, list[str]]:
        """Job name -> the jobs that depend on it."""
        result: dict[str, list[str]] = {name: [] for name in self.jobs}
        for name, parents in self.parents.items():
            for parent in parents:
                result[parent].append(name)
        return result

    def edges(self) -> list[tuple[str, str]]:
        """All (parent, child) pairs, sorted."""
        return sorted((p, c) for c, ps in self.parents.items() for p in ps)

    def labels(self) -> list[str]:
        """Distinct job labels in first-appearance order."""
        fast = getattr(self.jobs, "labels", None)  # a streamed workflow knows them without making jobs
        if callable(fast):
            return list(fast())
        return list(dict.fromkeys(job.label for job in self.jobs.values()))
