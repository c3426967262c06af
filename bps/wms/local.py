"""The local workflow system: a generic workflow's jobs as subprocesses on this machine.

It runs exactly what a cluster would run (``run_quantum`` per job, then
``bps finalize``), with the same retry rules (exit codes in ``NO_RETRY`` are not
retried) and throttles, so a batch configuration can be tried on a laptop before a
cluster is spent on it. Job states live in the submit directory's run record,
which ``bps report`` reads and ``bps restart`` uses to rerun only what did not
succeed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertask.execution.single_quantum import tail
from supertask.states import JobState, RunState, parse_state

from ..exit_codes import TASK_NO_WORK, describe
from ..job_environment import JobEnvironment, submitter_environment
from ..workflow import GenericWorkflow, Job, SiteConfig
from ..workflow_io import load_workflow, save_workflow
from .base import JobFailure, RunReport, WmsError, WorkflowService, read_run_record, write_run_record

WORKFLOW_FILE = "workflow.json"
LOG_TAIL_LINES = 15
_RECORD_INTERVAL_S = 0.5


@dataclass
class _Running:
    job: Job
    attempt: int
    process: subprocess.Popen[bytes]
    log_file: Path


class LocalService(WorkflowService):
    """Run jobs as local subprocesses, ``jobs`` at a time, with retries and a progress bar.

    Parameters
    ----------
    jobs : `int`, optional
        Parallel jobs; default: the run record's value, else 2.
    progress : `bool`
        Show a progress bar (on stderr).
    fork : `bool`, optional
        Start ``run_quantum`` jobs as forks of a process that has already imported the
        software and the pipeline's tasks, instead of fresh interpreters (default, unless
        ``$BPS_LOCAL_FORK=0`` or the site names another Python). Each job is still its
        own process running ``bps.run_quantum.main`` with its own log, exit code and
        signals; only the interpreter start and imports (most of a small job's cost on a
        laptop) are paid once.
    """

    name = "local"

    def __init__(self, jobs: int | None = None, progress: bool = True, fork: bool | None = None):
        self.jobs = jobs
        self.progress = progress
        #: start run_quantum jobs by forking a process that has the software loaded (see `_ForkedJob`)
        self.fork = fork if fork is not None else os.environ.get("BPS_LOCAL_FORK", "1") != "0"
        self.retries_override: int | None = None
        self._stop = False

    # -- WorkflowService ------------------------------------------------------------------
    def job_environment(self, site: SiteConfig) -> JobEnvironment | None:
        """Jobs run here with the submitter's environment and the site's variables."""
        return submitter_environment(
            site.environment,
            site.python or sys.executable,
            "local: the submitter's environment and the site's",
        )

    def prepare(self, workflow: GenericWorkflow) -> Path:
        """Nothing to translate: the generic workflow is the local system's own file."""
        path = Path(workflow.submit_dir) / WORKFLOW_FILE
        if not path.exists():
            save_workflow(workflow, path)
        write_run_record(Path(workflow.submit_dir), wms=self.name, state=RunState.PREPARED)
        return path

    def submit(self, submit_dir: Path) -> str:
        """Run the workflow to completion (blocking); return the run id."""
        submit_dir = Path(submit_dir).absolute()
        run_id = f"local-{os.getpid()}-{int(time.time())}"
        self._run(submit_dir, run_id, rerun_all=True)
        return run_id

    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        """Rerun jobs that did not succeed (their succeeded quanta are skipped by run_quantum itself)."""
        submit_dir = Path(submit_dir).absolute()
        record = read_run_record(submit_dir)
        if not record.get("jobs"):
            raise WmsError(f"{submit_dir} was never submitted with the local system: use `bps submit` first")
        if record.get("state") == RunState.RUNNING and _alive(record.get("pid")):
            raise WmsError(
                f"{submit_dir} is still running (process {record['pid']}): wait for it, or `bps cancel` it first"
            )
        if overrides and "retries" in overrides:
            self.retries_override = int(overrides["retries"])
        run_id = f"local-{os.getpid()}-{int(time.time())}"
        self._run(submit_dir, run_id, rerun_all=False)
        return run_id

    def report(self, submit_dir: Path) -> RunReport:
        """Per-label states and the log tail of every failure, from the run record."""
        submit_dir = Path(submit_dir)
        record = read_run_record(submit_dir)
        wf = load_workflow(submit_dir / WORKFLOW_FILE)
        report = RunReport(submit_dir=str(submit_dir), wms=self.name, run_id=record.get("run_id"))
        report.state = parse_state(RunState, record.get("state", RunState.PREPARED), "the run record")
        states = record.get("jobs", {})
        jobs = list(wf.jobs.values()) + ([wf.final] if wf.final else [])
        runner_gone = not _alive(record.get("pid"))  # its running jobs will not finish
        for job in jobs:
            info = states.get(job.name, {})
            state = report.add_recorded_job(job, info, runner_gone)
            if state == JobState.FAILED:
                log_file = info.get("log")
                report.failures.append(
                    JobFailure(
                        name=job.name,
                        label=job.label,
                        exit_code=info.get("exit_code"),
                        attempt=info.get("attempts", 1),
                        reason=describe(info["exit_code"])
                        if info.get("exit_code") is not None
                        else "runner died",
                        log_file=log_file,
                        log_tail=tail(log_file, LOG_TAIL_LINES),
                    )
                )
        return report

    def cancel(self, submit_dir: Path) -> None:
        """Stop a running local run (its runner kills its jobs and records them as not finished)."""
        record = read_run_record(Path(submit_dir))
        pid = record.get("pid")
        if record.get("state") != RunState.RUNNING or not isinstance(pid, int) or not _alive(pid):
            raise WmsError(f"{submit_dir}: no local run is in progress")
        os.kill(pid, signal.SIGTERM)

    # -- the runner -----------------------------------------------------------------------
    def _run(self, submit_dir: Path, run_id: str, *, rerun_all: bool) -> None:
        wf = load_workflow(submit_dir / WORKFLOW_FILE)
        record = read_run_record(submit_dir)
        parallel = self.jobs or record.get("parallel_jobs") or 2
        states: dict[str, dict[str, Any]] = {} if rerun_all else dict(record.get("jobs", {}))
        for name in wf.jobs:
            info = states.get(name, {})
            if info.get("state") != JobState.SUCCEEDED:
                states[name] = {"state": JobState.PENDING, "attempts": 0}
        if wf.final is not None:
            states[wf.final.name] = {"state": JobState.PENDING, "attempts": 0}
        write_run_record(
            submit_dir,
            wms=self.name,
            run_id=run_id,
            state=RunState.RUNNING,
            pid=os.getpid(),
            parallel_jobs=parallel,
            jobs=states,
        )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._loop(wf, submit_dir, states, parallel, run_id)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _loop(
        self,
        wf: GenericWorkflow,
        submit_dir: Path,
        states: dict[str, dict[str, Any]],
        parallel: int,
        run_id: str,
    ) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        children = wf.children()
        waiting = {
            name: sum(1 for p in wf.parents[name] if states[p]["state"] != JobState.SUCCEEDED)
            for name in wf.jobs
        }
        ready = deque(n for n in wf.jobs if states[n]["state"] == JobState.PENDING and waiting[n] == 0)
        running: dict[str, _Running] = {}
        per_throttle: dict[str, int] = {}
        last_record = 0.0
        retries_override = self.retries_override

        def skip_descendants(name: str) -> None:
            stack = list(children[name])
            while stack:
                child = stack.pop()
                if states[child]["state"] == JobState.PENDING:
                    states[child]["state"] = JobState.SKIPPED
                    stack.extend(children[child])

        def record(state: RunState = RunState.RUNNING, force: bool = False) -> None:
            nonlocal last_record
            now = time.monotonic()
            if force or now - last_record > _RECORD_INTERVAL_S:
                write_run_record(submit_dir, state=state, jobs=states)
                last_record = now

        total = len(wf.jobs) + (1 if wf.final else 0)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            disable=not self.progress,
            auto_refresh=False,  # no refresh thread: jobs are forked from this process
            transient=False,
        ) as progress:
            forking = self.fork and not wf.site.python and hasattr(os, "fork")
            if forking:
                _preload(wf)
            bar = progress.add_task(f"local run {wf.name}", total=total, failed=0)
            done_count = sum(1 for s in states.values() if s["state"] == JobState.SUCCEEDED)
            progress.update(bar, completed=done_count)
            while (ready or running) and not self._stop:
                launched = True
                while launched and len(running) < parallel and ready:
                    launched = False
                    for _ in range(len(ready)):
                        name = ready.popleft()
                        job = wf.jobs[name]
                        limit = wf.throttles.get(job.throttle or "", None)
                        if limit is not None and per_throttle.get(job.throttle or "", 0) >= limit:
                            ready.append(name)
                            continue
                        running[name] = self._start(wf, job, submit_dir, states[name], fork=forking)
                        if job.throttle:
                            per_throttle[job.throttle] = per_throttle.get(job.throttle, 0) + 1
                        launched = True
                        break
                record()
                progress.refresh()
                finished = _wait_any(running, lambda: self._stop)
                for name in finished:
                    r = running.pop(name)
                    if r.job.throttle:
                        per_throttle[r.job.throttle] -= 1
                    code = r.process.returncode
                    info = states[name]
                    info["exit_code"] = code
                    _record_usage(info, r.process)
                    if code in (0, TASK_NO_WORK):  # 3: no work from an older run_quantum (now exits 0)
                        info["state"] = JobState.SUCCEEDED
                        progress.advance(bar)
                        for child in children[name]:
                            waiting[child] -= 1
                            if waiting[child] == 0 and states[child]["state"] == JobState.PENDING:
                                ready.append(child)
                        continue
                    retries = r.job.retry.retries if retries_override is None else retries_override
                    retryable = code not in r.job.retry.no_retry_exit_codes
                    if self._stop:
                        info["state"] = JobState.PENDING
                    elif retryable and info["attempts"] <= retries:
                        info["state"] = JobState.PENDING
                        ready.append(name)
                    else:
                        info["state"] = JobState.FAILED
                        skip_descendants(name)
                        failed = sum(1 for s in states.values() if s["state"] == JobState.FAILED)
                        progress.update(bar, failed=failed)
                record(force=bool(finished))
            if self._stop:
                for r in running.values():
                    r.process.terminate()
                for name, r in running.items():
                    _wait(r.process)
                    states[name]["state"] = JobState.PENDING
                    _record_usage(states[name], r.process)
                record(RunState.CANCELLED, force=True)
                return
            # the final job runs even after failures: it registers whatever was made
            if wf.final is not None:
                info = states[wf.final.name]
                while True:
                    r = self._start(wf, wf.final, submit_dir, info)
                    _wait(r.process)
                    info["exit_code"] = r.process.returncode
                    _record_usage(info, r.process)
                    if r.process.returncode == 0:
                        info["state"] = JobState.SUCCEEDED
                        progress.advance(bar)
                        break
                    if (
                        info["attempts"] > wf.final.retry.retries
                        or r.process.returncode in wf.final.retry.no_retry_exit_codes
                    ):
                        info["state"] = JobState.FAILED
                        break
        failed = any(s["state"] in (JobState.FAILED, JobState.SKIPPED) for s in states.values())
        record(RunState.FAILED if failed else RunState.SUCCEEDED, force=True)

    def _start(
        self, wf: GenericWorkflow, job: Job, submit_dir: Path, info: dict[str, Any], fork: bool = False
    ) -> _Running:
        info["attempts"] = info.get("attempts", 0) + 1
        info["state"] = JobState.RUNNING
        info["start"] = time.time()
        info.pop("end", None)
        log_dir = submit_dir / (job.log_subdir or "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / f"{job.name}.log"
        info["log"] = str(log_file)
        command = _command(wf, job)
        env = dict(os.environ)
        env.update(wf.site.environment)
        with open(log_file, "ab") as stream:
            stream.write(f"=== attempt {info['attempts']}: {' '.join(command)}\n".encode())
            stream.flush()
            process: Any
            if fork and job.executable == "run_quantum":
                process = _ForkedJob(command[3:], log_file, env, submit_dir)
            else:
                process = subprocess.Popen(
                    command, stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=submit_dir
                )
        return _Running(job, info["attempts"], process, log_file)


class _ForkedJob:
    """A ``run_quantum`` job in a forked child: the `subprocess.Popen` calls the runner uses.

    The child redirects its output to the job's log, restores default signal
    handling, applies the site environment and calls ``bps.run_quantum.main`` with
    the job's arguments, exiting with its code. Nothing else is shared: the job
    cannot corrupt the runner, and a kill (or an out-of-memory kill) ends only it.
    """

    def __init__(self, argv: list[str], log_file: Path, env: dict[str, str], cwd: Path):
        sys.stdout.flush()
        sys.stderr.flush()
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                # the runner's streams and log handlers may not be fds 1 and 2 (e.g. under a test runner)
                sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                import logging

                root = logging.getLogger()
                for handler in list(root.handlers):
                    root.removeHandler(handler)
                os.chdir(cwd)
                os.environ.clear()
                os.environ.update(env)
                from ..run_quantum import main

                code = main(argv)
            except SystemExit as err:
                code = err.code if isinstance(err.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)

    def poll(self) -> int | None:
        return _poll(self)

    def wait(self) -> int:
        return _wait(self)

    def terminate(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _preload(wf: GenericWorkflow) -> None:
    """Import what every job needs, and the pipeline's tasks, once, before forking jobs."""
    try:
        from ..job import runner  # noqa: F401 - the job's own modules and the core runner
        from ..job.backend import SupertaskBackend

        backend = SupertaskBackend()
        header = _read_header(wf.graph_file)
        backend.make_tasks(
            header,
            {label for job in wf.jobs.values() for label in job.tags.get("task_labels", "").split(",")},
        )
        from supertask.repo import datastore, formatters  # noqa: F401
    except Exception:  # a job will report the real problem in its own log
        pass


def _read_header(graph_file: str) -> dict[str, Any]:
    from supertask.graph.quantum_graph import QuantumGraph

    return QuantumGraph.readHeader(graph_file)


def _command(wf: GenericWorkflow, job: Job) -> list[str]:
    python = wf.site.python or sys.executable
    if job.executable == "run_quantum":
        return [python, "-m", "bps.run_quantum", *job.arguments, "--repo", wf.repo]
    if job.executable == "bps":
        return [python, "-m", "bps.cli", *job.arguments]
    return [job.executable, *job.arguments]


def _poll(process: Any, block: bool = False) -> int | None:
    """Reap a finished job process (a `subprocess.Popen` or a `_ForkedJob`) with its resource usage.

    ``os.wait4`` gives this one child's peak resident memory (``ru_maxrss``), kept as
    ``process.maxrss_kb`` for the run record; ``subprocess``'s own waiting does not.
    """
    if process.returncode is not None:
        code: int = process.returncode
        return code
    try:
        pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: its status is what the object knows, if anything
        if isinstance(process, subprocess.Popen):
            return process.wait() if block else process.poll()
        process.returncode = 1
        return 1
    if pid:
        process.returncode = os.waitstatus_to_exitcode(status)
        process.maxrss_kb = usage.ru_maxrss
    return process.returncode


def _wait(process: Any) -> int:
    """Wait for a job process to end (see `_poll`); its exit code."""
    code = _poll(process, block=True)
    assert code is not None
    return code


def _record_usage(info: dict[str, Any], process: Any) -> None:
    """Put a finished job's end time and peak memory into its run-record entry."""
    info["end"] = time.time()
    maxrss_kb = getattr(process, "maxrss_kb", None)
    if maxrss_kb:
        info["peak_memory_mb"] = round(maxrss_kb / 1024.0, 1)


def _wait_any(running: dict[str, _Running], stop: Any = lambda: False, poll_s: float = 0.02) -> list[str]:
    """Names of jobs that have finished, waiting until one has (or ``stop()`` says to stop)."""
    if not running:
        return []
    while True:
        finished = [name for name, r in running.items() if _poll(r.process) is not None]
        if finished or stop():
            return finished
        time.sleep(poll_s)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
