"""`PegasusService`: prepare, submit, report, restart and cancel Pegasus 5 runs.

``prepare`` needs only the ``Pegasus.api`` package; ``submit``, ``restart`` and
``cancel`` run the Pegasus command-line tools (``pegasus-plan``, ``pegasus-run``,
``pegasus-remove``) and stop with `WmsUnavailableError` when they are not on
``PATH``, leaving ``<submit_dir>/pegasus`` ready to plan by hand (``plan.sh``).
``report`` reads Pegasus's ``jobstate.log`` itself, so it works without Pegasus and
after the scheduler has forgotten the run; it adds ``pegasus-analyzer``'s summary
when that tool is available.

Restarting: without overrides, ``pegasus-run`` resubmits the rescue DAG, which
reruns only what did not succeed. With overrides (resources, retries) the
workflow is re-planned into a new run directory, with every output already in
place listed in the replica catalog: Pegasus's data reuse then prunes the jobs
whose outputs all exist, so again only what failed runs.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from supertask.atomic_write import atomic_write_text
from supertask.report.model import JobRecord
from supertask.states import JobState, RunState, parse_state

from ...job_environment import JobEnvironment
from ...slices import refresh_job_slices
from ...workflow import GenericWorkflow, Job, SiteConfig
from ...workflow_io import load_workflow, save_workflow
from ..base import (
    JobFailure,
    RunReport,
    WmsError,
    WmsUnavailableError,
    WorkflowService,
    read_run_record,
    write_run_record,
)
from ..htcondor import overrides as overrides_mod
from ..htcondor.checks import check_environment, check_resources
from . import catalogs
from .status import (
    SUBWORKFLOW_PREFIX,
    auxiliary_label,
    is_auxiliary,
    job_files,
    match_job,
    read_jobstate,
    run_dirs,
    tail,
)
from .streamed import label_jobs
from .translator import (
    COMPUTE_LABEL,
    JOB_MAP_FILE,
    PEGASUS_SUBDIR,
    WORKFLOW_FILE,
    PegasusPlan,
    plan_command,
    translate,
    write_plan,
)

#: The generic workflow, as ``bps finalize`` and restarts read it.
WORKFLOW_JSON = "workflow.json"
_TOOL_TIMEOUT_S = 600


class PegasusService(WorkflowService):
    """Pegasus 5 (on HTCondor DAGMan) as a `WorkflowService`."""

    name = "pegasus"

    # -- prepare ---------------------------------------------------------------------------
    def job_environment(self, site: SiteConfig) -> JobEnvironment | None:
        """What Pegasus's submit files give a job, as the real 5.1.2 planner writes them.

        ``LANG`` and the site's variables (``env`` profiles) everywhere; on the ``local``
        execution site also the planner's ``PATH`` and ``PYTHONPATH`` (Pegasus sets both on
        its local site unless the catalog does; ``pegasus-plan`` runs at ``bps submit`` in the
        submitter's environment). Jobs on a pool site never get the submitter's ``PYTHONPATH``.
        """
        import os
        import sys

        from .settings import load_settings

        settings, _ = load_settings(site)
        env = {"LANG": os.environ.get("LANG", "en_US.UTF-8")}
        local = settings.execution_site == "local"
        if local:
            env.update({k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ})
        env.update({k: str(v) for k, v in site.environment.items()})
        planner = "the planner's PATH and PYTHONPATH, " if local else ""
        return JobEnvironment(
            python=site.python or sys.executable,
            env=env,
            origin=f"Pegasus on site {settings.execution_site!r}: LANG, {planner}the site's environment",
        )

    def prepare(self, workflow: GenericWorkflow, *, save: bool = True) -> Path:
        """Write the Pegasus documents; ``save=False``: the caller writes ``workflow.json``."""
        submit_dir = Path(workflow.submit_dir).absolute()
        submit_dir.mkdir(parents=True, exist_ok=True)
        check(workflow)
        if save and not (submit_dir / WORKFLOW_JSON).exists():
            save_workflow(workflow, submit_dir / WORKFLOW_JSON)
        pegasus_dir = submit_dir / PEGASUS_SUBDIR
        plan = translate(workflow, pegasus_dir, datastore_locations=False)
        main = write_plan(plan, pegasus_dir)
        write_run_record(
            submit_dir,
            wms=self.name,
            state=RunState.PREPARED,
            workflow=str(main.relative_to(submit_dir)),
            jobs=len(workflow.jobs),
            plan_command=plan_command(plan, pegasus_dir, submit=True),
        )
        return main

    # -- submit ----------------------------------------------------------------------------
    def submit(self, submit_dir: Path) -> str:
        submit_dir = Path(submit_dir).absolute()
        record = _record(submit_dir)
        if record.get("run_dir") and record.get("state") not in (RunState.CANCELLED, RunState.PREPARED):
            state = self.report(submit_dir).state
            if state in (RunState.RUNNING, RunState.SUBMITTED):
                raise WmsError(
                    f"{submit_dir} was submitted as Pegasus run {record['run_dir']} and is {state}: follow "
                    "it with `bps report`, or `bps cancel` it before submitting again"
                )
        run_name = _next_run_name(record)
        command = list(record["plan_command"])
        command[command.index("--relative-dir") + 1] = run_name
        return self._plan_and_submit(submit_dir, command, run_name, record)

    def _plan_and_submit(
        self, submit_dir: Path, command: list[str], run_name: str, record: dict[str, Any]
    ) -> str:
        pegasus_dir = submit_dir / PEGASUS_SUBDIR
        _require_tool("pegasus-plan", pegasus_dir)
        proc = _run(command, cwd=pegasus_dir)
        if proc.returncode != 0:
            raise WmsError(
                f"pegasus-plan failed (exit {proc.returncode}) in {pegasus_dir}:\n{_last_lines(proc)}\n"
                f"Fix the cause (often a site catalog path or a missing executable), then rerun "
                f"`bps submit {submit_dir}` or {pegasus_dir / 'plan.sh'}."
            )
        run_dir = pegasus_dir / "submit" / run_name
        run_id = _wf_uuid(run_dir) or str(run_dir)
        runs = record.get("runs", []) + [{"run_dir": str(run_dir), "run_id": run_id, "time": time.time()}]
        write_run_record(submit_dir, state=RunState.SUBMITTED, run_dir=str(run_dir), run_id=run_id, runs=runs)
        return run_id

    # -- report ----------------------------------------------------------------------------
    def report(self, submit_dir: Path) -> RunReport:
        submit_dir = Path(submit_dir).absolute()
        record = _record(submit_dir)
        pegasus_dir = submit_dir / PEGASUS_SUBDIR
        job_map: dict[str, dict[str, str]] = json.loads((pegasus_dir / JOB_MAP_FILE).read_text())
        report = RunReport(submit_dir=str(submit_dir), wms=self.name, run_id=record.get("run_id"))
        run_dir = find_run_dir(submit_dir, record)
        if run_dir is None:
            for entry in job_map.values():
                report.add(entry["label"], JobState.PENDING)
            report.state = parse_state(RunState, record.get("state", RunState.PREPARED), "the run record")
            report.messages.append(
                f"not submitted yet: run `bps submit {submit_dir}` or {pegasus_dir / 'plan.sh'}"
            )
            return report
        if not record.get("run_dir") or Path(record["run_dir"]) != run_dir:
            report.messages.append(f"following the Pegasus run in {run_dir} (found from its braindump.yml)")
            report.run_id = report.run_id or _wf_uuid(run_dir)
        runs = [(d, read_jobstate(d / "jobstate.log")) for d in run_dirs(run_dir)]
        run = runs[0][1]
        transformations = _transformation_names(pegasus_dir)
        seen: set[str] = set()
        ids = set(job_map)
        failed_any = any(
            job.state in (JobState.FAILED, JobState.HELD) for _, r in runs for job in r.jobs.values()
        )
        for directory, sub_run in runs:
            files = job_files(directory) if failed_any else {}
            for node, job in sorted(sub_run.jobs.items()):
                pid = match_job(node, transformations, ids)
                if pid is None and node.startswith(SUBWORKFLOW_PREFIX + "_"):
                    label, name = COMPUTE_LABEL, node
                elif pid is None:
                    if not is_auxiliary(node):
                        report.messages.append(f"DAG node {node} is not a job of this workflow (clustered?)")
                        continue
                    label, name = auxiliary_label(node), node
                else:
                    seen.add(pid)
                    label, name = job_map[pid]["label"], job_map[pid]["name"]
                report.add(label, job.state)
                report.jobs.append(
                    JobRecord(name, label, job.state, job.started, job.ended, attempts=max(job.attempts, 1))
                )
                if job.state in (JobState.FAILED, JobState.HELD):
                    out, err = files.get(node, (None, None))
                    report.failures.append(
                        JobFailure(
                            name=name,
                            label=label,
                            attempt=max(job.attempts, 1),
                            reason=f"{job.last_event} on site {job.site or '?'} after {job.attempts} attempt(s)",
                            log_file=str(err or out) if (err or out) else None,
                            log_tail=tail(err) or tail(out),
                        )
                    )
        for pid, entry in job_map.items():
            if pid not in seen:
                report.add(entry["label"], JobState.PENDING)
        if record.get("state") == RunState.CANCELLED:
            report.state = RunState.CANCELLED
        elif run.dagman_status is None:
            report.state = RunState.RUNNING if run.jobs else RunState.SUBMITTED
        else:
            report.state = RunState.SUCCEEDED if run.dagman_status == 0 else RunState.FAILED
        incomplete = _finalize_incomplete(submit_dir)
        if incomplete:
            report.messages.append(incomplete)
            if report.state == RunState.SUCCEEDED:
                report.state = RunState.FAILED
        status = _pegasus_status(run_dir)
        if status:
            report.messages.append(status)
        if report.failures or incomplete:
            report.messages.append(
                "outputs of the jobs that succeeded are already in place: `bps finalize "
                f"{submit_dir}` registers them; `bps restart {submit_dir}` reruns only what failed"
            )
        if report.failures:
            report.messages += _analyzer_summary(run_dir)
        return report

    # -- restart ---------------------------------------------------------------------------
    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        submit_dir = Path(submit_dir).absolute()
        record = _record(submit_dir)
        run_dir = find_run_dir(submit_dir, record)
        if run_dir is None:
            raise WmsError(f"{submit_dir} was never submitted: use `bps submit {submit_dir}`")
        state = self.report(submit_dir).state
        if state in (RunState.RUNNING, RunState.SUBMITTED):
            raise WmsError(
                f"the run in {run_dir} is still {state}: wait for it to end or "
                f"`bps cancel {submit_dir}`, then restart"
            )
        if state == RunState.SUCCEEDED:
            raise WmsError(f"the run in {run_dir} succeeded: there is nothing to rerun")
        if not overrides:
            pegasus_dir = submit_dir / PEGASUS_SUBDIR
            _require_tool("pegasus-run", pegasus_dir)
            grown = carry_grown_memory(submit_dir, run_dir)
            refresh_job_slices(load_workflow(submit_dir / WORKFLOW_JSON))
            proc = _run(["pegasus-run", str(run_dir)], cwd=pegasus_dir)
            if proc.returncode != 0:
                raise WmsError(f"pegasus-run failed (exit {proc.returncode}):\n{_last_lines(proc)}")
            restarts = record.get("restarts", []) + [{"time": time.time(), "overrides": {}, "memory": grown}]
            write_run_record(submit_dir, state=RunState.SUBMITTED, restarts=restarts)
            return record.get("run_id") or str(run_dir)
        plan = self.prepare_restart(submit_dir, overrides)
        record = _record(submit_dir)
        run_name = _next_run_name(record)
        command = plan_command(plan, submit_dir / PEGASUS_SUBDIR, submit=True, run_name=run_name)
        return self._plan_and_submit(submit_dir, command, run_name, record)

    def prepare_restart(self, submit_dir: Path, overrides: dict[str, Any] | None) -> PegasusPlan:
        """Rewrite the Pegasus files with ``overrides`` and the outputs already made; submit nothing.

        Every output already made (a dataset staged in ``staged/`` or moved into the
        datastore by a finalize, a manifest in ``manifests/``) goes into the replica
        catalog, so that ``pegasus-plan`` prunes the jobs whose outputs all exist
        (data reuse).
        """
        submit_dir = Path(submit_dir).absolute()
        workflow = load_workflow(submit_dir / WORKFLOW_JSON)
        try:
            overrides_mod.apply(workflow, overrides)
        except ValueError as exc:
            raise WmsError(str(exc)) from exc
        check(workflow)
        refresh_job_slices(workflow)  # a graph fixed in place: the jobs are shipped its records
        save_workflow(workflow, submit_dir / WORKFLOW_JSON)
        pegasus_dir = submit_dir / PEGASUS_SUBDIR
        # Memory a job grew to in the last run stays its request (above a lower override).
        record = _record(submit_dir)
        run_dir = find_run_dir(submit_dir, record)
        grown = {
            name: reached
            for name, (reached, _) in (grown_memory(submit_dir, run_dir, workflow) if run_dir else {}).items()
        }
        for name, reached in grown.items():
            job = workflow.jobs[name]
            workflow.jobs[name] = replace(job, resources=replace(job.resources, memory_mb=reached))
        plan = translate(workflow, pegasus_dir)
        reused = 0
        for lfn, staged in sorted(plan.output_locations.items()):
            # staged and not yet registered, or already moved into the datastore by a finalize
            for path in (staged, plan.datastore_locations.get(lfn)):
                if path and Path(path).exists():
                    plan.replica_catalog.add_replica("local", lfn, catalogs.file_url(path))
                    reused += 1
                    break
        record = _record(submit_dir)
        run_name = _next_run_name(record)
        write_plan(plan, pegasus_dir, run_name)
        write_run_record(
            submit_dir, plan_command=plan_command(plan, pegasus_dir, submit=True, run_name=run_name)
        )
        restarts = record.get("restarts", []) + [
            {"time": time.time(), "overrides": overrides or {}, "reused_outputs": reused, "memory": grown}
        ]
        write_run_record(submit_dir, state=RunState.PREPARED, restarts=restarts)
        return plan

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, submit_dir: Path) -> None:
        submit_dir = Path(submit_dir).absolute()
        record = _record(submit_dir)
        run_dir = find_run_dir(submit_dir, record)
        if run_dir is None:
            raise WmsError(f"{submit_dir} was never submitted: there is nothing to cancel")
        pegasus_dir = submit_dir / PEGASUS_SUBDIR
        _require_tool("pegasus-remove", pegasus_dir)
        proc = _run(["pegasus-remove", str(run_dir)], cwd=pegasus_dir)
        if proc.returncode != 0:
            raise WmsUnavailableError(f"pegasus-remove failed (exit {proc.returncode}):\n{_last_lines(proc)}")
        write_run_record(submit_dir, state=RunState.CANCELLED, cancelled_at=time.time())


def check(workflow: GenericWorkflow) -> None:
    """Refuse a workflow the site cannot run (requests above its largest slot, submitter-only env)."""
    # A streamed workflow's jobs of one label ask for the same: its first job of each label
    # stands for them (the same report); otherwise one pass, never a list.
    compute: Iterable[Job] | None = label_jobs(workflow)
    if compute is None:
        compute = workflow.jobs.values()
    jobs = itertools.chain(compute, [workflow.final] if workflow.final else [])
    problems = check_resources(jobs, workflow.site) + check_environment(workflow.site)
    if problems:
        raise WmsError(
            f"site {workflow.site.name!r} cannot run this workflow with Pegasus:\n- " + "\n- ".join(problems)
        )


def _next_run_name(record: dict[str, Any]) -> str:
    """``run`` for the first planning of a submit directory, then ``run-2``, ``run-3``..."""
    runs = record.get("runs", [])
    return "run" if not runs else f"run-{len(runs) + 1}"


def _record(submit_dir: Path) -> dict[str, Any]:
    record = read_run_record(submit_dir)
    if record.get("wms") != "pegasus":
        raise WmsError(
            f"{submit_dir} was not prepared for Pegasus (run record: {record.get('wms') or 'none'}); "
            "prepare it with `bps submit --wms pegasus`"
        )
    return record


def _require_tool(tool: str, pegasus_dir: Path) -> None:
    if shutil.which(tool) is None:
        raise WmsUnavailableError(
            f"Pegasus is not installed here ({tool} is not on PATH). {pegasus_dir} holds the workflow, "
            f"catalogs and properties, ready to plan: run {pegasus_dir / 'plan.sh'} on a host with "
            "Pegasus 5 and HTCondor, or install Pegasus and rerun this command."
        )


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S)


def _last_lines(proc: subprocess.CompletedProcess[str], n: int = 15) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-n:])


def find_run_dir(submit_dir: Path, record: dict[str, Any]) -> Path | None:
    """The run directory of the newest Pegasus run of ``submit_dir``, however it was started.

    ``bps submit`` records it; ``plan.sh`` (or ``pegasus-plan`` by hand) does not, so
    the run directories under ``pegasus/submit`` are looked at too: the newest one
    whose ``braindump.yml`` says it was planned from this submit directory's
    ``workflow.yml``.
    """
    pegasus_dir = submit_dir / PEGASUS_SUBDIR
    planned = {pegasus_dir / WORKFLOW_FILE, Path(WORKFLOW_FILE)}
    candidates: dict[Path, tuple[str, float]] = {}
    for braindump in (pegasus_dir / "submit").glob("*/braindump.yml"):
        data = _braindump(braindump.parent)
        if Path(str(data.get("dax", ""))) in planned:
            candidates[braindump.parent] = (str(data.get("timestamp", "")), braindump.stat().st_mtime)
    recorded = Path(record["run_dir"]) if record.get("run_dir") else None
    if recorded is not None and recorded not in candidates:
        data = _braindump(recorded)
        candidates[recorded] = (
            str(data.get("timestamp", "")),
            recorded.stat().st_mtime if recorded.exists() else 0,
        )
    return max(candidates, key=candidates.__getitem__) if candidates else None


def carry_grown_memory(submit_dir: Path, run_dir: Path) -> dict[str, int]:
    """Make the planned submit files of jobs whose memory grew start from what they reached.

    ``pegasus-run`` resubmits the rescue DAG with the submit files Pegasus planned,
    whose memory expressions hold the original request as a literal, so a rerun
    job would start again from it. The ``request_memory``, ``periodic_release`` and
    ``periodic_remove`` lines of each job that grew (`grown_memory`) are rewritten
    with what it reached as the base. Returns job name -> new base (MB).
    """
    from .settings import load_settings
    from .translator import memory_profiles

    workflow = load_workflow(submit_dir / WORKFLOW_JSON)
    settings, _ = load_settings(workflow.site)
    grown = grown_memory(submit_dir, run_dir, workflow)
    for name, (reached, sub) in grown.items():
        job = workflow.jobs[name]
        bigger = replace(job, resources=replace(job.resources, memory_mb=reached))
        _rewrite_submit_lines(
            sub, memory_profiles(bigger, workflow.site.max_memory_mb, settings.held_timeout_s)
        )
    return {name: reached for name, (reached, _) in grown.items()}


def grown_memory(submit_dir: Path, run_dir: Path, workflow: GenericWorkflow) -> dict[str, tuple[int, Path]]:
    """Job name -> (the memory it reached, its planned submit file), for jobs that grew.

    Read from the HTCondor event log of each run of ``run_dir`` (``condor_log`` of
    its ``braindump.yml``; the compute jobs are in the sub-workflow's run): the
    largest request from a termination record or a memory-hold limit, capped as on
    HTCondor at ``max(memory_max_mb, memory_mb)``.
    """
    from ..htcondor.eventlog import read_event_log

    job_map: dict[str, dict[str, str]] = json.loads((submit_dir / PEGASUS_SUBDIR / JOB_MAP_FILE).read_text())
    by_name = {entry["name"]: pid for pid, entry in job_map.items()}
    grown: dict[str, tuple[int, Path]] = {}
    for directory in run_dirs(run_dir):
        log = _braindump(directory).get("condor_log")
        history = read_event_log(directory / str(log)) if log else {}
        if not history:
            continue
        for name, job in workflow.jobs.items():
            node = f"{catalogs.transformation_name(job.executable)}_{by_name.get(name, '')}"
            hist = history.get(node)
            if hist is None:
                continue
            reached = min(hist.memory_grown_to_mb, max(job.retry.memory_max_mb, job.resources.memory_mb))
            sub = next(directory.rglob(f"{node}.sub"), None)
            if reached > job.resources.memory_mb and sub is not None:
                grown[name] = (reached, sub)
    return grown


def _rewrite_submit_lines(path: Path, commands: dict[str, str]) -> None:
    """Replace the ``key = value`` lines of ``commands`` in a submit file (atomically)."""
    lines = path.read_text().splitlines()
    done = set()
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in commands and "=" in line:
            lines[i] = f"{key} = {commands[key]}"
            done.add(key)
    missing = [key for key in commands if key not in done]
    if missing:
        raise WmsError(
            f"{path} has no {', '.join(missing)} line: it was not planned from this submit directory"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def _braindump(run_dir: Path) -> dict[str, Any]:
    """Pegasus's ``braindump.yml`` of a run directory (empty when absent or unreadable)."""
    import yaml

    try:
        data = yaml.safe_load((run_dir / "braindump.yml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _finalize_incomplete(submit_dir: Path) -> str | None:
    """What the last ``bps finalize`` left unregistered, from its summary (None when nothing)."""
    from ...finalize import SUMMARY_FILE

    try:
        summary = json.loads((submit_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    missing, rejected = int(summary.get("missing", 0)), len(summary.get("rejected", []))
    if not missing and not rejected:
        return None
    return (
        f"bps finalize: {missing} expected outputs not registered, {rejected} rejected "
        f"(no_work: {summary.get('no_work', 0)}, registered: {summary.get('registered', 0)}): "
        "the run is not a success"
    )


def _wf_uuid(run_dir: Path) -> str | None:
    """The run's UUID from Pegasus's ``braindump.yml`` (a YAML mapping), if written."""
    path = run_dir / "braindump.yml"
    if not path.exists():
        return None
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return str(data["wf_uuid"]) if "wf_uuid" in data else None


def _transformation_names(pegasus_dir: Path) -> list[str]:
    doc = json.loads((pegasus_dir / catalogs.TRANSFORMATIONS_FILE).read_text())
    # longest first: "run_quantum_x" must not match a shorter transformation name by accident
    return sorted((t["name"] for t in doc["transformations"]), key=len, reverse=True)


def _pegasus_status(run_dir: Path) -> str | None:
    """``pegasus-status``'s progress line, computed by its own Python module from DAGMan's log.

    Needs no Pegasus installation (the module ships with ``pegasus-wms.api``) and no
    schedd; counts are DAG nodes, Pegasus's transfer jobs included.
    """
    if not (run_dir / "braindump.yml").exists():
        return None
    try:
        from Pegasus.client.status import Status

        data = Status().fetch_status(str(run_dir), json=True, noqueue=True)
    except Exception as exc:  # a half-written DAGMan log or braindump must not break the report
        return f"pegasus-status could not read {run_dir}: {exc}"
    totals = (data or {}).get("totals") or {}
    if not totals.get("total"):
        return None
    state = (data.get("dags", {}).get("root") or {}).get("state", "?")
    counts = ", ".join(
        f"{totals[key]} {key}"
        for key in ("succeeded", "failed", "queued", "ready", "unready")
        if totals.get(key)
    )
    return (
        f"pegasus-status: {state}, {totals['percent_done']}% of {totals['total']} DAG nodes done ({counts})"
    )


def _analyzer_summary(run_dir: Path) -> list[str]:
    """The first lines of ``pegasus-analyzer``'s verdict, when the tool is here."""
    if shutil.which("pegasus-analyzer") is None:
        return [f"for details run `pegasus-analyzer {run_dir}` where Pegasus is installed"]
    try:
        proc = _run(["pegasus-analyzer", str(run_dir)], cwd=run_dir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"pegasus-analyzer could not run: {exc}"]
    lines = [line for line in (proc.stdout or "").splitlines() if line.strip()]
    return ["pegasus-analyzer: " + line.strip() for line in lines[:12]]
