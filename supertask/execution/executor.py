"""The single-node executor: a QuantumGraph run by N worker processes (DMTN-055 section 9.1).

Design
------
- Workers are long-lived forked processes, so a quantum does not pay for a fresh
  interpreter and imports (a fresh process per quantum makes a multi-process run of tiny tasks slower than a
  single process: interpreter start-up and imports cost more than the task).
- A quantum starts as soon as all of its parents have succeeded, not level by level.
- Workers only write files, under temporary names (`Datastore.write_temporary`). The
  main process is the registry's single writer: it registers finished quanta in
  batches, all of a batch in ONE transaction (`Registry.insertDatasetGroups`), and
  renames their files to their final names inside that transaction, after the insert
  found no registered dataset in the way. So a quantum registers whole or not at all,
  and no registered file is ever replaced. A quantum's consumers start once its
  outputs are registered (a batch is flushed at once when workers would otherwise idle).
- Outputs registered before the run starts are skipped, clobbered or refused up front
  (`existing_outputs`), and a RUN made with another pipeline or config is refused.
- A quantum that exceeds ``timeout`` has its worker killed and replaced; so does a
  worker that dies (the signal is named: a segfault is not an out-of-memory kill).
- Workers die with the main process: each closes the pipe ends it does not use (so its
  ``recv`` sees EOF), asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``),
  and otherwise checks its parent's pid while it waits.
- SIGINT / SIGTERM: workers are stopped, what finished is registered, and the run
  can be completed later with skip-existing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..options import RunOptions, from_keywords
from ..quantum import Quantum
from ..repo.dataid import DataId
from ..signal_names import describe_signal, signal_of_exit_code
from ..states import QuantumState
from .existing_outputs import classify_existing
from .quantum_butler import QuantumButler
from .schema_outputs import check_schemas, graph_schemas, write_schemas
from .single_quantum import QuantumOutcome, run_quantum, tail, without_missing_inputs

_LOG = logging.getLogger("supertask.execution")

#: per-label states counted in the summary, in display order
STATES: tuple[QuantumState, ...] = tuple(s for s in QuantumState if s is not QuantumState.RUNNING)


@dataclass
class QuantumFailure:
    """One quantum that did not succeed, with what a user needs to fix it."""

    quantum_id: int
    label: str
    dataId: DataId
    reason: str
    log_file: str | None = None
    log_tail: str = ""


@dataclass(slots=True)
class QuantumRecord:
    """When one quantum ran and how much memory it used (for run reports)."""

    quantum_id: int
    label: str
    dataId: DataId
    state: str
    start: float
    end: float
    peak_memory_mb: float | None = None


@dataclass
class ExecutionResult:
    """The outcome of running a graph."""

    output_run: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[QuantumFailure] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    #: every quantum that a worker started, with its final state (epoch-second times)
    quanta: list[QuantumRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every quantum succeeded, found no work, or was already done."""
        if self.interrupted:
            return False
        return all(
            c[QuantumState.FAILED] == 0
            and c[QuantumState.TIMED_OUT] == 0
            and c[QuantumState.SKIPPED_UPSTREAM] == 0
            and c[QuantumState.NOT_RUN] == 0
            for c in self.counts.values()
        )

    def total(self, state: str) -> int:
        """Number of quanta in ``state`` over all labels."""
        return sum(c[state] for c in self.counts.values())


# --------------------------------------------------------------------------- workers
_WORKER_STATE: dict[str, Any] = {}


