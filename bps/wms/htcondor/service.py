"""`HTCondorService`: prepare, submit, report, restart and cancel DAGMan runs.

``htcondor2`` is imported only by `submit`, `restart` and `cancel`: preparing and
reporting work on machines without HTCondor, and a directory prepared there can be
submitted later from an access point with ``bps submit SUBMIT_DIR``.

The run record follows what DAGMan did, not what was asked of it: a submission is
recorded once the schedd accepted the DAGMan job, and `submit` then waits (up to
`HTCondorService.startup_wait_s`) until DAGMan has read the DAG, so that a DAG it
refuses is an error with DAGMan's own words, not "submitted". A restart checks
everything it can before it rewrites a file, and puts the previous files back if
the submission fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supertask.states import RunState

from ...job_environment import JobEnvironment
from ...slices import refresh_job_slices
from ...workflow import GenericWorkflow, SiteConfig
from ...workflow_io import load_workflow, save_workflow
from ..base import (
    RunReport,
    WmsError,
    WmsUnavailableError,
    WorkflowService,
    read_run_record,
    write_run_record,
)
from . import dagman as dm
from . import overrides as overrides_mod
from .checks import check_site, check_workflow, job_user_warnings, skipped
from .eventlog import NodeHistory, read_event_log
from .layout import DagLayout, find_dag
from .report import BPS_CANCEL, build_report, current_run
from .translator import FINAL_NODE, NodeOverrides, job_environment, node_names, write_dag

log = logging.getLogger("bps.wms.htcondor")


@dataclass
class _RestartPlan:
    """Everything a restart will write, computed (and checked) before anything is written."""

    layout: DagLayout
    workflow: GenericWorkflow
    grown: dict[str, int]
    overrides: dict[str, Any]


class HTCondorService(WorkflowService):
    """HTCondor DAGMan as a `WorkflowService`."""

    name = "htcondor"
    #: How long `submit` waits for DAGMan to read the DAG (or refuse it) before returning.
    startup_wait_s: float = 60.0
    #: Seconds between two looks at DAGMan's files while waiting.
    poll_s: float = 0.5
    #: How long `cancel` waits at most for DAGMan to show it saw the halt file (it never waits
    #: for DAGMan to end: the FINAL node may wait for a slot).
    cancel_wait_s: float = 30.0

    # -- prepare ---------------------------------------------------------------------------
    def precheck(self, site: SiteConfig, submit_dir: Path) -> None:
        _refuse(site, check_site(site, Path(submit_dir).absolute()))

    def job_environment(self, site: SiteConfig) -> JobEnvironment | None:
        """What the submit files give jobs (``task_imports`` in ``condor.skip_checks``: not checked)."""
        return None if "task_imports" in skipped(site) else job_environment(site)

    def prepare(self, workflow: GenericWorkflow, *, save: bool = True) -> Path:
        """Write the DAG and its submit files; ``save=False``: the caller writes ``workflow.json``."""
        submit_dir = Path(workflow.submit_dir).absolute()
        submit_dir.mkdir(parents=True, exist_ok=True)
        _refuse(workflow.site, check_workflow(workflow, submit_dir))
        warnings = job_user_warnings(workflow, submit_dir)
        for warning in warnings:
            log.warning("%s", warning)
        layout = DagLayout.of(submit_dir, workflow.name)
        if save and not layout.workflow_json.exists():
            save_workflow(workflow, layout.workflow_json)
        try:
            write_dag(workflow, submit_dir)
        except ValueError as exc:
            raise WmsError(str(exc)) from exc
        write_run_record(
            submit_dir,
            wms=self.name,
            state=RunState.PREPARED,
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
        _refuse_if_active(layout, record, "submitting again")
        htcondor2 = _import_htcondor()
        problems = job_user_warnings(load_workflow(layout.workflow_json), layout.submit_dir)
        if problems:
            raise WmsError("cannot submit: " + " ".join(problems))
        return str(self._submit_and_follow(htcondor2, layout, record))

    def _submit_and_follow(self, htcondor2: Any, layout: DagLayout, record: dict[str, Any]) -> int:
        offset = _size(layout.dagman_out)
        cluster = _submit_dag(htcondor2, layout)
        submitted_at = time.time()
        history = record.get("submissions", []) + [{"cluster_id": cluster, "time": submitted_at}]
        write_run_record(layout.submit_dir, cluster_id=cluster, state=RunState.SUBMITTED, submissions=history)
        self._follow(layout, cluster, submitted_at, layout.dag.name, offset)
        return cluster

    def _follow(
        self, layout: DagLayout, cluster: int, submitted_at: float, what: str, offset: int = 0
    ) -> None:
        """Wait until DAGMan ``cluster`` has read the DAG; raise `WmsError` with DAGMan's own
        error lines if it refused it (the run record then says ``failed`` and keeps them)."""
        run = self._await_dagman(layout, cluster, submitted_at, offset)
        if run is None:
            log.warning(
                "DAGMan job %s has not started reading %s within %.0f s (the schedd may be busy): "
                "follow it with `bps report %s`",
                cluster,
                layout.dag.name,
                self.startup_wait_s,
                layout.submit_dir,
            )
            return
        if run.refused or (run.ended and run.section is None and (run.exit_status or 0) != 0):
            errors = run.errors or _lib_err(layout) or [f"see {layout.dagman_out}"]
            write_run_record(layout.submit_dir, state=RunState.FAILED, dagman_errors=errors)
            raise WmsError(
                f"DAGMan job {cluster} refused {what} and exited with status {run.exit_status}: "
                f"{'; '.join(errors[:3])} (from {layout.dagman_out.name}); nothing ran. "
                f"Fix the DAG, then `bps submit {layout.submit_dir}`."
            )

    def _await_dagman(
        self, layout: DagLayout, cluster: int, since: float, offset: int = 0
    ) -> dm.DagmanRun | None:
        """DAGMan ``cluster`` once it has read the DAG or ended; None if neither within the wait.

        ``offset``: the size of ``.dagman.out`` before the submission (the new DAGMan appends).
        """
        deadline = time.monotonic() + self.startup_wait_s
        while True:
            run = dm.dagman_run(layout, cluster, since, offset)
            if run.ended or (run.section is not None and run.section.parsed):
                return run
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)

    # -- report ----------------------------------------------------------------------------
    def report(self, submit_dir: Path) -> RunReport:
        try:
            return build_report(submit_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise WmsError(str(exc)) from exc

    # -- restart ---------------------------------------------------------------------------
    def restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> str:
        """Check, rewrite the DAG, submit; on a failed submission the previous files come back.

        The run record changes only once the schedd accepted the DAGMan job.
        """
        layout = find_dag(submit_dir)
        htcondor2 = _import_htcondor()
        plan = self._plan_restart(layout, overrides, _schedd_or_none(htcondor2))
        saved = _snapshot(_restart_files(layout))
        offset = _size(layout.dagman_out)
        try:
            _write_restart(plan)
            _remove_stale_lock(layout, read_run_record(layout.submit_dir))
            cluster = _submit_dag(htcondor2, layout)
        except WmsUnavailableError as exc:
            _restore(saved)
            raise WmsUnavailableError(
                f"{str(exc).split(' The submit directory')[0]} Nothing was changed: run "
                f"`bps restart {layout.submit_dir}` on an HTCondor access point."
            ) from exc
        except BaseException:
            _restore(saved)
            raise
        record = read_run_record(layout.submit_dir)
        submitted_at = time.time()
        write_run_record(
            layout.submit_dir,
            restarts=_restarts(record, plan),
            prepared_at=submitted_at,
            cluster_id=cluster,
            state=RunState.SUBMITTED,
            submissions=record.get("submissions", []) + [{"cluster_id": cluster, "time": submitted_at}],
        )
        self._follow(layout, cluster, submitted_at, f"the restarted {layout.dag.name}", offset)
        return str(cluster)

    def prepare_restart(self, submit_dir: Path, overrides: dict[str, Any] | None = None) -> DagLayout:
        """Rewrite the DAG for a restart (the rescue DAG then marks what is done); submit nothing.

        Memory a node grew to on retries becomes its new base request (otherwise a restarted
        node forgets it and fails the same way again), and ``overrides`` change resources
        and retries (what made the run fail can be changed on restart). Node names stay the
        same, so DAGMan's rescue file still applies.
        """
        layout = find_dag(submit_dir)
        plan = self._plan_restart(layout, overrides)
        _write_restart(plan)
        record = read_run_record(layout.submit_dir)
        write_run_record(
            layout.submit_dir,
            state=RunState.PREPARED,
            prepared_at=time.time(),
            restarts=_restarts(record, plan),
        )
        return layout

    def _plan_restart(
        self, layout: DagLayout, overrides: dict[str, Any] | None, schedd: Any | None = None
    ) -> _RestartPlan:
        """Every check of a restart, and what it will write; writes nothing.

        With a ``schedd``, a node held for memory by a policy whose hold reason names no
        numbers gets its usage from the schedd's history of its last job.
        """
        record = read_run_record(layout.submit_dir)
        _refuse_if_active(layout, record, "a restart")
        if not layout.rescue_files():
            state = build_report(layout.submit_dir).state
            raise WmsError(
                f"{layout.submit_dir} has no rescue DAG (run state: {state}): nothing failed that a "
                "restart could rerun"
                + ("" if state != RunState.PREPARED else "; use `bps submit` for a first submission")
            )
        workflow = load_workflow(layout.workflow_json)
        try:
            overrides_mod.apply(workflow, overrides)
        except ValueError as exc:
            raise WmsError(str(exc)) from exc
        # DAGMan truncates the node log when it starts: what earlier restarts kept is in the record.
        history = read_event_log(layout.nodes_log)
        if schedd is not None:
            usage_from_schedd(schedd, history)
        grown = grown_memory(workflow, history)
        for earlier in record.get("restarts", []):
            for name, mb in (earlier.get("memory") or {}).items():
                if name in workflow.jobs and int(mb) > grown.get(name, 0):
                    grown[name] = min(int(mb), max(workflow.jobs[name].retry.memory_max_mb, int(mb)))
        problems = check_workflow(workflow, layout.submit_dir)
        if problems:
            raise WmsError("the restarted workflow cannot run on this site:\n- " + "\n- ".join(problems))
        return _RestartPlan(layout, workflow, grown, overrides or {})

    # -- cancel ----------------------------------------------------------------------------
    def cancel(self, submit_dir: Path) -> str:
        """Stop the run so that DAGMan ends by itself: halt it, remove its node jobs, return.

        Removing the DAGMan job itself (SIGUSR1) makes DAGMan 25.14 start the FINAL node
        and then still process a node job that terminated in the same second, start that
        node's child and die on ``Assertion ERROR on (! _finalNodeRun)``: no metrics, a
        lock file left. So `cancel` first creates the DAG's halt file (``<dag>.halt``:
        DAGMan submits no new node job), then removes the node jobs (not the FINAL one).
        It waits only until DAGMan has seen the halt (its ``.dagman.out`` says ``DAG
        status: 6``, or it ended; at most `cancel_wait_s`), removing node jobs it submitted
        before, so that none is left running; the halted DAGMan then writes a rescue DAG,
        runs FINAL (``DAG_STATUS`` 6) and exits without `cancel` waiting for it. A second
        `cancel` of a run still ending removes the DAGMan job itself (for a FINAL node that
        cannot start). Returns what was done and how to see when DAGMan has ended.
        """
        layout = find_dag(submit_dir)
        record = read_run_record(layout.submit_dir)
        cluster = record.get("cluster_id")
        if cluster is None:
            raise WmsError(f"{layout.submit_dir} was never submitted: there is nothing to cancel")
        run = current_run(layout, record)
        if run.ended:
            raise WmsError(
                f"DAGMan job {cluster} of {layout.submit_dir} has already ended (exit status "
                f"{run.exit_status}): there is nothing to cancel; `bps report` says how it ended"
            )
        htcondor2 = _import_htcondor()
        halt = halt_path(layout)
        if record.get("state") == RunState.CANCELLED and halt.exists():
            return self._remove_dagman(htcondor2, layout, int(cluster))
        halt.touch()
        try:
            schedd = htcondor2.Schedd()
            removed = _remove_node_jobs(htcondor2, schedd, int(cluster))
        except Exception as exc:  # htcondor2 raises its own exception types
            halt.unlink(missing_ok=True)
            raise WmsUnavailableError(
                f"cannot reach the schedd to cancel DAGMan job {cluster}: {exc}"
            ) from exc
        write_run_record(layout.submit_dir, state=RunState.CANCELLED, cancelled_at=time.time())
        removed += self._await_halt_seen(htcondor2, schedd, layout, int(cluster))
        did = f"halted DAGMan job {cluster} ({halt.name}: it submits no new job) and removed {removed} node jobs"
        run = current_run(layout, read_run_record(layout.submit_dir))
        if run.ended:
            halt.unlink(missing_ok=True)
            return (
                f"{did}; DAGMan has ended (exit status {run.exit_status}): `bps report {layout.submit_dir}`"
            )
        seen = (
            "" if run.section is not None and run.section.dag_status == 6 else " once it sees the halt file"
        )
        return (
            f"{did}; DAGMan now{seen} writes a rescue DAG, runs the final job (it registers what "
            f"was made) and exits. `bps report {layout.submit_dir}` says `cancelled` and when DAGMan "
            f"has ended (`condor_q {cluster}` lists it until then); `bps cancel` again removes the "
            "DAGMan job itself if its final job cannot start"
        )

    def _await_halt_seen(self, htcondor2: Any, schedd: Any, layout: DagLayout, cluster: int) -> int:
        """Wait until halted DAGMan ``cluster`` has seen its halt file (or ended), at most
        `cancel_wait_s`; node jobs it submitted before are removed as they appear. Returns
        how many node jobs were removed."""
        deadline = time.monotonic() + self.cancel_wait_s
        record = read_run_record(layout.submit_dir)
        removed = 0
        while True:
            run = current_run(layout, record)
            if run.ended or (run.section is not None and run.section.dag_status == 6):
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "DAGMan job %s has not shown that it saw the halt file within %.0f s; it will when "
                    "it next looks (`bps report` follows it)",
                    cluster,
                    self.cancel_wait_s,
                )
                break
            time.sleep(self.poll_s)
            with contextlib.suppress(Exception):  # best effort: the next look tries again
                removed += _remove_node_jobs(htcondor2, schedd, cluster)
        with contextlib.suppress(Exception):  # submitted in the cycle in which DAGMan saw it
            removed += _remove_node_jobs(htcondor2, schedd, cluster)
        return removed

    def _remove_dagman(self, htcondor2: Any, layout: DagLayout, cluster: int) -> str:
        """Remove a halted DAGMan job that has not ended (its FINAL node could not run)."""
        try:
            htcondor2.Schedd().act(htcondor2.JobAction.Remove, f"ClusterId == {cluster}", "bps cancel")
        except Exception as exc:  # htcondor2 raises its own exception types
            raise WmsUnavailableError(
                f"cannot reach the schedd to remove DAGMan job {cluster}: {exc}; the run is halted: "
                f"`condor_rm {cluster}` ends it"
            ) from exc
        halt_path(layout).unlink(missing_ok=True)
        return (
            f"DAGMan job {cluster} was already cancelled and had not ended: removed it (its final job "
            f"may not have run); `bps report {layout.submit_dir}` says what was done"
        )


def halt_path(layout: DagLayout) -> Path:
    """DAGMan's halt file: while it exists, DAGMan submits no new node job (only FINAL)."""
    return layout.submit_dir / f"{layout.dag.name}.halt"


