"""Changes an operator may make on restart: resources and retries, globally or per label.

``{"memory_mb": 8192, "retries": 5, "labels": {"coadd": {"memory_max_mb": 65536}}}``.
Restarting must be able to change what made the run fail (memory, retries), or the
restarted run fails the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...workflow import GenericWorkflow, Job

RESOURCE_KEYS = ("memory_mb", "cpus", "disk_mb", "walltime_s")
RETRY_KEYS = ("retries", "memory_multiplier", "memory_max_mb")
KEYS = RESOURCE_KEYS + RETRY_KEYS


def validate(overrides: dict[str, Any], labels: list[str]) -> None:
    """Raise `ValueError` naming any unknown key or label."""
    for scope, values in [("", overrides)] + [
        (f"labels.{k}.", v) for k, v in overrides.get("labels", {}).items()
    ]:
        unknown = set(values) - set(KEYS) - ({"labels"} if scope == "" else set())
        if unknown:
            raise ValueError(
                f"unknown restart override(s) {sorted(scope + u for u in unknown)}; allowed: {list(KEYS)}"
            )
    missing = set(overrides.get("labels", {})) - set(labels)
    if missing:
        raise ValueError(
            f"restart overrides name label(s) {sorted(missing)} not in this run; labels: {labels}"
        )


def apply(workflow: GenericWorkflow, overrides: dict[str, Any] | None) -> None:
    """Apply ``overrides`` to the jobs of ``workflow`` in place (the final job is left alone)."""
    if not overrides:
        return
    validate(overrides, workflow.labels())
    common = {k: v for k, v in overrides.items() if k != "labels"}
    per_label = overrides.get("labels", {})
    for name, job in workflow.jobs.items():
        workflow.jobs[name] = _apply_job(job, {**common, **per_label.get(job.label, {})})


def _apply_job(job: Job, values: dict[str, Any]) -> Job:
    if not values:
        return job
    res = {k: v for k, v in values.items() if k in RESOURCE_KEYS}
    retry = {k: v for k, v in values.items() if k in RETRY_KEYS}
    return replace(job, resources=replace(job.resources, **res), retry=replace(job.retry, **retry))
