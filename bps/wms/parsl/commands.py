"""What each Parsl task runs, and which executor runs it.

A job's command line is the one HTCondor runs for it with shared staging (the same
executable, `bps.wms.htcondor.translator.executable_path`, the same arguments, then
``--repo``), preceded by the environment HTCondor gives its jobs and, when the job has a
walltime, coreutils ``timeout``: Parsl's own ``walltime`` of a ``bash_app`` raises in the
worker but leaves the command running, so a job over its walltime would keep its slot.

Parsl's HighThroughputExecutor has no per-task cores or memory outside MPI mode: every
worker of an executor is the same size. So jobs are grouped into *resource classes*, one
executor each: the jobs' cores and memory (and their throttle, when the submit YAML
throttles them), with as many workers per block as fit both the block and the class.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ...workflow import GenericWorkflow, Job, safe_name
from ..htcondor.translator import executable_path, job_python
from .settings import ParslSettings

#: ``timeout``'s exit status when it stopped a job at its walltime.
WALLTIME_EXIT = 124


@dataclass(frozen=True)
class ResourceClass:
    """One executor: the size of each of its workers and how many one block runs.

    Attributes
    ----------
    label
        The executor label (``c<cpus>_m<memory MB>``, ``_<throttle>`` for a throttled class).
    cpus, memory_mb
        What every job of the class asked for; each worker is this size.
    workers
        Workers per block: ``workers_per_block`` of the site, at most what the site's
        largest slot holds of this size, at most the class's throttle.
    walltime_s
        The longest walltime of its jobs (``None``: none has one): a block lives at least this long.
    throttle_limit
        The throttle of its jobs (then the class has one block, so the limit holds).
    """

    label: str
    cpus: int
    memory_mb: int
    workers: int
    walltime_s: int | None = None
    throttle_limit: int | None = None

    @property
    def max_blocks(self) -> int | None:
        """One block when throttled (its workers are the throttle), else the site's value."""
        return 1 if self.throttle_limit is not None else None


def resource_classes(
    workflow: GenericWorkflow, settings: ParslSettings
) -> tuple[dict[str, ResourceClass], dict[str, str]]:
    """The executors a workflow needs, and the executor label of each job (the final job included).

    Returns
    -------
    classes : `dict` [`str`, `ResourceClass`]
        Executor label -> class, in the order the jobs first need them.
    job_class : `dict` [`str`, `str`]
        Job name -> executor label.
    """
    site = workflow.site
    classes: dict[str, ResourceClass] = {}
    job_class: dict[str, str] = {}
    jobs = list(workflow.jobs.values()) + ([workflow.final] if workflow.final else [])
    for job in jobs:
        cpus, memory_mb = int(job.resources.cpus), int(job.resources.memory_mb)
        limit = workflow.throttles.get(job.throttle) if job.throttle else None
        label = f"c{cpus}_m{memory_mb}" + (
            f"_{safe_name(job.throttle)}" if job.throttle and limit is not None else ""
        )
        walltime = job.resources.walltime_s
        known = classes.get(label)
        if known is None:
            fits = min(site.max_cpus // max(cpus, 1), site.max_memory_mb // max(memory_mb, 1))
            workers = max(1, min(settings.workers_per_block, fits, limit or settings.workers_per_block))
            classes[label] = ResourceClass(label, cpus, memory_mb, workers, walltime, limit)
        elif walltime and (known.walltime_s or 0) < walltime:
            classes[label] = ResourceClass(
                label, cpus, memory_mb, known.workers, int(walltime), known.throttle_limit
            )
        job_class[job.name] = label
    return classes, job_class


def environment(workflow: GenericWorkflow) -> dict[str, str]:
    """What a job's environment gets on top of its worker's: as on HTCondor, its virtual
    environment, unbuffered output and the site's variables (``PATH``: see `command_line`)."""
    python = Path(job_python(workflow.site))
    env = {"PYTHONUNBUFFERED": "1"}
    if (python.parent.parent / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(python.parent.parent)
    env.update({k: str(v) for k, v in workflow.site.environment.items()})
    return env


def argv(workflow: GenericWorkflow, job: Job, extra: list[str] | None = None) -> list[str]:
    """The job's command as a list: HTCondor's executable and arguments with shared staging."""
    args = [executable_path(job, workflow.site), *job.arguments, *(extra or [])]
    if job.executable == "run_quantum":
        args += ["--repo", workflow.repo]
    return args


def command_line(
    workflow: GenericWorkflow, job: Job, settings: ParslSettings, extra: list[str] | None = None
) -> str:
    """The bash command of ``job``'s task: enter the submit directory, set the environment, run it.

    ``exec`` replaces the shell, so the task's exit status is the job's own (a signal death
    stays a signal death). A walltime becomes ``timeout`` (SIGTERM, then SIGKILL after
    ``kill_after_s``; exit `WALLTIME_EXIT`); ``--foreground`` keeps the job in its worker's
    process group, which Parsl kills when a block is cancelled.
    """
    env = environment(workflow)
    # the jobs' interpreter first on PATH (unless the site sets PATH itself), the worker's after it
    bin_dir = shlex.quote(str(Path(job_python(workflow.site)).parent))
    exports = " ".join(
        ([] if "PATH" in env else [f'PATH={bin_dir}:"$PATH"'])
        + [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    )
    limit = ""
    walltime = job.resources.walltime_s
    if walltime:
        limit = f"timeout --foreground --kill-after={int(settings.kill_after_s)}s {int(walltime)}s "
    command = " ".join(shlex.quote(a) for a in argv(workflow, job, extra))
    return f"cd {shlex.quote(str(workflow.submit_dir))} && export {exports} && exec {limit}{command}"
