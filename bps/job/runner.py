"""`run_job`: the quanta of one batch job, in dependency order, each through the core runner.

For each quantum: stage its inputs in (`stage.Staging`), apply the core's no-work rule
and run it with `supertask.execution.single_quantum.run_quantum` through a
`QuantumButler` over the job's scratch directory (no registry), stage its outputs out,
and record it in the job's manifest. Within a job, a failed quantum stops only the
quanta that need its outputs; the job still stages the rest and exits with the
failure's code (`JobResult.exit_code`). A rerun skips the quanta its manifest records
with intact files; a job whose quanta are all recorded does not even read the graph.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supertask.execution.quantum_butler import QuantumButler
from supertask.execution.single_quantum import run_quantum, without_missing_inputs
from supertask.gc_pause import gc_paused

from .. import exit_codes
from ..fs import remove_tree
from ..staging import (
    Manifest,
    StagedFile,
    file_matches,
    make_scratch,
    manifest_path,
    read_manifest,
    write_manifest,
)
from ..usage import QuantumUsage, append_usage, usage_log_path
from .backend import Backend, Store, SupertaskBackend
from .placement import Placement
from .stage import Staging

log = logging.getLogger("bps.run_quantum")


class JobError(Exception):
    """A failure of the whole job, with the exit code that tells the workflow system whether to retry."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class JobResult:
    """What a job did, for its log and exit code: quantum ids by outcome."""

    __slots__ = ("ran", "skipped_done", "failed", "blocked", "no_work")

    def __init__(
        self,
        ran: list[int],
        skipped_done: list[int],
        failed: dict[int, int],
        blocked: list[int],
        no_work: list[int] | None = None,
    ):
        self.ran = ran
        self.skipped_done = skipped_done
        #: quantum id -> exit code
        self.failed = failed
        #: not run: an input of it failed in this job
        self.blocked = blocked
        self.no_work = no_work if no_work is not None else []

    def __repr__(self) -> str:
        return "JobResult(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def exit_code(self) -> int:
        """Failures first (a retryable one wins); else 0: a quantum with no work is an outcome, not a failure."""
        if not self.failed and not self.blocked:
            return exit_codes.SUCCESS
        codes = list(self.failed.values())
        # a retryable failure wins: a retry may then also unblock the others
        retryable = [c for c in codes if c not in exit_codes.NO_RETRY]
        return retryable[0] if retryable else codes[0] if codes else exit_codes.UNEXPECTED