def _worker_main(conn: Connection, parent_pid: int) -> None:
    """Worker loop: receive a quantum, run it, send the outcome back; exit when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    # The parent's ends of every worker's pipe were inherited by the fork: holding them
    # would keep this worker's own recv from ever seeing EOF when the parent dies.
    for end in _WORKER_STATE.get("parent_ends", ()):
        try:
            end.close()
        except OSError:
            pass
    tasks = _WORKER_STATE["tasks"]
    datastore = _WORKER_STATE["datastore"]
    run = _WORKER_STATE["run"]
    locations = _WORKER_STATE["locations"]
    log_dir: Path = _WORKER_STATE["log_dir"]
    while True:
        try:
            while not conn.poll(PARENT_CHECK_SECONDS):
                if os.getppid() != parent_pid:  # the portable fallback for PR_SET_PDEATHSIG
                    os._exit(1)
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        quantum: Quantum = message
        # A datastore that can sync itself is not fsynced per file: the main process
        # syncs it once before it registers a batch (Executor._register), so registered
        # files are on disk all the same.
        butler = QuantumButler(datastore, run, locations, fsync=not hasattr(datastore, "sync"))
        log_file = log_dir / quantum.taskLabel / f"{quantum.id:07d}.log" if log_dir else None
        outcome = run_quantum(tasks[quantum.taskLabel], quantum, butler, log_file)
        conn.send(outcome)


#: how often a waiting worker checks that its parent is alive where PR_SET_PDEATHSIG is not available
PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it is dead already.

    ``prctl(PR_SET_PDEATHSIG)`` through ctypes (no dependency); elsewhere the worker
    loop's parent-pid check and EOF on the pipe do the job.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent_pid:  # died before the request took effect
        os._exit(1)


class _Worker:
    def __init__(self, ctx: Any):
        parent, child = ctx.Pipe()
        self.conn = parent
        ends = _WORKER_STATE.setdefault("parent_ends", [])
        ends.append(parent)
        self.process = ctx.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.quantum: Quantum | None = None
        self.started = 0.0
        self.started_epoch = 0.0

    def assign(self, quantum: Quantum) -> None:
        self.quantum = quantum
        self.started = time.monotonic()
        self.started_epoch = time.time()
        self.conn.send(quantum)

    def _forget(self) -> None:
        ends = _WORKER_STATE.get("parent_ends", [])
        if self.conn in ends:
            ends.remove(self.conn)
        self.conn.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2)
        self._forget()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
        else:
            self._forget()


def death_reason(exitcode: int | None) -> str:
    """Why a worker process died, naming the signal (a segfault is not an out-of-memory kill)."""
    sig = signal_of_exit_code(exitcode) if exitcode is not None else None
    if sig is not None and exitcode is not None and exitcode < 0:
        return f"worker process died: killed by {describe_signal(sig)}"
    return f"worker process died (exit code {exitcode})"


# --------------------------------------------------------------------------- executor
class MultiprocessExecutor:
    """Run a `QuantumGraph` on this machine.

    Parameters
    ----------
    butler : `Butler`
        The repository; its registry is written only by this process.
    graph : `QuantumGraph`
        The plan; each quantum's ``task`` may be set already (preflight in the same
        process), otherwise tasks are rebuilt from the graph's pipeline.
    output_run : `str`
        The RUN collection outputs go to.
    options : `RunOptions`, optional
        How to run: worker processes, timeout, fail-fast, progress, and what to do with
        outputs registered already (skip, clobber, or refuse the whole run with
        `OutputExistsError` before anything is written).
    provenance : `dict`, optional
        Recorded with the RUN; a RUN recorded with another pipeline or config is refused.
    **keywords
        Instead of ``options``: its fields as keyword arguments.
    """

    #: how many finished quanta are registered in one transaction at most
    REGISTER_BATCH = 200
    #: how long finished quanta may wait for registration (seconds)
    REGISTER_DELAY = 0.5

    def __init__(
        self,
        butler: Any,
        graph: Any,
        output_run: str,
        options: RunOptions | None = None,
        *,
        provenance: dict[str, Any] | None = None,
        **keywords: Any,
    ):
        options = from_keywords(RunOptions, options, keywords, "MultiprocessExecutor")
        self.butler = butler
        self.graph = graph
        self.output_run = output_run
        self.options = options
        self.processes = options.processes
        self.timeout = options.timeout
        self.fail_fast = options.fail_fast
        self.policy = options.policy
        self.progress = options.progress
        self.provenance = provenance or {}
        self._stop_signal: int | None = None

    # -- set-up ------------------------------------------------------------------------
    def _tasks(self) -> dict[str, Any]:
        tasks = {q.taskLabel: q.task for q in self.graph if q.task is not None}
        missing = {q.taskLabel for q in self.graph} - set(tasks)
        if missing:
            from ..pipeline import Pipeline

            pipeline = Pipeline.fromYaml(self.graph.pipelineYaml)
            # The schemas the graph was planned with, not the repository's: a RUN never mixes them.
            schemas, _ = graph_schemas(self.graph.metadata)
            for task in pipeline.makeTasks(butler=None, schemas=schemas):
                tasks.setdefault(task.label, task)
        return tasks

    def _check_run(self) -> None:
        """Refuse a RUN recorded with another pipeline or config, before anything is written."""
        from ..repo.registry import RunConflictError
        from ..repo.registry.run_provenance import mismatch_message

        getter = getattr(self.butler.registry, "getRunProvenance", None)
        if getter is None or not self.provenance:
            return
        try:
            stored = getter(self.output_run)
        except KeyError:
            return  # a new run
        refusal = mismatch_message(self.output_run, stored, self.provenance)
        if refusal:
            raise RunConflictError(refusal)

    def _register(self, outcomes: list[QuantumOutcome]) -> dict[int, str]:
        """Register and publish the outputs of finished quanta; return ``{quantum id: reason}``
        for those that could not be (their temporary files are discarded).

        All quanta of the batch go in one transaction, so each registers whole; if one
        conflicts with a registered dataset, each quantum is retried in its own
        transaction, so the others still register and only the offender fails.
        """
        outcomes = [o for o in outcomes if o.written]
        if not outcomes:
            return {}
        from ..repo.registry import ConflictingDatasetError

        # Workers write without fsync when the datastore can sync: flush all their files
        # in one call before any is registered ("a registered dataset's file is on disk").
        sync = getattr(self.butler.datastore, "sync", None)
        if sync is not None:
            sync()
        try:
            self._register_together(outcomes, sync)
            return {}
        except ConflictingDatasetError as err:
            if len(outcomes) == 1:
                self._discard(outcomes)
                return {outcomes[0].quantum_id: f"not registered: {err}"}
        failed: dict[int, str] = {}
        for outcome in outcomes:
            failed.update(self._register([outcome]))
        return failed

    def _register_together(self, outcomes: list[QuantumOutcome], sync: Callable[[], None] | None) -> None:
        registry = self.butler.registry
        datastore = self.butler.datastore
        for item in {i.datasetType.name: i for o in outcomes for i in o.written}.values():
            if item.datasetType.name not in self._registered_types:
                registry.registerDatasetType(item.datasetType)
                self._registered_types.add(item.datasetType.name)
        groups = [
            [
                (i.datasetType, {"dataId": i.dataId, "path": i.path, "size": i.size, "checksum": i.checksum})
                for i in o.written
            ]
            for o in outcomes
        ]

        def publish() -> None:
            # Inside the transaction, after the insert found nothing registered in the
            # way: only now do the files get their final names. A kill from here to the
            # commit leaves unregistered files, which the next publish replaces.
            for o in outcomes:
                for i in o.written:
                    if i.tmp_path is not None:
                        datastore.publish(i.tmp_path, i.path)
            if sync is not None:
                sync()  # the renames too must be on disk before the datasets are registered

        try:
            registry.insertDatasetGroups(self.output_run, groups, beforeCommit=publish)
        except BaseException:
            self._discard(outcomes)
            raise

    def _discard(self, outcomes: list[QuantumOutcome]) -> None:
        discard = getattr(self.butler.datastore, "discard", None)
        for o in outcomes:
            for i in o.written:
                if i.tmp_path is not None and discard is not None:
                    discard(i.tmp_path)

    # -- main loop ---------------------------------------------------------------------
    def execute(self) -> ExecutionResult:
        """Run the graph; return per-label counts and failures (never raises for task failures)."""
        start = time.perf_counter()
        graph = self.graph
        quanta: dict[int, Quantum] = {q.id: q for q in graph}
        parents = {q.id: {p.id for p in graph.parents(q)} for q in graph}
        children = {q.id: [c.id for c in graph.children(q)] for q in graph}
        result = ExecutionResult(self.output_run)
        labels = list(dict.fromkeys(q.taskLabel for q in graph))
        result.counts = {label: dict.fromkeys(STATES, 0) for label in labels}

        registry = self.butler.registry
        self._registered_types: set[str] = set()
        # Everything that could refuse the run does so before anything is written.
        self._check_run()
        schemas, written = graph_schemas(graph.metadata)
        output_schemas = {name: schemas[name] for name in written}
        check_schemas(self.butler, self.output_run, output_schemas)
        existing = classify_existing(graph, registry, self.output_run, self.policy)
        registry.registerRun(self.output_run, provenance=self.provenance)
        # The run's schemas, once, before any quantum (a rerun into the RUN writes nothing).
        for name in write_schemas(self.butler, self.output_run, output_schemas):
            _LOG.info("recorded the schema of %s in %s", name, self.output_run)
        if existing.clobber:
            registry.removeDatasets(existing.clobber)
            _LOG.info("unregistered %d outputs in the way (--clobber-outputs)", len(existing.clobber))
        state: dict[int, QuantumState] = {q.id: QuantumState.SKIPPED_EXISTING for q in existing.skipped}
        waiting = {
            qid: len([p for p in ps if state.get(p) != QuantumState.SKIPPED_EXISTING])
            for qid, ps in parents.items()
        }
        ready = deque(sorted(qid for qid in quanta if qid not in state and waiting[qid] == 0))
        log_dir = Path(self.butler.datastore.root) / self.output_run / "logs"
        _WORKER_STATE.update(
            tasks=self._tasks(),
            datastore=self.butler.datastore,
            run=self.output_run,
            locations={**_input_locations(self.butler, graph), **_found_locations(registry, existing.found)},
            log_dir=log_dir,
        )
        ctx = multiprocessing.get_context("fork")
        workers = [_Worker(ctx) for _ in range(min(self.processes, max(1, len(quanta))))]
        pending_registration: list[QuantumOutcome] = []
        last_flush = time.monotonic()
        stopping = False
        #: outputs that will never exist because their quantum found no work
        missing: set[tuple[str, DataId]] = set()
        #: quantum id -> (start, end, peak memory MB) of each quantum a worker started
        timings: dict[int, tuple[float, float, float | None]] = {}

        def release(qid: int) -> None:
            for child in children[qid]:
                waiting[child] -= 1
                if waiting[child] == 0 and child not in state:
                    ready.append(child)

        def no_work(qid: int) -> None:
            state[qid] = QuantumState.NO_WORK
            missing.update(d.key for d in quanta[qid].iterOutputs())
            release(qid)

        def flush() -> None:
            """Register the pending quanta (one transaction), then release their consumers."""
            batch = list(pending_registration)
            pending_registration.clear()
            failed = self._register(batch)
            for outcome in batch:
                qid = outcome.quantum_id
                if qid not in failed:
                    release(qid)
                    continue
                q = quanta[qid]
                state[qid] = QuantumState.FAILED
                result.failures.append(
                    QuantumFailure(qid, q.taskLabel, q.dataId, failed[qid], outcome.log_file, "")
                )
                mark_descendants(qid)

        def mark_descendants(qid: int) -> None:
            stack = list(children[qid])
            while stack:
                child = stack.pop()
                if child not in state:
                    state[child] = QuantumState.SKIPPED_UPSTREAM
                    result.failures.append(
                        QuantumFailure(
                            child,
                            quanta[child].taskLabel,
                            quanta[child].dataId,
                            f"not run: upstream quantum {qid} ({quanta[qid].taskLabel} "
                            f"{quanta[qid].dataId!r}) did not succeed",
                        )
                    )
                    stack.extend(children[child])

        def finish(worker: _Worker, outcome: QuantumOutcome | None, reason: str | None) -> None:
            nonlocal stopping
            q = worker.quantum
            worker.quantum = None
            assert q is not None and q.id is not None  # a busy worker holds a quantum of the graph
            if outcome is not None:
                timings[q.id] = (outcome.started, outcome.started + outcome.seconds, outcome.peak_memory_mb)
            else:
                timings[q.id] = (worker.started_epoch, time.time(), None)
            if outcome is not None and outcome.ok:
                # its consumers are released once its outputs are registered (flush below)
                state[q.id] = QuantumState.SUCCEEDED
                pending_registration.append(outcome)
                return
            if outcome is not None and outcome.no_work:
                no_work(q.id)
                return
            timed_out = reason is not None and reason.startswith("timed out")
            state[q.id] = QuantumState.TIMED_OUT if timed_out else QuantumState.FAILED
            log_file = outcome.log_file if outcome else None
            if log_file is None:
                candidate = log_dir / q.taskLabel / f"{q.id:07d}.log"
                log_file = str(candidate) if candidate.exists() else None
            message = reason or (outcome.error.splitlines()[-1] if outcome and outcome.error else "failed")
            result.failures.append(
                QuantumFailure(q.id, q.taskLabel, q.dataId, message, log_file, tail(log_file))
            )
            mark_descendants(q.id)
            if self.fail_fast:
                stopping = True

        previous_handlers = self._install_signal_handlers()
        try:
            while True:
                if self._stop_signal is not None:
                    result.interrupted = True
                    stopping = True
                while not stopping and ready:
                    idle = next((w for w in workers if w.quantum is None), None)
                    if idle is None:
                        break
                    qid = ready.popleft()
                    if qid in state:
                        continue
                    quantum, _ = without_missing_inputs(quanta[qid], missing)
                    if quantum is None:
                        no_work(qid)
                        continue
                    state[qid] = QuantumState.RUNNING
                    idle.assign(quantum)
                busy = [w for w in workers if w.quantum is not None]
                if not busy:
                    if pending_registration and not stopping:
                        flush()  # their consumers may be all that is left to run
                        last_flush = time.monotonic()
                        continue
                    break
                if stopping and (self._stop_signal is not None or self.fail_fast):
                    for w in busy:
                        q = w.quantum
                        w.kill()
                        if q is not None and q.id is not None:
                            state[q.id] = QuantumState.NOT_RUN
                        w.quantum = None
                    workers = [w for w in workers if w.quantum is not None or w.process.is_alive()]
                    break
                wait_for = 0.2
                if self.timeout is not None:
                    now = time.monotonic()
                    wait_for = min(wait_for, max(0.0, min(w.started + self.timeout - now for w in busy)))
                ready_conns = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], wait_for)
                for w in busy:
                    if w.conn in ready_conns:
                        try:
                            outcome = w.conn.recv()
                        except (EOFError, OSError):
                            outcome = None
                        if outcome is not None:
                            finish(w, outcome, None)
                            continue
                    if w.process.sentinel in ready_conns and not w.process.is_alive():
                        finish(w, None, death_reason(w.process.exitcode))
                        w.kill()
                        workers[workers.index(w)] = _Worker(ctx)
                        continue
                    if self.timeout is not None and w.quantum is not None:
                        if time.monotonic() - w.started > self.timeout:
                            w.kill()
                            finish(w, None, f"timed out after {self.timeout:g} s")
                            workers[workers.index(w)] = _Worker(ctx)
                anyIdle = any(w.quantum is None for w in workers)
                if pending_registration and (
                    len(pending_registration) >= self.REGISTER_BATCH
                    or time.monotonic() - last_flush > self.REGISTER_DELAY
                    or (anyIdle and not ready)  # consumers wait for these outputs: do not batch
                ):
                    flush()
                    last_flush = time.monotonic()
                if self.progress is not None:
                    self.progress(_tally(state, len(quanta)))
        finally:
            for w in workers:
                if w.quantum is not None:
                    w.kill()
                    if w.quantum.id is not None:
                        state[w.quantum.id] = QuantumState.NOT_RUN
                else:
                    w.stop()
            flush()
            self._restore_signal_handlers(previous_handlers)
            _WORKER_STATE.clear()
        for qid, q in quanta.items():
            s = state.get(qid, QuantumState.NOT_RUN)
            if s == QuantumState.RUNNING:
                s = QuantumState.NOT_RUN
            result.counts[q.taskLabel][s] += 1
            if qid in timings:
                result.quanta.append(QuantumRecord(qid, q.taskLabel, q.dataId, s, *timings[qid]))
        if self.progress is not None:
            self.progress(_tally(state, len(quanta)))
        result.seconds = time.perf_counter() - start
        return result

    # -- signals -----------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if multiprocessing.current_process().name != "MainProcess":
            return previous
        try:
            import threading

            if threading.current_thread() is not threading.main_thread():
                return previous
        except Exception:  # pragma: no cover
            return previous

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is None:
                print(
                    f"\nstopping on signal {signal.Signals(signum).name}: running quanta are terminated, "
                    "finished outputs registered; rerun with --skip-existing to complete",
                    file=sys.stderr,
                )
            self._stop_signal = signum

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    @property
    def stop_signal(self) -> int | None:
        """The signal that interrupted the run, if any."""
        return self._stop_signal


def _tally(state: dict[int, QuantumState], total: int) -> dict[str, int]:
    counts = {"done": 0, "failed": 0, "running": 0, "remaining": 0, "total": total}
    for s in state.values():
        if s in (QuantumState.SUCCEEDED, QuantumState.SKIPPED_EXISTING, QuantumState.NO_WORK):
            counts["done"] += 1
        elif s == QuantumState.RUNNING:
            counts["running"] += 1
        elif s in (QuantumState.FAILED, QuantumState.TIMED_OUT, QuantumState.SKIPPED_UPSTREAM):
            counts["failed"] += 1
    counts["remaining"] = total - counts["done"] - counts["failed"] - counts["running"]
    return counts


def _input_locations(butler: Any, graph: Any) -> dict[tuple[str, DataId], str]:
    """Paths of the graph's overall inputs, looked up once so workers need no registry."""
    registry = butler.registry
    locate = getattr(registry, "getDatasetLocations", None)
    inputs = [d for d in graph.initialInputs() if d.id is not None]
    if locate is not None:
        return {d.key: path for d, path in zip(inputs, locate(inputs), strict=True)}
    single = getattr(registry, "getDatasetLocation", None)
    if single is None:
        return {}
    result = {}
    for d in inputs:
        location = single(d)
        path = location[0] if isinstance(location, tuple) else getattr(location, "path", location)
        result[d.key] = path
    return result


def _found_locations(registry: Any, found: dict[tuple[str, DataId], Any]) -> dict[tuple[str, DataId], str]:
    """Registered paths of the outputs of skipped quanta, which their consumers read."""
    datasets = [d for d in found.values() if getattr(d, "id", None) is not None]
    locate = getattr(registry, "getDatasetLocations", None)
    if not datasets or locate is None:
        return {}
    return {d.key: path for d, path in zip(datasets, locate(datasets), strict=True)}


def default_process_count() -> int:
    """Worker processes to use when the user does not say: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