def _remove_node_jobs(htcondor2: Any, schedd: Any, cluster: int) -> int:
    """Remove DAGMan ``cluster``'s node jobs that are still queued, except the FINAL node's;
    returns how many there were."""
    constraint = (
        f'DAGManJobId == {cluster} && DAGNodeName =!= "{FINAL_NODE}" && JobStatus != 3 && JobStatus != 4'
    )
    queued = list(schedd.query(constraint, ["ClusterId"]))
    if queued:
        # A (reason, code) pair: htcondor2 25.14 drops a reason given as a plain string.
        schedd.act(htcondor2.JobAction.Remove, constraint, (f"{BPS_CANCEL}: the run was cancelled", None))
    return len(queued)


# -- restart helpers -------------------------------------------------------------------------


def grown_memory(workflow: GenericWorkflow, history: dict[str, NodeHistory]) -> dict[str, int]:
    """Job name -> memory (MB) its next attempt needs, when above its request.

    The largest request a node reached (its terminations, the slot it was matched to, a
    hold reason that names the request). If its last attempt ended in a memory hold
    (held, or removed while so held: a removed job has no termination event), that was
    not enough: the next attempt asks for ``memory_multiplier`` times it (or times the
    usage, when the hold reason names it). Never above the job's ``memory_max_mb``.
    """
    names = node_names(workflow.jobs)
    grown = {}
    for name, job in workflow.jobs.items():
        hist = history.get(names[name])
        if hist is None:
            continue
        cap = max(job.retry.memory_max_mb, job.resources.memory_mb)
        reached = hist.memory_grown_to_mb
        if hist.memory_exceeded:
            factor = job.retry.memory_multiplier
            reached = max(
                int(max(reached, job.resources.memory_mb) * factor), int(hist.memory_usage_mb * factor)
            )
        reached = min(reached, cap)
        if reached > job.resources.memory_mb:
            grown[name] = reached
    return grown


