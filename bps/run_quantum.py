"""``run_quantum``: the entry point of every batch job.

::

    run_quantum --graph FILE --quantum ID [--quantum ID ...] [--repo ROOT] [--scratch DIR]
                [--job NAME] [--manifest-dir DIR]

Loads only its quanta from the shared graph file (checksums verified by the graph
reader), links their inputs into a fresh scratch directory (``--scratch``, else
``$_CONDOR_SCRATCH_DIR``, else the system temporary directory), runs each task's
``runQuantum`` in dependency order against a scratch Butler that knows only those
datasets and never connects to the registry (DMTN-055 section 8), and stages each
quantum's outputs back atomically, recording them in the job's manifest. The final
job (``bps finalize``) registers what the manifests list.

Restarting is safe at any point: outputs appear under their final names only
complete, and the manifest records a quantum only once all its outputs are staged.
A rerun skips recorded quanta whose files are intact; a job whose quanta are all
recorded exits at once without reading the graph. With shared staging an output is
published at its datastore path never over a registered dataset's file
(`bps.publish`): an earlier attempt's unregistered leftover is replaced, a registered
file (a plan made before its outputs were registered) fails the quantum with
`exit_codes.DATA_ERROR`.

No work is an outcome, not a failure (as in ``supertask run``): a quantum whose
task raises ``NoWorkFound``, or that is left without some input because the quanta
making it found no work, writes a tombstone (`bps.staging.write_tombstone`) for each
of its outputs, at the place the output would go, and is recorded like a success.
Workflow systems stage tombstones like any file; a consumer that stages one in
drops that input, exactly as the single-node executor does. The job exits 0.

Exit codes are those of `bps.exit_codes` (``run_quantum --help`` lists them):
codes in ``NO_RETRY`` mean a retry cannot help. Within a cluster, a failed quantum
stops only the quanta that need its outputs; the job still stages the rest and
exits with the failure's code.

Start-up is a hot path (every job pays it): this module imports only the standard
library at start, and the supertask modules it needs when it needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import exit_codes
from .publish import RegisteredOutputError, publish
from .staging import (
    Manifest,
    StagedFile,
    copy_atomic,
    file_matches,
    is_tombstone,
    link_or_copy,
    make_scratch,
    manifest_path,
    read_input_checks,
    read_manifest,
    verify_input,
    write_manifest,
    write_tombstone,
)

log = logging.getLogger("bps.run_quantum")


class JobError(Exception):
    """A failure of the whole job, with the exit code that tells the workflow system whether to retry."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Store(Protocol):
    """The datastore operations a job needs: where a dataset lives, and its formatters."""

    root: Any

    def path(self, datasetType: Any, dataId: Any, run: str) -> str: ...

    def read(self, path: str, storageClass: str) -> Any: ...


class Backend(Protocol):
    """The supertask services a job uses; tests substitute small stand-ins."""

    def load(self, graph: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]: ...

    def make_tasks(self, header: dict[str, Any], labels: set[str]) -> dict[str, Any]: ...

    def open_store(self, repo: str) -> Store: ...

    def open_scratch_store(self, scratch: Path) -> Store: ...

    def write_file(self, store: Store, obj: Any, storageClass: str, path: Path) -> None: ...

    def registered(self, repo: str, datasetType: Any, dataId: Any, run: str) -> str | None: ...


