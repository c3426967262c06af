"""What a real pool would refuse, found at prepare time, each with the fix.

Each check has a name; a site lists names in ``condor.skip_checks`` to turn one off
(e.g. ``tmp_node_log`` on a pool whose DAGMan is not in strict mode). Checks collect
every problem before failing, so one ``bps submit`` shows all that needs changing.
File ownership (``job_user``) is only a warning at prepare time, since a directory can be
fixed, or submitted by another user, before submission; `job_user_warnings` is an error
at submit time.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ...workflow import GenericWorkflow, Job, SiteConfig
from . import memory

CHECKS = ("tmp_node_log", "job_user", "python", "environment", "resources", "task_imports")


def skipped(site: SiteConfig) -> set[str]:
    names = set(site.condor.get("skip_checks", []) or [])
    unknown = names - set(CHECKS)
    if unknown:
        raise ValueError(f"condor.skip_checks names unknown checks {sorted(unknown)}; known: {list(CHECKS)}")
    return names


def check_site(site: SiteConfig, submit_dir: Path) -> list[str]:
    """Problems of the site and submit directory alone: checkable before any graph is read."""
    skip = skipped(site)
    problems: list[str] = check_memory_policy(site) + check_dag_path(submit_dir)
    if "tmp_node_log" not in skip:
        problems += check_not_tmp(submit_dir)
    if "python" not in skip:
        problems += check_python(site)
    if "environment" not in skip:
        problems += check_environment(site)
    return problems


def check_workflow(workflow: GenericWorkflow, submit_dir: Path) -> list[str]:
    """Problems that would stop the workflow on an HTCondor pool (empty list: none)."""
    site = workflow.site
    problems = check_site(site, submit_dir)
    if "resources" not in skipped(site):
        # one pass, never a list; of a streamed workflow, the first job of each label: the
        # others ask for the same (`bps.workflow_stream.StreamedJobs.label_templates`)
        templates = getattr(workflow.jobs, "label_templates", None)
        every: Iterable[Job] = templates().values() if templates else workflow.jobs.values()
        jobs = itertools.chain(every, [workflow.final] if workflow.final else [])
        problems += check_resources(jobs, site)
    return problems


def job_user_warnings(workflow: GenericWorkflow, submit_dir: Path) -> list[str]:
    """Problems of file ownership: warnings at prepare (the directory may be fixed before
    submission, or submitted from elsewhere), errors at submit time."""
    if "job_user" in skipped(workflow.site):
        return []
    dirs = [Path(submit_dir)]
    if workflow.site.staging == "shared" and _is_path(workflow.repo):
        dirs.append(Path(workflow.repo.removeprefix("file://")))
    return check_job_user_access(dirs)


def check_memory_policy(site: SiteConfig) -> list[str]:
    """``condor.memory_policy`` must name how the pool holds a job over its memory."""
    policy = site.condor.get("memory_policy")
    if policy is None or policy in memory.POOL_POLICIES:
        return []
    return [
        f"condor.memory_policy {policy!r} is not a pool memory policy: use one of "
        f"{', '.join(sorted(memory.POOL_POLICIES))} (cgroup: hold code 34; startd: use POLICY : "
        "HOLD_IF_MEMORY_EXCEEDED, 21/102; system_periodic_hold: SYSTEM_PERIODIC_HOLD with subcode 34, "
        f"26/34; job: bps adds the job's own periodic_hold, 3/34; any: all of them; default {memory.DEFAULT_POOL_POLICY})"
    ]


def check_dag_path(submit_dir: Path) -> list[str]:
    """The DAG names its files by absolute path, and DAGMan splits its lines at blanks."""
    absolute = str(Path(submit_dir).absolute())
    if any(c.isspace() for c in absolute) or '"' in absolute:
        return [
            f"submit directory {absolute!r} contains a blank or a quote: the DAG file names its files by "
            "absolute path and DAGMan splits its lines at blanks. Use a submit directory without them."
        ]
    return []


def check_not_tmp(submit_dir: Path) -> list[str]:
    resolved = Path(submit_dir).resolve()
    for tmp in ("/tmp", "/var/tmp"):
        if resolved == Path(tmp) or Path(tmp) in resolved.parents:
            return [
                f"submit directory {resolved} is under {tmp}: DAGMan in its default strict mode refuses a "
                f"node log under {tmp}. Use a submit directory on a persistent filesystem (e.g. under $HOME "
                "or a project area), or add tmp_node_log to condor.skip_checks if your pool allows it."
            ]
    return []


def check_job_user_access(paths: Iterable[Path]) -> list[str]:
    """Jobs never run as root: a root-owned directory the job user cannot write puts every job on hold."""
    problems = []
    for path in paths:
        try:
            st = Path(path).stat()
        except FileNotFoundError:
            continue
        if st.st_uid == 0 and not st.st_mode & stat.S_IWOTH:
            problems.append(
                f"{path} is owned by root and not writable by others, but jobs never run as root: every "
                "job would go on hold. Submit as your own (non-root) user, or chown the directory to the "
                "pool's job user, or add job_user to condor.skip_checks if jobs run as its owner."
            )
    return problems


def check_python(site: SiteConfig) -> list[str]:
    """An empty ``python`` means the interpreter running bps (written as an absolute path)."""
    if not site.python:
        return []
    path = Path(site.python)
    if not path.is_absolute():
        return [f"site python {site.python!r} must be an absolute path (jobs do not search your PATH)"]
    if not os.access(path, os.X_OK):
        return [f"site python {site.python} is not an executable file here; fix the path in the site config"]
    return []


def check_environment(site: SiteConfig) -> list[str]:
    problems = []
    for name, value in site.environment.items():
        if "$ENV(" in str(value) or "${" in str(value):
            problems.append(
                f"environment variable {name}={value!r} refers to the submitter's environment, which DAGMan "
                "does not pass to jobs: write the literal value in the site config"
            )
    return problems


def check_resources(jobs: Iterable[Job], site: SiteConfig) -> list[str]:
    """A request above the largest slot never starts: report the worst per label."""
    worst: dict[tuple[str, str], tuple[int, int, str]] = {}
    limits = {"memory_mb": site.max_memory_mb, "cpus": site.max_cpus, "disk_mb": site.max_disk_mb}
    for job in jobs:
        for key, limit in limits.items():
            asked = getattr(job.resources, key)
            if asked > limit and asked > worst.get((job.label, key), (0, 0, ""))[0]:
                worst[(job.label, key)] = (asked, limit, job.name)
    return [
        f"label {label!r} asks for {key}={asked} (job {name}) but the largest slot of site {site.name!r} "
        f"offers {limit}: the job would stay idle forever. Lower the request in the submit YAML or raise "
        f"max_{key} in the site config if the pool has bigger slots."
        for (label, key), (asked, limit, name) in sorted(worst.items())
    ]


def _is_path(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")