def usage_from_schedd(schedd: Any, history: dict[str, NodeHistory]) -> None:
    """Fill in the memory usage of nodes whose last job was held for memory without saying how much.

    A startd policy (``HOLD_IF_MEMORY_EXCEEDED``: "memory usage exceeded request_memory")
    names no numbers and writes no termination event; the schedd (queue, then history)
    still has the job's ``ResidentSetSize`` (KiB). Best effort: a schedd that cannot be
    asked changes nothing.
    """
    for hist in history.values():
        if not hist.memory_exceeded or hist.memory_usage_mb or not hist.clusters:
            continue
        constraint, projection = f"ClusterId == {hist.clusters[-1]}", ["ResidentSetSize", "MemoryUsage"]
        try:
            ads = list(schedd.query(constraint, projection)) or list(
                schedd.history(constraint, projection, match=1)
            )
        except Exception:  # htcondor2 raises its own types; the history may be unreadable
            continue
        for ad in ads[:1]:
            rss = ad.get("ResidentSetSize")
            if isinstance(rss, int) and rss > 0:
                hist.memory_usage_mb = max(hist.memory_usage_mb, (rss + 1023) // 1024)


def _schedd_or_none(htcondor2: Any) -> Any | None:
    try:
        return htcondor2.Schedd()
    except Exception:  # no schedd: the restart's submission will say so
        return None


def _write_restart(plan: _RestartPlan) -> None:
    # A graph fixed in place since the first submission: the jobs must be shipped its records.
    refresh_job_slices(plan.workflow)
    save_workflow(plan.workflow, plan.layout.workflow_json)
    write_dag(plan.workflow, plan.layout.submit_dir, NodeOverrides(memory_mb=plan.grown))


def _restarts(record: dict[str, Any], plan: _RestartPlan) -> list[dict[str, Any]]:
    earlier: list[dict[str, Any]] = record.get("restarts", [])
    return earlier + [{"time": time.time(), "overrides": plan.overrides, "memory": plan.grown}]


def _restart_files(layout: DagLayout) -> list[Path]:
    """What a restart rewrites (the DAG, the submit descriptions and scripts, the workflow)."""
    files = {layout.dag, layout.workflow_json, layout.config, layout.post_script, layout.final_submit_file}
    files.add(layout.submit_dir / f"{layout.dag.name}.condor.sub")
    files.update(p for p in layout.submit_dir.glob("*.sub"))
    return sorted(files)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _snapshot(paths: list[Path]) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.exists() else None) for p in paths}


