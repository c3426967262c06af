"""`HTCondorService`: prepare, submit, report, restart and cancel DAGMan runs.

``htcondor2`` is imported only by `submit` and `cancel`: preparing and reporting work
on machines without HTCondor, and a directory prepared there can be submitted later
from an access point with ``bps submit SUBMIT_DIR``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ...workflow import GenericWorkflow, SiteConfig
from ..base import (
    RunReport,
    WmsError,
    WmsUnavailableError,
    WorkflowService,
    read_run_record,
    write_run_record,
)
from . import overrides as overrides_mod
from .checks import check_site, check_workflow, job_user_warnings
from .eventlog import read_event_log
from .layout import DagLayout, find_dag
from .report import build_report, dagman_exit_status, last_submission
from .translator import NodeOverrides, node_names, write_dag

log = logging.getLogger("bps.wms.htcondor")


class HTCondorService(WorkflowService):
    """HTCondor DAGMan as a `WorkflowService`."""

    name = "htcondor"

    # -- prepare ---------------------------------------------------------------------------
    def precheck(self, site: SiteConfig, submit_dir: Path) -> None:
        _refuse(site, check_site(site, Path(submit_dir).absolute()))

    def prepare(self, workflow: GenericWorkflow) -> Path:
        submit_dir = Path(workflow.submit_dir).absolute()
        submit_dir.mkdir(parents=True, exist_ok=True)
        _refuse(workflow.site, check_workflow(workflow, submit_dir))
        warnings = job_user_warnings(workflow, submit_dir)
        for warning in warnings:
            log.warning("%s", warning)
        layout = DagLayout.of(submit_dir, workflow.name)
        if not layout.workflow_json.exists():
            workflow.save(layout.workflow_json)
        try:
            write_dag(workflow, submit_dir)
        except ValueError as exc:
            raise WmsError(str(exc)) from exc
        write_run_record(
            submit_dir,
            wms=self.name,
            state="prepared",
            dag=layout.dag.name,
            jobs=len(workflow.jobs),
            warnings=warnings,
            prepared_at=time.time(),
        )
        return layout.dag

    # -- submit ----------------------------------------------------------------------------
    def submit(self, submit_dir: Path) -> str:
        layout = find_dag(submit_dir)
        record = read_run_record(layout.submit_dir)
        if (
            record.get("cluster_id") is not None
            and dagman_exit_status(layout.dagman_out, last_submission(record)) is None
        ):
            if record.get("state") not in ("cancelled", "prepared"):
                raise WmsError(
                    f"{layout.submit_dir} was submitted as DAGMan job {record['cluster_id']} and has not "
                    "finished: follow it with `bps report`, or `bps cancel` it before submitting again"
                )
        htcondor2 = _import_htcondor()
        problems = job_user_warnings(GenericWorkflow.load(layout.workflow_json), layout.submit_dir)
        if problems:
            raise WmsError("cannot submit: " + " ".join(problems))
        cluster = _submit_dag(htcondor2, layout)
        history = record.get("submissions", []) + [{"cluster_id": cluster, "time": time.time()}]
        write_run_record(layout.submit_dir, cluster_id=cluster, state="submitted", submissions=history)
        return str(cluster)

    # -- report ----------------------------------------------------------------------------
    def report(self, submit_dir: Path) -> RunReport:
        try:
            return build_report(submit_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise WmsError(str(exc)) from exc

    # -- restart ---------------------------------------------------------------------------
    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        layout = find_dag(submit_dir)
        self.prepare_restart(layout.submit_dir, overrides)
        return self.submit(layout.submit_dir)

    def prepare_restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> DagLayout:
        """Rewrite the DAG for a restart (the rescue DAG then marks what is done); submit nothing.

        Memory a node grew to on retries becomes its new base request (field note 7),
        and ``overrides`` change resources and retries (field note 8). Node names stay the
        same, so DAGMan's rescue file still applies.
        """
        layout = find_dag(submit_dir)
        record = read_run_record(layout.submit_dir)
        if (
            record.get("cluster_id") is not None
            and dagman_exit_status(layout.dagman_out, last_submission(record)) is None
        ):
            if record.get("state") != "cancelled":
                raise WmsError(
                    f"the run in {layout.submit_dir} is still active (DAGMan job {record['cluster_id']}): "
                    "wait for it to end or `bps cancel` it, then restart"
                )
        if not layout.rescue_files():
            state = build_report(layout.submit_dir).state
            raise WmsError(
                f"{layout.submit_dir} has no rescue DAG (run state: {state}): nothing failed that a "
                "restart could rerun"
                + ("" if state != "prepared" else "; use `bps submit` for a first submission")
            )
        workflow = GenericWorkflow.load(layout.workflow_json)
        try:
            overrides_mod.apply(workflow, overrides)
        except ValueError as exc:
            raise WmsError(str(exc)) from exc
        grown = _grown_memory(workflow, layout)
        problems = check_workflow(workflow, layout.submit_dir)
        if problems:
            raise WmsError("the restarted workflow cannot run on this site:\n- " + "\n- ".join(problems))
        workflow.save(layout.workflow_json)
        write_dag(workflow, layout.submit_dir, NodeOverrides(memory_mb=grown))
        restarts = record.get("restarts", []) + [
            {"time": time.time(), "overrides": overrides or {}, "memory": grown}
        ]
        write_run_record(layout.submit_dir, state="prepared", prepared_at=time.time(), restarts=restarts)
        return layout

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, submit_dir: Path) -> None:
        layout = find_dag(submit_dir)
        record = read_run_record(layout.submit_dir)
        cluster = record.get("cluster_id")
        if cluster is None:
            raise WmsError(f"{layout.submit_dir} was never submitted: there is nothing to cancel")
        htcondor2 = _import_htcondor()
        try:
            schedd = htcondor2.Schedd()
            # Removing the DAGMan job removes its node jobs; DAGMan writes a rescue DAG on the way out.
            schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {int(cluster)}", "bps cancel")
        except Exception as exc:  # htcondor2 raises its own exception types
            raise WmsUnavailableError(
                f"cannot reach the schedd to cancel DAGMan job {cluster}: {exc}"
            ) from exc
        write_run_record(layout.submit_dir, state="cancelled", cancelled_at=time.time())


def _grown_memory(workflow: GenericWorkflow, layout: DagLayout) -> dict[str, int]:
    """Job name -> memory (MB) it reached on retries, when above its request."""
    history = read_event_log(layout.nodes_log)
    names = node_names(workflow.jobs)
    grown = {}
    for name, job in workflow.jobs.items():
        hist = history.get(names[name])
        if hist is None:
            continue
        reached = min(hist.memory_grown_to_mb, max(job.retry.memory_max_mb, job.resources.memory_mb))
        if reached > job.resources.memory_mb:
            grown[name] = reached
    return grown


def _import_htcondor() -> Any:
    try:
        import htcondor2
    except ImportError as exc:
        raise WmsUnavailableError(
            f"the htcondor Python package is not usable here ({exc}); install `htcondor` or run bps on an "
            "HTCondor access point"
        ) from exc
    return htcondor2


def _submit_dag(htcondor2: Any, layout: DagLayout) -> int:
    options: dict[str, Any] = {"batch-name": layout.name}
    if (layout.submit_dir / f"{layout.dag.name}.condor.sub").exists():
        # Re-submission (restart): rewrite DAGMan's own submit file but keep the rescue DAG
        # (`force` would rename rescue DAGs away and rerun everything).
        options["update_submit"] = True
    try:
        submit = htcondor2.Submit.from_dag(str(layout.dag), options)
        schedd = htcondor2.Schedd()
        result = schedd.submit(submit)
    except Exception as exc:  # htcondor2 raises HTCondorException and friends
        raise WmsUnavailableError(
            f"HTCondor is not reachable from here ({exc}). The submit directory {layout.submit_dir} is "
            f"prepared and stays usable: run `bps submit {layout.submit_dir}` on an HTCondor access point."
        ) from exc
    return int(result.cluster())


def _refuse(site: SiteConfig, problems: list[str]) -> None:
    if problems:
        raise WmsError(
            f"site {site.name!r} cannot run this workflow on HTCondor:\n- " + "\n- ".join(problems)
        )