class SupertaskBackend:
    """The real services: graph file reader, pipeline, datastore formatters (imported lazily)."""

    def load(self, graph: str, ids: list[int]) -> tuple[dict[str, Any], list[Any]]:
        from supertask.graph.quantum_graph import QuantumGraph

        header = QuantumGraph.readHeader(graph)
        return header, QuantumGraph.loadQuanta(graph, ids)

    def make_tasks(self, header: dict[str, Any], labels: set[str]) -> dict[str, Any]:
        from supertask.pipeline import Pipeline

        if header.get("pipelineJson"):  # graphs saved by this version: no YAML parser needed
            from supertask.pipeline.yaml_io import load_pipeline_json

            pipeline = load_pipeline_json(header["pipelineJson"])
        else:
            pipeline = Pipeline.fromYaml(header["pipelineYaml"])
        return {task.label: task for task in pipeline.makeTasks(butler=None) if task.label in labels}

    def open_store(self, repo: str) -> Store:
        from supertask.repo.datastore import Datastore

        return Datastore.fromRepo(repo)

    def open_scratch_store(self, scratch: Path) -> Store:
        from supertask.repo.datastore import Datastore

        return Datastore(scratch)

    def write_file(self, store: Store, obj: Any, storageClass: str, path: Path) -> None:
        from supertask.repo.formatters import get_formatter

        get_formatter(storageClass).write(obj, path)

    def registered(self, repo: str, datasetType: Any, dataId: Any, run: str) -> str | None:
        """The registered checksum of one dataset (``"?"`` if none was recorded), or None if unregistered.

        Read-only, and only on the rare path where an output's datastore path already
        holds other bytes (`bps.publish`): a normal job never opens the registry.
        """
        from supertask.repo.butler import Butler
        from supertask.repo.dataset import Dataset

        butler = Butler(repo, writeable=False)  # jobs never write the registry
        try:
            _, _, checksum = butler.registry.getDatasetLocation(Dataset(datasetType, dataId, run=run))
        except LookupError:  # not registered, or its dataset type is not
            return None
        finally:
            butler.close()
        return checksum or "?"


class ScratchButler:
    """``get`` / ``put`` over files in scratch for the datasets of a few quanta; no registry.

    The mapping from dataset to file is fully known before the job starts (the
    design note's "additional file containing those mappings"): inputs were linked
    into scratch by lfn, outputs go to their datastore-relative path under scratch.
    """

    def __init__(self, backend: Backend, store: Store, scratch: Path):
        self.backend = backend
        self.store = store
        self.scratch = scratch
        self.locations: dict[tuple[str, Any], Path] = {}
        self.written: dict[tuple[str, Any], Path] = {}
        self.allowed_outputs: dict[tuple[str, Any], str] = {}
        #: lfn -> path of overall inputs not at their template path (e.g. ingested in place)
        self.input_locations: dict[str, str] = {}
        self.input_checks: dict[str, tuple[int | None, str | None]] = {}

    def get(self, dataset: Any) -> Any:
        """Read an input of the running quantum."""
        path = self.locations.get(dataset.key)
        if path is None:
            raise LookupError(f"{dataset!r} is not an input of the quanta of this job")
        return self.store.read(str(path), dataset.datasetType.storageClass)

    def put(self, obj: Any, dataset: Any, dataId: Any = None) -> Any:
        """Write an output of the running quantum into scratch."""
        key = dataset.key if dataId is None else (dataset.name, dataId)
        relative = self.allowed_outputs.get(key)
        if relative is None:
            raise LookupError(f"{key[0]} {key[1]!r} is not an output of the running quantum")
        path = self.scratch / "out" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self.backend.write_file(self.store, obj, dataset.datasetType.storageClass, path)
        self.written[key] = path
        self.locations[key] = path
        return dataset


