"""The workflow process of a Parsl run: ``python -m bps.wms.parsl.driver SUBMIT_DIR [--restart]``.

It holds Parsl's DataFlowKernel for the whole run:

1. writes the state file (`bps.wms.parsl.state`: host, pid, start time) and the run record;
2. loads one HighThroughputExecutor per resource class (`bps.wms.parsl.config`);
3. submits every job that has to run as a ``bash_app`` on its class's executor, in
   dependency order, with the futures of its parents as ``inputs``: Parsl starts a job when
   its parents have succeeded, and fails it with a ``DependencyError`` (reported
   ``skipped``) when one failed for good. Parsl retries failures through the handler
   `Driver.retry_cost`: the job's own retries, never the no-retry exit codes;
4. records each job's state, attempts, exit code and log in ``run_record.json`` as it goes
   (``bps report`` reads it, from any shell);
5. when every job has ended, runs the final job (``bps finalize`` with the run's status), last
   and always, retried for transient errors only;
6. on SIGTERM (``bps cancel``) or SIGINT: stops submitting, shuts Parsl down (its blocks are
   cancelled, which kills their running jobs), records unfinished jobs ``pending`` and the run
   ``cancelled``; ``bps restart`` runs them later.

A restart (``--restart``) runs only the jobs that have not succeeded; a job's succeeded
quanta are skipped by ``run_quantum`` itself (its manifest).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import signal
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from supertask.states import JobState, RunState

from ... import exit_codes
from ...workflow import Job
from ...workflow_io import load_workflow
from ..base import read_run_record, write_run_record
from .commands import resource_classes
from .settings import ParslSettings
from .state import DRIVER_LOG, parsl_dir, this_process, write_state

log = logging.getLogger("bps.wms.parsl")

WORKFLOW_FILE = "workflow.json"
#: Seconds between two writes of the run record while jobs run.
RECORD_INTERVAL_S = 1.0
#: Exit codes of ``bps finalize`` that are outcomes, not transient failures: never retried.
FINAL_OUTCOMES = (
    exit_codes.OUTPUTS_MISSING,
    exit_codes.WORKFLOW_FAILED,
    exit_codes.DATA_ERROR,
    exit_codes.USAGE,
)
#: The run's status as ``bps finalize --dag-status`` takes it (DAGMan's values): ok, jobs failed.
STATUS_OK, STATUS_FAILED = 0, 2


def job_command(
    command: str, job_name: str = "", inputs: Any = (), stdout: Any = None, stderr: Any = None
) -> str:
    """The body of every ``bash_app``: the command line, built by the workflow process."""
    return command


def apply_overrides(job: Job, overrides: dict[str, Any]) -> Job:
    """``job`` with a restart's changes (``retries``, ``memory_mb``, ``cpus``, ``walltime_s``; per label under ``labels``)."""
    own = {
        **{k: v for k, v in overrides.items() if k != "labels"},
        **overrides.get("labels", {}).get(job.label, {}),
    }
    resources = {k: own[k] for k in ("memory_mb", "cpus", "walltime_s") if k in own}
    if resources:
        job = dataclasses.replace(job, resources=dataclasses.replace(job.resources, **resources))
    if "retries" in own:
        job = dataclasses.replace(job, retry=dataclasses.replace(job.retry, retries=int(own["retries"])))
    return job