def run_job(
    graph: str,
    ids: Sequence[int],
    *,
    repo: str | None,
    job: str,
    manifest_dir: str | Path,
    inputs_dir: str | Path | None = None,
    outputs_dir: str | Path | None = None,
    scratch: str | None = None,
    keep_scratch: bool = False,
    input_locations: dict[str, str] | None = None,
    input_checks: dict[str, tuple[int | None, str | None]] | None = None,
    backend: Backend | None = None,
) -> JobResult:
    """Run the quanta ``ids`` of ``graph`` with staging; see the module docstring and ``bps.run_quantum``.

    Raises
    ------
    JobError
        For failures of the whole job (graph unreadable, bad config, staging I/O).
    """
    ids = sorted(set(ids))
    if (inputs_dir is None) != (outputs_dir is None):
        raise JobError(exit_codes.USAGE, "--inputs-dir and --outputs-dir go together (transfer staging)")
    if repo is None and outputs_dir is None:
        raise JobError(
            exit_codes.USAGE, "give --repo (shared staging) or --inputs-dir/--outputs-dir (transfer)"
        )
    placement = Placement(
        inputs_dir=Path(inputs_dir).resolve() if inputs_dir is not None else None,
        outputs_dir=Path(outputs_dir).resolve() if outputs_dir is not None else None,
    )
    mpath = manifest_path(manifest_dir, job)
    try:
        manifest = read_manifest(mpath)
    except ValueError as err:
        raise JobError(exit_codes.DATA_ERROR, str(err)) from None
    done: set[int] = set()
    if manifest is not None:
        if not placement.transfer:
            placement.root = Path(manifest.root)
        done = {q for q in ids if q in manifest.quanta and _intact(placement, manifest.quanta[q])}
        if len(done) == len(ids):
            log.info("job %s: all %d quanta already staged; nothing to do", job, len(ids))
            return JobResult(ran=[], skipped_done=ids, failed={}, blocked=[])
    backend = backend or SupertaskBackend()
    # Start-up (the graph's records, the tasks, their imports) allocates what lives as long
    # as the job: the cyclic collector would walk it again and again and free nothing.
    with gc_paused():
        header, quanta = _load(backend, graph, ids)
        output_run = header.get("metadata", {}).get("output_run")
        if not output_run:
            raise JobError(exit_codes.DATA_ERROR, f"{graph}: header metadata has no output_run")
        try:
            tasks = backend.make_tasks(header, {q.taskLabel for q in quanta})
        except Exception as err:
            raise JobError(exit_codes.CONFIG_ERROR, f"cannot build the pipeline's tasks: {err}") from err
    scratch_dir = make_scratch(scratch, job)
    where = repo if repo is not None and not placement.transfer else None
    try:
        store = backend.open_store(where) if where is not None else backend.open_scratch_store(scratch_dir)
        scratch_store = backend.open_scratch_store(scratch_dir / "out")
    except FileNotFoundError as err:
        remove_tree(scratch_dir)
        raise JobError(exit_codes.MISSING_INPUT, f"repository {repo}: {err}") from err
    except Exception as err:
        remove_tree(scratch_dir)
        raise JobError(exit_codes.CONFIG_ERROR, f"cannot open the datastore of {repo}: {err}") from err
    placement.root = None if placement.transfer else Path(str(store.root)).resolve()
    root_text = placement.manifest_root()
    if manifest is None or manifest.output_run != output_run or manifest.root != root_text:
        manifest = Manifest(job=job, output_run=output_run, root=root_text)
        done = set()
    staging = Staging(
        placement,
        store,
        scratch_dir,
        output_run,
        made_here={d.key for q in quanta for d in q.iterOutputs()},
        input_locations=dict(input_locations or {}),
        input_checks=dict(input_checks or {}),
        registered=lambda d: backend.registered(str(where), d.datasetType, d.dataId, output_run),
    )
    result = JobResult(ran=[], skipped_done=sorted(done), failed={}, blocked=[])
    unavailable: set[tuple[str, Any]] = set()  # outputs of failed or blocked quanta of this job
    try:
        for quantum in quanta:
            if quantum.id in done:
                staged_keys = set()
                for f in manifest.quanta[quantum.id]:
                    key = _file_key(quantum, f)
                    if not f.tombstone:
                        staged_keys.add(key)
                        staging.locations[key] = placement.staged_file(f)
                # tombstones, and outputs a version-1 manifest left unlisted, will never exist
                staging.missing.update(d.key for d in quantum.iterOutputs() if d.key not in staged_keys)
                continue
            if any(d.key in unavailable for d in quantum.iterInputs()):
                result.blocked.append(quantum.id)
                unavailable.update(d.key for d in quantum.iterOutputs())
                log.error(
                    "quantum %s %r not run: an input of it failed in this job",
                    quantum.taskLabel,
                    quantum.dataId,
                )
                continue
            code = _run_one(quantum, tasks, staging, scratch_store, manifest, mpath)
            if code == exit_codes.SUCCESS:
                result.ran.append(quantum.id)
            elif code == exit_codes.TASK_NO_WORK:
                result.no_work.append(quantum.id)
            else:
                manifest.quanta.pop(quantum.id, None)
                manifest.usage.pop(quantum.id, None)
                result.failed[quantum.id] = code
                unavailable.update(d.key for d in quantum.iterOutputs())
    finally:
        if not keep_scratch:
            remove_tree(scratch_dir)
    return result