@dataclass
class JobResult:
    """What a job did, for its log and exit code."""

    ran: list[int]
    skipped_done: list[int]
    failed: dict[int, int]
    blocked: list[int]
    no_work: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Failures first (a retryable one wins); else 0: a quantum with no work is an outcome, not a failure."""
        if not self.failed and not self.blocked:
            return exit_codes.SUCCESS
        codes = list(self.failed.values())
        # a retryable failure wins: a retry may then also unblock the others
        retryable = [c for c in codes if c not in exit_codes.NO_RETRY]
        return retryable[0] if retryable else codes[0] if codes else exit_codes.UNEXPECTED


@dataclass
class Placement:
    """Where a job's files live outside scratch.

    Shared staging (``--repo``): inputs are read from, and outputs copied to, their
    datastore paths under ``root``. Transfer staging (``--inputs-dir`` /
    ``--outputs-dir``, for Pegasus or HTCondor file transfer): the workflow system put
    each input in ``inputs_dir`` under its logical file name and takes each output
    from ``outputs_dir`` under its logical file name; the final job puts it in place.
    """

    root: Path | None = None
    inputs_dir: Path | None = None
    outputs_dir: Path | None = None

    @property
    def transfer(self) -> bool:
        return self.outputs_dir is not None

    def manifest_root(self) -> str:
        """The root manifest paths are relative to ('' in transfer mode: finalize knows the datastore)."""
        return "" if self.transfer or self.root is None else str(self.root)

    def input_source(self, relative: str, lfn: str) -> Path:
        if self.inputs_dir is not None:
            return self.inputs_dir / lfn
        assert self.root is not None
        return self.root / relative

    def output_target(self, relative: str, lfn: str) -> Path:
        if self.outputs_dir is not None:
            return self.outputs_dir / lfn
        assert self.root is not None
        return self.root / relative

    def recorded_path(self, relative: str) -> str:
        """The path written in the manifest: datastore-relative in shared mode, '' (by lfn) in transfer mode."""
        return "" if self.transfer else relative

    def staged_file(self, f: StagedFile) -> Path:
        if self.outputs_dir is not None:
            return self.outputs_dir / f.lfn
        return Path(self.manifest_root()) / f.path


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
    """Run the quanta ``ids`` of ``graph`` with staging; see the module docstring.

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
    from supertask.gc_pause import gc_paused

    # Start-up (imports, the graph's records, the tasks) allocates only what lives as long as
    # the job: the cyclic collector would walk it again and again and free nothing.
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
    except FileNotFoundError as err:
        shutil.rmtree(scratch_dir, ignore_errors=True)
        raise JobError(exit_codes.MISSING_INPUT, f"repository {repo}: {err}") from err
    except Exception as err:
        shutil.rmtree(scratch_dir, ignore_errors=True)
        raise JobError(exit_codes.CONFIG_ERROR, f"cannot open the datastore of {repo}: {err}") from err
    placement.root = None if placement.transfer else Path(str(store.root)).resolve()
    root_text = placement.manifest_root()
    if manifest is None or manifest.output_run != output_run or manifest.root != root_text:
        manifest = Manifest(job=job, output_run=output_run, root=root_text)
        done = set()
    butler = ScratchButler(backend, store, scratch_dir)
    butler.input_locations = dict(input_locations or {})
    butler.input_checks = dict(input_checks or {})
    result = JobResult(ran=[], skipped_done=sorted(done), failed={}, blocked=[])
    unavailable: set[tuple[str, Any]] = set()  # outputs of failed or blocked quanta of this job
    missing: set[tuple[str, Any]] = set()  # outputs that will never exist: their quantum had no work
    made_here = {d.key for q in quanta for d in q.iterOutputs()}
    try:
        for quantum in quanta:
            if quantum.id in done:
                staged_keys = set()
                for f in manifest.quanta[quantum.id]:
                    key = _file_key(quantum, f)
                    if not f.tombstone:
                        staged_keys.add(key)
                        butler.locations[key] = placement.staged_file(f)
                # tombstones, and outputs a version-1 manifest left unlisted, will never exist
                missing.update(d.key for d in quantum.iterOutputs() if d.key not in staged_keys)
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
            code = _run_one(
                quantum,
                tasks,
                butler,
                store,
                placement,
                output_run,
                made_here,
                missing,
                manifest,
                mpath,
                lambda d: backend.registered(str(where), d.datasetType, d.dataId, output_run),
            )
            if code == exit_codes.SUCCESS:
                result.ran.append(quantum.id)
            elif code == exit_codes.TASK_NO_WORK:
                result.no_work.append(quantum.id)
            else:
                manifest.quanta.pop(quantum.id, None)
                result.failed[quantum.id] = code
                unavailable.update(d.key for d in quantum.iterOutputs())
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    return result


def _without_missing_inputs(quantum: Any, missing: set[tuple[str, Any]]) -> tuple[Any | None, str]:
    """The quantum minus inputs that will never exist, or ``(None, why)`` if a whole input field is gone.

    Same rule as the single-node executor: a quantum with no work gives its consumers
    whatever other inputs exist; a consumer left with none of some input (a single
    input, or a gathering input whose every member is gone) has no work either.
    """
    if not any(d.key in missing for d in quantum.iterInputs()):
        return quantum, ""
    import copy

    inputs = {name: [d for d in ds if d.key not in missing] for name, ds in quantum.inputs.items()}
    empty = sorted(name for name, ds in inputs.items() if not ds)
    if empty:
        return None, f"no {', '.join(empty)} input: the quanta making it found no work"
    pruned = copy.copy(quantum)
    pruned.inputs = inputs
    return pruned, ""