def _restore(saved: dict[Path, bytes | None]) -> None:
    for path, data in saved.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)


def _remove_stale_lock(layout: DagLayout, record: dict[str, Any]) -> None:
    """A DAGMan that died (e.g. an assertion after a cancel) leaves its lock file; DAGMan would
    then start in recovery mode, replaying the old run's events instead of the rescue DAG."""
    lock = dm.lock_path(layout)
    if lock.exists() and current_run(layout, record).ended:
        log.info("removing %s left by DAGMan job %s, which has ended", lock.name, record.get("cluster_id"))
        lock.unlink()


def _refuse_if_active(layout: DagLayout, record: dict[str, Any], what: str) -> None:
    """Refuse ``what`` while the recorded DAGMan job may still run."""
    cluster = record.get("cluster_id")
    if cluster is None:
        return
    run = current_run(layout, record)
    if run.ended:
        return
    if not run.job.submitted and run.section is None and _in_queue(int(cluster)) is False:
        return  # no file knows it, and the schedd has no such job: it is long gone
    after_cancel = " (it was cancelled and is still ending: DAGMan runs the final job)"
    raise WmsError(
        f"the run in {layout.submit_dir} is still active: it was submitted as DAGMan job {cluster} "
        "and has not finished"
        + (after_cancel if record.get("state") == RunState.CANCELLED else "")
        + f": follow it with `bps report`, or `bps cancel` it, before {what}"
    )