def _run_one(
    quantum: Any,
    tasks: dict[str, Any],
    staging: Staging,
    scratch_store: Store,
    manifest: Manifest,
    mpath: Path,
) -> int:
    """Stage in, run (the core runner) and stage out one quantum; return its exit code.

    Never raises for a task failure. ``TASK_NO_WORK`` is returned for a quantum that
    found no work (the core's rule): it is recorded in the manifest with a tombstone for
    each output, exactly as a success is recorded with its outputs.
    """
    start = time.perf_counter()
    task = tasks.get(quantum.taskLabel)
    if task is None:
        raise JobError(
            exit_codes.CONFIG_ERROR, f"the graph's pipeline has no task labelled {quantum.taskLabel!r}"
        )
    code = staging.stage_in(quantum)
    if code is not None:
        return code
    runnable, no_work = without_missing_inputs(quantum, staging.missing)
    written: dict[tuple[str, Any], Path] = {}
    usage: QuantumUsage | None = None
    if runnable is not None:
        # scratch files need no fsync: stage-out copies them, synced, to where they stay
        butler = QuantumButler(scratch_store, staging.output_run, staging.locations, fsync=False)
        outcome = run_quantum(task, runnable, butler, None)
        if outcome.peak_memory_mb is not None:
            usage = QuantumUsage(
                job=manifest.job,
                quantum=quantum.id,
                label=quantum.taskLabel,
                peak_memory_mb=round(outcome.peak_memory_mb, 1),
                wall_s=0.0,  # set once its outputs are staged out: the quantum's whole time
                started=round(outcome.started, 3),
                own_peak=outcome.peak_memory_own,
            )
        if outcome.no_work:
            no_work = f"{outcome.error_type}: {outcome.error}"
        elif not outcome.ok:
            code = exit_codes.of_failure(outcome.failure)
            if usage is not None:
                _log_usage(mpath, usage._replace(wall_s=_wall(start), exit_code=code))
            return code
        else:
            root = Path(str(scratch_store.root))
            written = {(w.datasetType.name, w.dataId): root / (w.tmp_path or w.path) for w in outcome.written}
    if no_work:
        log.info("no work for %s %r: %s", quantum.taskLabel, quantum.dataId, no_work)
    # stage out, then record: a quantum is in the manifest only with all its outputs in place
    staged = staging.stage_out(quantum, written, no_work)
    if isinstance(staged, int):
        return staged
    manifest.quanta[quantum.id] = staged
    if usage is not None:
        usage = usage._replace(wall_s=_wall(start))
        manifest.usage[quantum.id] = usage
    try:
        write_manifest(mpath, manifest)
    except OSError as err:
        log.error("writing the manifest %s failed: %s", mpath, err)
        return exit_codes.TEMPORARY
    if usage is not None:
        _log_usage(mpath, usage)
    if no_work:
        return exit_codes.TASK_NO_WORK
    log.info("done %s %r in %.3f s", quantum.taskLabel, quantum.dataId, time.perf_counter() - start)
    return exit_codes.SUCCESS


def _wall(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def _log_usage(mpath: Path, usage: QuantumUsage) -> None:
    """Append ``usage`` to the run's usage log beside the manifest; the manifest keeps it if that fails."""
    try:
        append_usage(usage_log_path(mpath.parent), usage)
    except OSError as err:
        log.warning("recording the usage of quantum %d in %s failed: %s", usage.quantum, mpath.parent, err)


def _file_key(quantum: Any, staged: StagedFile) -> tuple[str, Any]:
    for d in quantum.iterOutputs():
        if d.datasetType.name == staged.dataset_type and dict(d.dataId) == staged.data_id:
            key: tuple[str, Any] = d.key
            return key
    return (staged.dataset_type, None)


def _intact(placement: Placement, files: list[StagedFile]) -> bool:
    # size only: a full checksum of every output would make a no-op rerun as slow as a copy;
    # finalize verifies checksums before registering anything. Tombstones are not checked:
    # finalize removes them once the workflow is complete, and a no-work outcome stays true.
    return all(file_matches(placement.staged_file(f), f.size) for f in files if not f.tombstone)


def _load(backend: Backend, graph: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]:
    try:
        header, quanta = backend.load(graph, ids)
    except FileNotFoundError:
        raise JobError(exit_codes.MISSING_INPUT, f"graph file {graph} does not exist (yet?)") from None
    except (IndexError, KeyError) as err:
        raise JobError(exit_codes.USAGE, f"{err.args[0] if err.args else err}; check --quantum") from None
    except Exception as err:  # GraphFileError and friends: corrupt or incompatible
        raise JobError(exit_codes.DATA_ERROR, f"cannot read {graph}: {err}") from None
    return header, sorted(quanta, key=lambda q: q.id)