def _file_key(quantum: Any, staged: StagedFile) -> tuple[str, Any]:
    for d in quantum.iterOutputs():
        if d.datasetType.name == staged.dataset_type and dict(d.dataId) == staged.data_id:
            return d.key
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


def _run_one(
    quantum: Any,
    tasks: dict[str, Any],
    butler: ScratchButler,
    store: Store,
    placement: Placement,
    output_run: str,
    made_here: set[tuple[str, Any]],
    missing: set[tuple[str, Any]],
    manifest: Manifest,
    mpath: Path,
    registered: Callable[[Any], str | None],
) -> int:
    """Stage in, run and stage out one quantum; return its exit code (never raises for task failures).

    With shared staging each output is published at its datastore path by
    `bps.publish.publish`: never over a registered dataset's file (``registered(dataset)``,
    the registry look-up, runs only when the path holds other bytes). Such an output fails
    the quantum with `exit_codes.DATA_ERROR`: the plan is stale and a retry cannot help.

    ``TASK_NO_WORK`` is returned for a quantum that found no work: it is recorded in
    the manifest with a tombstone for each output, exactly as a success is recorded
    with its outputs. Its outputs join ``missing``, so consumers in this job run
    without them; consumers in other jobs see the tombstones.
    """
    from .names import dataset_lfn

    start = time.perf_counter()
    task = tasks.get(quantum.taskLabel)
    if task is None:
        raise JobError(
            exit_codes.CONFIG_ERROR, f"the graph's pipeline has no task labelled {quantum.taskLabel!r}"
        )
    # stage in what this job does not make itself
    for d in quantum.iterInputs():
        if d.key in butler.locations or d.key in made_here or d.key in missing:
            continue
        lfn = dataset_lfn(d.datasetType.name, dict(d.dataId))
        if placement.transfer:
            src = placement.input_source("", lfn)
        else:
            relative = butler.input_locations.get(lfn) or store.path(
                d.datasetType, d.dataId, d.run or output_run
            )
            src = placement.input_source(relative, lfn)
        dest = butler.scratch / "in" / lfn
        try:
            link_or_copy(src, dest)
        except FileNotFoundError as err:
            log.error("quantum %s %r: %s", quantum.taskLabel, quantum.dataId, err)
            return exit_codes.MISSING_INPUT
        except OSError as err:
            log.error("quantum %s %r: staging in %s failed: %s", quantum.taskLabel, quantum.dataId, src, err)
            return exit_codes.TEMPORARY
        if lfn in butler.input_checks and (problem := verify_input(dest, *butler.input_checks[lfn])):
            log.error(
                "quantum %s %r: input %s %r at %s does not match its registration: %s. The file changed "
                "after it was registered (corrupted, truncated or replaced): restore it from a copy, or "
                "remove the dataset and rerun what made it",
                quantum.taskLabel,
                quantum.dataId,
                d.datasetType.name,
                dict(d.dataId),
                src,
                problem,
            )
            return exit_codes.DATA_ERROR
        if is_tombstone(dest):  # its producer, in another job, found no work
            missing.add(d.key)
        else:
            butler.locations[d.key] = dest
    outputs = {d.key: d for d in quantum.iterOutputs()}
    butler.allowed_outputs = {k: store.path(d.datasetType, d.dataId, output_run) for k, d in outputs.items()}
    if placement.transfer:  # no repository templates here: name scratch files by lfn (keeping the extension)
        butler.allowed_outputs = {
            k: dataset_lfn(d.datasetType.name, dict(d.dataId)) + Path(butler.allowed_outputs[k]).suffix
            for k, d in outputs.items()
        }
    butler.written = {}
    runnable, no_work = _without_missing_inputs(quantum, missing)
    code = exit_codes.SUCCESS
    if runnable is not None:
        log.info("running %s %r (quantum %s)", quantum.taskLabel, quantum.dataId, quantum.id)
        try:
            task.runQuantum(runnable, butler)
        except Exception as err:
            code = _code_of(err)
            if code != exit_codes.TASK_NO_WORK:
                log.error(
                    "quantum %s %r failed:\n%s",
                    quantum.taskLabel,
                    quantum.dataId,
                    "".join(traceback.format_exception(err)),
                )
                return code
            no_work = f"{type(err).__name__}: {err}"
            butler.written = {}  # a task that gives up keeps nothing it wrote
    if no_work:
        code = exit_codes.TASK_NO_WORK
        log.info("no work for %s %r: %s", quantum.taskLabel, quantum.dataId, no_work)
    # stage out, then record: a quantum is in the manifest only with all its outputs in place
    staged: list[StagedFile] = []
    for key, d in outputs.items():
        path = butler.written.get(key)
        relative = butler.allowed_outputs[key]
        lfn = dataset_lfn(d.datasetType.name, dict(d.dataId))
        target = placement.output_target(relative, lfn)
        if path is None and not no_work:
            log.warning(
                "quantum %s %r did not write %s %r", quantum.taskLabel, quantum.dataId, key[0], key[1]
            )
        try:
            if path is None:  # will never exist: leave a tombstone where it would be, for consumers
                reason = no_work or f"{quantum.taskLabel} did not write it"
                if placement.transfer:
                    size, checksum = write_tombstone(target, d.datasetType.name, dict(d.dataId), reason)
                else:  # at a datastore path: published like an output, never over a registered file
                    tomb = butler.scratch / "tombstones" / relative
                    write_tombstone(tomb, d.datasetType.name, dict(d.dataId), reason)
                    size, checksum = publish(tomb, target, lambda d=d: registered(d))
            elif placement.transfer:
                size, checksum = copy_atomic(path, target)
            else:
                size, checksum = publish(path, target, lambda d=d: registered(d))
        except RegisteredOutputError as err:
            log.error(
                "%s %s is already registered in RUN %r with other content (registered checksum %s; file %s, left "
                "unchanged): this graph was planned before it was registered; plan again with "
                "--skip-existing-in %s or --extend-run (or --clobber-outputs to replace it), or into a new RUN",
                d.datasetType.name,
                dict(d.dataId),
                output_run,
                err,
                target,
                output_run,
            )
            return exit_codes.DATA_ERROR
        except OSError as err:
            log.error("staging out %s to %s failed: %s", path or "a tombstone", target, err)
            return exit_codes.TEMPORARY
        except Exception as err:  # the registry could not be read: replace nothing
            log.error(
                "%s holds other content than %s %s of this job, and whether it is registered in RUN %r "
                "could not be read (%s: %s); it is left unchanged (retry, or remove it if it is not registered)",
                target,
                d.datasetType.name,
                dict(d.dataId),
                output_run,
                type(err).__name__,
                err,
            )
            return exit_codes.TEMPORARY
        staged.append(
            StagedFile(
                lfn=lfn,
                dataset_type=d.datasetType.name,
                units=list(d.datasetType.units),
                storage_class=d.datasetType.storageClass,
                data_id=dict(d.dataId),
                path=placement.recorded_path(relative),
                size=size,
                checksum=checksum,
                tombstone=path is None,
            )
        )
        if path is None:
            missing.add(key)
        else:
            butler.locations[key] = target
    manifest.quanta[quantum.id] = staged
    try:
        write_manifest(mpath, manifest)
    except OSError as err:
        log.error("writing the manifest %s failed: %s", mpath, err)
        return exit_codes.TEMPORARY
    if code == exit_codes.SUCCESS:
        log.info("done %s %r in %.3f s", quantum.taskLabel, quantum.dataId, time.perf_counter() - start)
    return code


