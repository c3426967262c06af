"""`ParslService`: prepare, submit, report, restart and cancel Parsl runs, from the submit directory.

This module never imports ``parsl``: reporting and cancelling work wherever bps is
installed, and ``run_quantum`` never pays for it. The run itself happens in the workflow
process (`bps.wms.parsl.driver`), which `submit` and `restart` start:

- detached by default (a new session, output to ``SUBMIT_DIR/parsl/driver.log``): the shell
  that ran ``bps submit`` may close; ``submit`` returns once the process has loaded Parsl and
  started submitting jobs, or raises with the tail of its log if it stopped before that;
- in the foreground with ``site.parsl.detach: false`` (e.g. ``bps submit`` inside a batch job).

The process keeps ``SUBMIT_DIR/parsl/driver.json`` (`bps.wms.parsl.state`) and the job
states in ``run_record.json``; `cancel` sends it SIGTERM (from any shell on its host).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from supertask.execution.single_quantum import tail
from supertask.states import JobState, RunState, parse_state

from ...exit_codes import describe
from ...job_environment import JobEnvironment, submitter_environment
from ...workflow import GenericWorkflow, SiteConfig
from ...workflow_io import load_workflow, save_workflow, workflow_site
from ..base import (
    JobFailure,
    RunReport,
    WmsError,
    WmsUnavailableError,
    WorkflowService,
    read_run_record,
    write_run_record,
)
from ..local import LOG_TAIL_LINES
from .commands import WALLTIME_EXIT
from .settings import ParslSettings
from .state import DRIVER_LOG, driver_alive, on_this_host, parsl_dir, read_state

log = logging.getLogger("bps.wms.parsl")

WORKFLOW_FILE = "workflow.json"
#: Restart changes that apply to Parsl jobs (no memory escalation here; providers take no disk request).
RESTART_KEYS = ("retries", "memory_mb", "cpus", "walltime_s")


class ParslService(WorkflowService):
    """Parsl as a `WorkflowService` (see the module docstring)."""

    name = "parsl"
    #: How long `submit` / `restart` wait for the workflow process to start submitting jobs.
    startup_wait_s: float = 180.0
    #: How long `cancel` waits for the workflow process to stop.
    cancel_wait_s: float = 120.0
    poll_s: float = 0.2

    # -- prepare ---------------------------------------------------------------------------
    def precheck(self, site: SiteConfig, submit_dir: Path) -> None:
        _settings(site)

    def job_environment(self, site: SiteConfig) -> JobEnvironment | None:
        """Parsl's workers start from the workflow process, which has the submitter's environment;
        each job adds its virtual environment, unbuffered output and the site's variables
        (`bps.wms.parsl.commands.environment`)."""
        from ..htcondor.translator import job_python

        python = job_python(site)
        extra: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
        if (Path(python).parent.parent / "pyvenv.cfg").exists():
            extra["VIRTUAL_ENV"] = str(Path(python).parent.parent)
        return submitter_environment(
            {**extra, **site.environment}, python, "Parsl: the submitter's environment and the site's"
        )

    def prepare(self, workflow: GenericWorkflow) -> Path:
        """Check the site; the generic workflow is the Parsl run's own file (jobs become apps at run time)."""
        _settings(workflow.site)
        submit_dir = Path(workflow.submit_dir).absolute()
        submit_dir.mkdir(parents=True, exist_ok=True)
        path = submit_dir / WORKFLOW_FILE
        if not path.exists():
            save_workflow(workflow, path)
        write_run_record(submit_dir, wms=self.name, state=RunState.PREPARED)
        return path

    # -- submit / restart ------------------------------------------------------------------
    def submit(self, submit_dir: Path) -> str:
        submit_dir = Path(submit_dir).absolute()
        self._refuse_if_running(submit_dir, "submitting again")
        return self._start(submit_dir, restart=False)

    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        """Start a workflow process that runs only the jobs that did not succeed."""
        submit_dir = Path(submit_dir).absolute()
        record = read_run_record(submit_dir)
        if not record.get("jobs"):
            raise WmsError(
                f"{submit_dir} was never submitted with Parsl: use `bps submit {submit_dir}` first"
            )
        self._refuse_if_running(submit_dir, "restarting")
        if overrides:
            wf = load_workflow(submit_dir / WORKFLOW_FILE)
            merged = _merge_overrides(record.get("overrides") or {}, overrides, wf)
            write_run_record(submit_dir, overrides=merged)
        return self._start(submit_dir, restart=True)

    def _refuse_if_running(self, submit_dir: Path, doing: str) -> None:
        state = read_state(submit_dir)
        if state.get("state") in ("starting", "running") and not on_this_host(state):
            raise WmsError(
                f"the workflow process of {submit_dir} may still run on host {state.get('host')} "
                f"(pid {state.get('pid')}): check there, or `bps cancel {submit_dir}` there, before {doing}"
            )
        if driver_alive(state):
            raise WmsError(
                f"{submit_dir} is still running (workflow process {state['pid']}): wait for it, "
                f"or `bps cancel {submit_dir}`, before {doing}"
            )

    def _start(self, submit_dir: Path, *, restart: bool) -> str:
        if importlib.util.find_spec("parsl") is None:
            raise WmsUnavailableError(
                f"parsl is not installed for {sys.executable}: pip install 'supertask[parsl]' "
                f"(the submit directory stays usable: `bps submit {submit_dir}` afterwards)"
            )
        settings = _settings(
            workflow_site(submit_dir / WORKFLOW_FILE)
        )  # the header: the driver loads the jobs
        directory = parsl_dir(submit_dir)
        directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bps.wms.parsl.driver", str(submit_dir)]
        if restart:
            command.append("--restart")
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if not settings.detach:
            # the workflow process in the foreground (its output on this terminal): bps submit
            # ends with the run, and fails unless the run succeeded
            done = subprocess.run(command, env=env, cwd=submit_dir, stdin=subprocess.DEVNULL)
            ended = read_run_record(submit_dir).get("state", RunState.UNKNOWN)
            if done.returncode != 0 or ended != RunState.SUCCEEDED:
                raise WmsError(
                    f"the Parsl run in {submit_dir} ended {ended} (workflow process exit {done.returncode}): "
                    f"`bps report {submit_dir}` shows why"
                )
            return str(read_state(submit_dir).get("run_id", "parsl"))
        log_path = directory / DRIVER_LOG
        with open(log_path, "ab") as log_file:
            log_file.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                command,
                env=env,
                cwd=submit_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the shell; a Ctrl-C there does not reach it
            )
        return self._await_start(submit_dir, process, log_path)

    def _await_start(self, submit_dir: Path, process: subprocess.Popen[bytes], log_path: Path) -> str:
        """The run id once the workflow process runs its jobs; `WmsError` with its log if it stopped first."""
        deadline = time.monotonic() + self.startup_wait_s
        while True:
            state = read_state(submit_dir)
            ours = state.get("pid") == process.pid
            if ours and state.get("state") == "ended" and not state.get("started"):
                process.wait()
                raise WmsError(
                    f"the Parsl workflow process stopped before running any job (exit {process.returncode}); "
                    f"the end of {log_path}:\n{tail(log_path, LOG_TAIL_LINES)}"
                )
            if ours and state.get("started"):
                log.info(
                    "workflow process %d on %s runs the jobs (its log: %s); follow it with `bps report %s`, "
                    "stop it with `bps cancel %s`",
                    process.pid,
                    state.get("host"),
                    log_path,
                    submit_dir,
                    submit_dir,
                )
                return str(state["run_id"])
            code = process.poll()
            if code is not None:
                raise WmsError(
                    f"the Parsl workflow process stopped before running any job (exit {code}); "
                    f"the end of {log_path}:\n{tail(log_path, LOG_TAIL_LINES)}"
                )
            if time.monotonic() > deadline:
                return str(state.get("run_id") or f"parsl-{process.pid}")
            time.sleep(self.poll_s)

    # -- report ----------------------------------------------------------------------------
    def report(self, submit_dir: Path) -> RunReport:
        """Per-label states and each failure with its log tail, from the run record."""
        submit_dir = Path(submit_dir)
        record = read_run_record(submit_dir)
        state = read_state(submit_dir)
        wf = load_workflow(submit_dir / WORKFLOW_FILE)
        report = RunReport(submit_dir=str(submit_dir), wms=self.name, run_id=record.get("run_id"))
        report.state = parse_state(RunState, record.get("state", RunState.PREPARED), "the run record")
        lost = (
            report.state in (RunState.STARTING, RunState.RUNNING)
            and on_this_host(state)
            and not driver_alive(state)
        )
        if lost:
            report.state = RunState.FAILED
            report.messages.append(
                f"the workflow process (pid {state.get('pid')}) ended without finishing: see "
                f"{parsl_dir(submit_dir) / DRIVER_LOG}; `bps restart {submit_dir}` runs what did not succeed"
            )
        elif report.state in (RunState.STARTING, RunState.RUNNING):
            where = "" if on_this_host(state) else f" on host {state.get('host')}"
            report.messages.append(f"the workflow process is pid {state.get('pid')}{where}")
        jobs = record.get("jobs", {})
        for job in list(wf.jobs.values()) + ([wf.final] if wf.final else []):
            info = jobs.get(job.name, {})
            job_state = report.add_recorded_job(job, info, runner_gone=lost)
            if job_state == JobState.FAILED:
                report.failures.append(_failure(job.name, job.label, info, job.resources.walltime_s, lost))
        return report

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, submit_dir: Path) -> None:
        """SIGTERM to the workflow process; returns once it has stopped (its jobs killed)."""
        submit_dir = Path(submit_dir).absolute()
        state = read_state(submit_dir)
        if state.get("state") in ("starting", "running") and not on_this_host(state):
            raise WmsError(
                f"the workflow process of {submit_dir} runs on host {state.get('host')} "
                f"(pid {state.get('pid')}): run `bps cancel {submit_dir}` there"
            )
        if not driver_alive(state):
            raise WmsError(
                f"{submit_dir}: no Parsl run is in progress (state: {read_run_record(submit_dir).get('state', 'prepared')})"
            )
        os.kill(int(state["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_wait_s
        while driver_alive(read_state(submit_dir)):
            if time.monotonic() > deadline:
                raise WmsError(
                    f"the workflow process {state['pid']} was asked to stop {self.cancel_wait_s:.0f} s ago "
                    f"and still runs: see {parsl_dir(submit_dir) / DRIVER_LOG}"
                )
            time.sleep(self.poll_s)


def _settings(site: SiteConfig) -> ParslSettings:
    """The site's Parsl settings; `WmsError` with the fix when the site cannot run Parsl jobs."""
    if site.staging != "shared":
        raise WmsError(
            f"site {site.name!r}: staging {site.staging!r} is not supported with wms parsl: its workers "
            "read and write the datastore and the submit directory in place; set site.staging: shared"
        )
    try:
        return ParslSettings.of(site)
    except ValueError as err:
        raise WmsError(str(err)) from None


def _failure(name: str, label: str, info: dict[str, Any], walltime_s: int | None, lost: bool) -> JobFailure:
    code = info.get("exit_code")
    if code == WALLTIME_EXIT and walltime_s:
        reason = f"stopped at its walltime ({walltime_s} s)"
    elif code is not None:
        reason = describe(code)
    elif info.get("error"):
        reason = str(info["error"])
    else:
        reason = "the workflow process ended while it ran" if lost else "failed"
    return JobFailure(
        name=name,
        label=label,
        exit_code=code,
        attempt=int(info.get("attempts", 1) or 1),
        reason=reason,
        log_file=info.get("log"),
        log_tail=tail(info.get("log"), LOG_TAIL_LINES),
    )


def _merge_overrides(old: dict[str, Any], new: dict[str, Any], wf: GenericWorkflow) -> dict[str, Any]:
    """A restart's changes over the earlier ones; `WmsError` for one Parsl cannot apply."""
    given = {k for k in new if k != "labels"} | {k for v in new.get("labels", {}).values() for k in v}
    unknown = sorted(k for k in given if k not in RESTART_KEYS)
    if unknown:
        raise WmsError(
            f"restart changes {unknown} do not apply to Parsl runs (no memory escalation, no disk request); "
            f"use {['--' + k.replace('_', '-') for k in RESTART_KEYS]} or --label-set LABEL:KEY=VALUE"
        )
    labels = set(wf.labels())
    for label in new.get("labels", {}):
        if label not in labels:
            raise WmsError(f"--label-set {label}:...: no job has label {label!r}; labels: {sorted(labels)}")
    site = wf.site
    limits = {"memory_mb": site.max_memory_mb, "cpus": site.max_cpus}
    for scope in [new, *new.get("labels", {}).values()]:
        for key, limit in limits.items():
            if key in scope and scope[key] > limit:
                raise WmsError(
                    f"{key} = {scope[key]} exceeds what site {site.name!r} offers (site.max_{key} = {limit}): lower it"
                )
    merged = {**old, **{k: v for k, v in new.items() if k != "labels"}}
    merged_labels = {label: dict(v) for label, v in old.get("labels", {}).items()}
    for label, values in new.get("labels", {}).items():
        merged_labels.setdefault(label, {}).update(values)
    if merged_labels:
        merged["labels"] = merged_labels
    return merged