def _in_queue(cluster: int) -> bool | None:
    """Whether the schedd holds job ``cluster``; None when it cannot be asked."""
    try:
        import htcondor2

        return bool(htcondor2.Schedd().query(f"ClusterId == {cluster}", ["ClusterId"]))
    except Exception:  # no bindings, no pool: unknown
        return None


def _lib_err(layout: DagLayout) -> list[str]:
    """The last lines DAGMan wrote to its standard error (``<dag>.lib.err``)."""
    path = layout.submit_dir / f"{layout.dag.name}.lib.err"
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()][-3:]


# -- talking to HTCondor ---------------------------------------------------------------------


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
    """Submit the DAG from inside its submit directory; return the DAGMan job's cluster.

    The DAG's relative names (``CONFIG dagman.config``, submit files) are resolved
    against the working directory, so it is the submit directory wherever bps was
    started. A DAG that cannot be made into a DAGMan job is a `WmsError` with HTCondor's
    own message; only a schedd that cannot be reached is `WmsUnavailableError`.
    """
    unusable = (
        f"The submit directory {layout.submit_dir} is prepared and stays usable: run "
        f"`bps submit {layout.submit_dir}` on an HTCondor access point."
    )
    if shutil.which("condor_dagman") is None:
        raise WmsUnavailableError(f"HTCondor's condor_dagman is not on PATH here. {unusable}")
    options: dict[str, Any] = {"batch-name": layout.name}
    if (layout.submit_dir / f"{layout.dag.name}.condor.sub").exists():
        # Re-submission (restart): rewrite DAGMan's own submit file but keep the rescue DAG
        # (`force` would rename rescue DAGs away and rerun everything).
        options["update_submit"] = True
    # A halt file left by an interrupted `bps cancel` would halt the new DAGMan at once.
    halt_path(layout).unlink(missing_ok=True)
    failure: Exception | None = None
    with _in_directory(layout.submit_dir):
        with _captured_output() as said:
            try:
                submit = htcondor2.Submit.from_dag(str(layout.dag), options)
            except Exception as exc:  # htcondor2 raises HTCondorException and friends
                failure = exc
        if failure is not None:
            message = " ".join(line.strip() for line in said.text.splitlines() if line.strip())
            raise WmsError(
                f"HTCondor cannot make a DAGMan job of {layout.dag.name}: {message or failure} ({failure})"
            ) from failure
        if said.text:
            sys.stdout.write(said.text)
        try:
            schedd = htcondor2.Schedd()
            result = schedd.submit(submit)
        except Exception as exc:  # htcondor2 raises HTCondorException and friends
            raise WmsUnavailableError(
                f"cannot reach the schedd to submit the DAG ({exc}). {unusable}"
            ) from exc
    return int(result.cluster())


@contextlib.contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class _Captured:
    text = ""


@contextlib.contextmanager
def _captured_output() -> Iterator[_Captured]:
    """What the HTCondor library prints (its ``ERROR:`` lines) to file descriptors 1 and 2."""
    captured = _Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as tmp:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            _flush_c_stdio()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _refuse(site: SiteConfig, problems: list[str]) -> None:
    if problems:
        raise WmsError(
            f"site {site.name!r} cannot run this workflow on HTCondor:\n- " + "\n- ".join(problems)
        )