def _code_of(err: BaseException) -> int:
    """Map a task's exception to an exit code: declared no-work, missing input, I/O, or unexpected."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if names & {"NoWorkFound", "NoWorkError", "TaskNoWork"}:
        return exit_codes.TASK_NO_WORK
    if isinstance(err, FileNotFoundError):
        return exit_codes.MISSING_INPUT
    if names & {"FieldValidationError", "ConfigError"}:
        return exit_codes.CONFIG_ERROR
    return exit_codes.UNEXPECTED


def _read_locations(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    import json

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise JobError(exit_codes.MISSING_INPUT, f"input locations file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise JobError(exit_codes.DATA_ERROR, f"input locations file {path} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise JobError(
            exit_codes.DATA_ERROR, f"input locations file {path}: expected an object {{lfn: path}}"
        )
    return {str(k): str(v) for k, v in data.items()}


def _read_checks(path: str | None) -> dict[str, tuple[int | None, str | None]]:
    if path and not Path(path).exists():
        # A submit-host file that a node without the submit directory cannot see (HTCondor
        # file transfer to another machine): the job runs, unverified, rather than fail.
        log.warning("input checks file %s is not visible here: staged-in inputs are not verified", path)
        return {}
    try:
        return read_input_checks(path)
    except ValueError as err:
        raise JobError(exit_codes.DATA_ERROR, str(err)) from None


# -- command line -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(exit_codes.USAGE, f"run_quantum: error: {message} (exit {exit_codes.USAGE}: not retried)\n")


def _parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:3d}  {text}" for code, text in exit_codes.DESCRIPTIONS.items())
    p = _Parser(
        prog="run_quantum",
        description="Run quanta of a saved QuantumGraph with staging through a scratch directory.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--graph", required=True, help="the .qgraph file")
    p.add_argument(
        "--quantum", action="append", required=True, help="quantum id (repeat, or comma-separated)"
    )
    p.add_argument("--repo", help="data repository root (shared filesystem); default $BPS_REPO")
    p.add_argument("--inputs-dir", help="transfer staging: where the workflow system put the inputs (by lfn)")
    p.add_argument("--outputs-dir", help="transfer staging: where to leave the outputs (by lfn)")
    p.add_argument(
        "--scratch", help="scratch base directory; default $_CONDOR_SCRATCH_DIR, else the system tmp"
    )
    p.add_argument("--job", help="job name (names the manifest); default from the quantum ids")
    p.add_argument("--manifest-dir", default=".", help="directory of the job manifests (default: cwd)")
    p.add_argument(
        "--input-locations",
        help="JSON file {lfn: path} for overall inputs not at their datastore template path (written by prepare)",
    )
    p.add_argument(
        "--input-checks",
        help="JSON file {lfn: [size, checksum]} of registered overall inputs, verified on stage-in "
        "(written by prepare)",
    )
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch directory (debugging)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, backend: Backend | None = None) -> int:
    """Console entry point; returns the exit code (see `bps.exit_codes`)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        ids = [int(part) for value in args.quantum for part in value.split(",") if part.strip()]
    except ValueError:
        _parser().error(f"--quantum takes integer ids, got {args.quantum}")
    repo = args.repo or os.environ.get("BPS_REPO")
    if not repo and not args.outputs_dir:
        _parser().error("give --repo (or $BPS_REPO) for shared staging, or --inputs-dir and --outputs-dir")
    job = args.job or f"quanta-{'-'.join(str(i) for i in sorted(set(ids))[:5])}"
    try:
        locations = _read_locations(args.input_locations)
        checks = _read_checks(args.input_checks)
    except JobError as err:
        log.error("job %s failed: %s (exit %d: %s)", job, err, err.code, exit_codes.describe(err.code))
        return err.code
    try:
        result = run_job(
            args.graph,
            ids,
            repo=repo,
            job=job,
            manifest_dir=args.manifest_dir,
            inputs_dir=args.inputs_dir,
            outputs_dir=args.outputs_dir,
            scratch=args.scratch,
            keep_scratch=args.keep_scratch,
            input_locations=locations,
            input_checks=checks,
            backend=backend,
        )
    except JobError as err:
        log.error("job %s failed: %s (exit %d: %s)", job, err, err.code, exit_codes.describe(err.code))
        return err.code
    code = result.exit_code
    log.info(
        "job %s: ran %d, already done %d, failed %d, not run %d -> exit %d (%s)",
        job,
        len(result.ran),
        len(result.skipped_done),
        len(result.failed),
        len(result.blocked),
        code,
        exit_codes.describe(code),
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