class Driver:
    """One run of a workflow through Parsl (see the module docstring)."""

    def __init__(self, submit_dir: Path, *, restart: bool = False):
        self.submit_dir = Path(submit_dir).absolute()
        self.restart = restart
        wf = load_workflow(self.submit_dir / WORKFLOW_FILE)
        overrides = read_run_record(self.submit_dir).get("overrides") or {}
        if overrides:
            wf.jobs = {name: apply_overrides(job, overrides) for name, job in wf.jobs.items()}
        self.wf = wf
        self.settings = ParslSettings.of(wf.site)
        self.classes, self.job_class = resource_classes(wf, self.settings)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.states: dict[str, dict[str, Any]] = {}
        self.futures: dict[str, Future[Any]] = {}
        jobs = list(wf.jobs.values()) + ([wf.final] if wf.final else [])
        self.jobs = {job.name: job for job in jobs}
        #: Parsl's retry budget: a failure worth retrying costs 1, one that is not costs more
        self.budget = max([self.retries_of(job) for job in jobs] + [0])

    # -- retries ---------------------------------------------------------------------------
    def retries_of(self, job: Job) -> int:
        return max(int(job.retry.retries), 0)

    def no_retry_codes(self, job: Job) -> set[int]:
        codes = set(job.retry.no_retry_exit_codes) - {exit_codes.SUCCESS}
        if self.wf.final is not None and job.name == self.wf.final.name:
            codes |= set(FINAL_OUTCOMES)
        return codes

    def retry_cost(self, exc: Exception, task_record: Any) -> float:
        """Parsl's retry handler: 1 if the failed attempt should be retried, else more than the budget."""
        job = self.jobs.get(task_record["kwargs"].get("job_name", ""))
        code = getattr(exc, "exitcode", None)
        if job is None or task_record["fail_count"] > self.retries_of(job):
            return self.budget + 1
        if code is not None and code in self.no_retry_codes(job):
            return self.budget + 1
        return 1

    # -- states ----------------------------------------------------------------------------
    def initial_states(self) -> None:
        previous = read_run_record(self.submit_dir).get("jobs", {}) if self.restart else {}
        for name in self.wf.jobs:
            info = previous.get(name, {})
            self.states[name] = (
                dict(info)
                if info.get("state") == JobState.SUCCEEDED
                else {"state": JobState.PENDING, "attempts": 0}
            )
        if self.wf.final is not None:
            self.states[self.wf.final.name] = {"state": JobState.PENDING, "attempts": 0}

    def log_file(self, job: Job) -> Path:
        return self.submit_dir / (job.log_subdir or "logs") / f"{job.name}.log"

    def on_done(self, name: str, future: Future[Any]) -> None:
        """Record a job's end (called in a Parsl thread)."""
        exc = future.exception()
        record = getattr(future, "task_record", {}) or {}
        with self.lock:
            info = self.states[name]
            info["attempts"] = int(record.get("try_id", 0)) + 1
            # the last attempt's launch and return (the HTML report's timeline bar)
            for key, field in (("start", "try_time_launched"), ("end", "try_time_returned")):
                moment = record.get(field)
                if moment is not None:
                    info[key] = moment.timestamp()
            if exc is None:
                info.update(state=JobState.SUCCEEDED, exit_code=0)
            elif type(exc).__name__ == "DependencyError":
                info.update(state=JobState.SKIPPED, attempts=0)
            else:
                code = getattr(exc, "exitcode", None)
                info.update(state=JobState.FAILED, exit_code=code)
                if code is None:
                    info["error"] = f"{type(exc).__name__}: {exc}"

    def snapshot(self, run_state: RunState = RunState.RUNNING) -> None:
        """Write the run record: each job's state, with ``running`` for a job Parsl has launched."""
        from parsl.dataflow.states import States

        launched = {States.launched, States.running, States.running_ended}
        with self.lock:
            for name, future in self.futures.items():
                info = self.states[name]
                if future.done() or info["state"] not in (JobState.PENDING, JobState.RUNNING):
                    continue
                record = getattr(future, "task_record", None) or {}
                status = record.get("status")
                info["state"] = JobState.RUNNING if status in launched else JobState.PENDING
                if status in launched:
                    info["attempts"] = int(record.get("try_id", 0)) + 1
            jobs = {name: dict(info) for name, info in self.states.items()}
        write_run_record(self.submit_dir, state=run_state, jobs=jobs)

    # -- the run ---------------------------------------------------------------------------
    def run(self, run_id: str) -> int:
        """Run the workflow to its end (or a cancel); return the exit status of the process."""
        import parsl
        from parsl.app.app import bash_app

        from .config import parsl_config

        self.initial_states()
        write_run_record(
            self.submit_dir,
            wms="parsl",
            run_id=run_id,
            state=RunState.STARTING,
            jobs=self.states,
            **this_process(),
        )
        config = parsl_config(
            self.classes,
            self.wf.site,
            self.settings,
            parsl_dir(self.submit_dir) / "runinfo",
            self.budget,
            self.retry_cost,
        )
        dfk = parsl.load(config)
        todo = sum(1 for name in self.wf.jobs if self.states[name]["state"] != JobState.SUCCEEDED)
        log.info(
            "%s: %d of %d jobs to run on %d executor(s): %s",
            run_id,
            todo,
            len(self.wf.jobs),
            len(self.classes),
            ", ".join(f"{rc.label} ({rc.workers} workers per block)" for rc in self.classes.values()),
        )
        cleaned = False
        try:
            write_state(self.submit_dir, state="running", started=True)
            apps = {label: bash_app(job_command, executors=[label]) for label in self.classes}
            for name, job in self.wf.jobs.items():
                if self.states[name]["state"] == JobState.SUCCEEDED or self.stop.is_set():
                    continue
                parents = [self.futures[p] for p in self.wf.parents.get(name, []) if p in self.futures]
                self.submit(apps[self.job_class[name]], job, parents)
            self.wait(list(self.futures.values()))
            if self.stop.is_set():
                dfk.cleanup()  # cancels the blocks: their running jobs are killed
                cleaned = True
                return self.cancelled()
            final_ok = self.run_final(apps)
            if self.stop.is_set():
                dfk.cleanup()
                cleaned = True
                return self.cancelled()
        finally:
            if not cleaned:
                dfk.cleanup()
        ok = final_ok and all(info["state"] == JobState.SUCCEEDED for info in self.states.values())
        log.info("%s: %s", run_id, "succeeded" if ok else f"failed: `bps report {self.submit_dir}`")
        self.snapshot(RunState.SUCCEEDED if ok else RunState.FAILED)
        write_state(self.submit_dir, state="ended")
        return 0 if ok else 1

    def submit(
        self, app: Any, job: Job, parents: list[Future[Any]], extra: list[str] | None = None
    ) -> Future[Any]:
        from .commands import command_line

        log_file = self.log_file(job)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        future: Future[Any] = app(
            command_line(self.wf, job, self.settings, extra),
            job_name=job.name,
            inputs=parents,
            stdout=(str(log_file), "a"),
            stderr=(str(log_file), "a"),
        )
        with self.lock:
            self.futures[job.name] = future
            self.states[job.name].update(log=str(log_file), executor=self.job_class[job.name])
        future.add_done_callback(functools.partial(self.on_done, job.name))
        return future

    def wait(self, futures: list[Future[Any]]) -> None:
        """Until every future is done or a cancel arrives, writing the run record as states change."""
        last = 0.0
        while not self.stop.is_set() and not all(f.done() for f in futures):
            if time.monotonic() - last >= RECORD_INTERVAL_S:
                self.snapshot()
                last = time.monotonic()
            self.stop.wait(0.2)
        self.snapshot()

    def run_final(self, apps: dict[str, Any]) -> bool:
        """The final job, after every other has ended, whatever their outcome."""
        final = self.wf.final
        if final is None:
            return True
        failed = sum(1 for n in self.wf.jobs if self.states[n]["state"] == JobState.FAILED)
        ended_badly = failed or any(self.states[n]["state"] == JobState.SKIPPED for n in self.wf.jobs)
        status = STATUS_FAILED if ended_badly else STATUS_OK
        extra = ["--dag-status", str(status), "--failed-count", str(failed)]
        future = self.submit(apps[self.job_class[final.name]], final, [], extra)
        self.wait([future])
        return bool(self.states[final.name]["state"] == JobState.SUCCEEDED)

    def cancelled(self) -> int:
        with self.lock:
            for info in self.states.values():
                if info["state"] in (JobState.RUNNING, JobState.PENDING):
                    info["state"] = JobState.PENDING
        write_run_record(self.submit_dir, state=RunState.CANCELLED, jobs=self.states)
        write_state(self.submit_dir, state="ended")
        log.info("cancelled: unfinished jobs are pending; `bps restart %s` runs them", self.submit_dir)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bps.wms.parsl.driver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("submit_dir", type=Path)
    parser.add_argument("--restart", action="store_true", help="run only the jobs that have not succeeded")
    parser.add_argument("--run-id", default=None)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Parsl's own detail goes to its parsl.log (in parsl/runinfo/); here only its warnings
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or not r.name.startswith("parsl"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    submit_dir = args.submit_dir.absolute()
    me = this_process()
    run_id = args.run_id or f"parsl-{me['host']}-{me['pid']}"
    write_state(
        submit_dir,
        state=RunState.STARTING,
        started=False,  # becomes true once Parsl runs and the jobs are handed to it
        run_id=run_id,
        started_at=time.time(),
        log=str(parsl_dir(submit_dir) / DRIVER_LOG),
        **me,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: cancelling the run", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        driver = Driver(submit_dir, restart=args.restart)
        driver.stop = stop
        return driver.run(run_id)
    except BaseException:
        write_run_record(submit_dir, state=RunState.FAILED)
        write_state(submit_dir, state="ended")
        raise


if __name__ == "__main__":
    sys.exit(main())
