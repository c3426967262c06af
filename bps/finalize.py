"""``bps finalize SUBMIT_DIR``: the final job, the only writer of the registry.

Jobs never touch the registry (many writers lock SQLite and strain even
PostgreSQL). Each job leaves a manifest of the outputs it staged back; this job
reads them all, verifies every file's size and checksum against its manifest,
and registers the good ones in batched transactions of whole quanta: all the outputs
of a quantum are registered in one transaction, so a kill never leaves a quantum half
registered, and a quantum with a rejected output registers none of them.

It runs even when other jobs failed, registering everything that *was* made (each
quantum is in a manifest only once all its outputs are staged, so nothing
half-written is registered), and it is idempotent: a manifest registered before and
unchanged since is skipped without re-reading its files, and the registry's
``insertDatasets`` treats a dataset already registered with the same checksum as a
no-op. The summary (``finalize_summary.json``) says what was registered and what
is missing, per job label.

No work: a quantum that found no work left a *tombstone* where each of its outputs
would be (see `bps.staging`), listed in its manifest. Finalize never registers a
tombstone (it also checks each file's first line, so one listed as an ordinary
output is caught) and counts it as "no work" in the summary. Once every job of the
workflow is complete it removes the tombstones; until then it keeps them, because a
restart's consumers must still find them to know those inputs will never exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import exit_codes
from .provenance import run_provenance
from .publish import RegisteredOutputError, SourceMismatchError, publish
from .staging import (
    Manifest,
    StagedFile,
    atomic_write_text,
    checksum_file,
    is_tombstone,
    read_manifest,
)
from .workflow import GenericWorkflow
from .workflow_builder import MANIFEST_DIR
from .workflow_io import load_workflow

log = logging.getLogger("bps.finalize")

WORKFLOW_FILE = "workflow.json"
SUMMARY_FILE = "finalize_summary.json"
#: Workflow statuses (DAGMan's ``$(DAG_STATUS)``) that mean the run was stopped on purpose:
#: ``condor_rm`` of the DAGMan job, or its halt file (what ``bps cancel`` creates).
CANCELLED_STATUSES = {4: "removed", 6: "halted"}
STATE_FILE = "finalize_state.json"
#: where file-transfer staging (HTCondor) brings outputs back, by logical file name
STAGED_DIR = "staged"


@dataclass
class LabelSummary:
    """Per job label: how many jobs finished all their quanta, and how many outputs are registered."""

    jobs: int = 0
    jobs_complete: int = 0
    outputs_expected: int = 0
    outputs_registered: int = 0
    #: outputs whose quantum found no work (tombstones, never registered)
    outputs_no_work: int = 0


@dataclass
class FinalizeSummary:
    """What one finalize run did (written as ``finalize_summary.json``)."""

    output_run: str
    registered: int = 0
    already_registered: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: expected outputs neither registered nor declared no-work (failed or not yet run)
    missing: int = 0
    #: expected outputs whose quantum found no work (tombstones; never registered)
    no_work: int = 0
    #: tombstones deleted because the workflow is complete (kept for a restart otherwise)
    tombstones_removed: int = 0
    labels: dict[str, LabelSummary] = field(default_factory=dict)
    seconds: float = 0.0
    #: the workflow system's verdict, when it passed one (DAGMan's ``$(DAG_STATUS)``: 0 ok,
    #: 2 a node failed, 4 removed by ``condor_rm``, ...); None when not given
    workflow_status: int | None = None
    #: nodes the workflow system counted as failed (DAGMan's ``$(FAILED_COUNT)``); None when not given
    failed_jobs: int | None = None
    #: why the run's provenance could not be recorded (e.g. the graph file is gone); None if it was
    provenance_error: str | None = None

    @property
    def workflow_cancelled(self) -> bool:
        """The workflow system said the run was removed or halted (`CANCELLED_STATUSES`)."""
        return self.workflow_status in CANCELLED_STATUSES

    @property
    def workflow_failed(self) -> bool:
        """The workflow system said jobs failed or the run was removed."""
        return bool(self.workflow_status) or bool(self.failed_jobs)

    @property
    def exit_code(self) -> int:
        """Zero only when every expected output is registered or declared no-work.

        A rejected (corrupt) file wins, because a rerun will not fix it; otherwise missing
        outputs make `exit_codes.OUTPUTS_MISSING`, so that a workflow whose final job is
        finalize (DAGMan's FINAL node, Pegasus's last job) never ends as a success with
        outputs unregistered; and a workflow the workflow system reported failed or removed
        (`workflow_status`, `failed_jobs`) makes `exit_codes.WORKFLOW_FAILED`. DAGMan exits
        with its FINAL node's status, so this is what makes a failed DAG's status non-zero.
        """
        if self.rejected:
            return exit_codes.DATA_ERROR
        if self.missing:
            return exit_codes.OUTPUTS_MISSING
        # Everything expected is there, but the workflow system saw failed or removed jobs
        # (e.g. the DAG was cancelled after the last job finished): not a success either.
        return exit_codes.WORKFLOW_FAILED if self.workflow_failed else exit_codes.SUCCESS

    def text(self) -> str:
        lines = [
            f"output run {self.output_run}: registered {self.registered} new datasets, "
            f"{self.already_registered} were already registered, {len(self.rejected)} rejected, "
            f"{self.no_work} not made because their quantum found no work, "
            f"{self.missing} expected outputs not produced ({self.seconds:.1f} s)"
        ]
        for label, s in self.labels.items():
            lines.append(
                f"  {label}: {s.jobs_complete}/{s.jobs} jobs complete, "
                f"{s.outputs_registered}/{s.outputs_expected} outputs registered"
                + (f", {s.outputs_no_work} no work" if s.outputs_no_work else "")
            )
        for r in self.rejected[:20]:
            lines.append(f"  REJECTED {r['path']}: {r['reason']}")
        if self.provenance_error:
            lines.append(self.provenance_error)
        if self.workflow_cancelled and self.workflow_status is not None:
            lines.append(
                f"the run was cancelled (workflow status {self.workflow_status}: "
                f"{CANCELLED_STATUSES[self.workflow_status]}): what is missing was not made because of "
                "the cancel, not because the pipeline failed; restart it to finish"
            )
        elif self.workflow_failed:
            lines.append(
                f"the workflow system reported the run failed (status {self.workflow_status}, "
                f"{self.failed_jobs} failed jobs): not a success; restart it to finish"
            )
        return "\n".join(lines)


class Registrar:
    """What finalize needs of the registry: dataset types, the run, and bulk insertion."""

    def __init__(self, repo: str, output_run: str):
        from supertask.repo.butler import Butler

        self.butler = Butler(repo, run=output_run)  # registers the RUN (idempotent)
        self.output_run = output_run
        self.registry = self.butler.registry
        self.root = Path(self.butler.datastore.root)
        self._types: dict[str, Any] = {}

    def dataset_type(self, name: str, units: Iterable[str], storage_class: str) -> Any:
        if name not in self._types:
            from supertask.repo.dataset import DatasetType

            dt = DatasetType(name, tuple(units), storage_class)
            self.registry.registerDatasetType(dt)
            self._types[name] = dt
        return self._types[name]

    def insert(self, dataset_type: Any, run: str, records: list[dict[str, Any]]) -> None:
        self.registry.insertDatasets(dataset_type, run, records)

    def insert_groups(self, run: str, groups: list[list[tuple[Any, dict[str, Any]]]]) -> None:
        """Register several quanta's outputs (any dataset types) in one transaction."""
        self.registry.insertDatasetGroups(run, groups)

    def registered(self, f: StagedFile, run: str) -> str | None:
        """The registered checksum of ``f``'s dataset in ``run`` (``"?"`` if none recorded), or None."""
        from supertask.repo.dataid import DataId
        from supertask.repo.dataset import Dataset, DatasetType

        dataset = Dataset(DatasetType(f.dataset_type, f.units, f.storage_class), DataId(f.data_id), run=run)
        try:
            _, _, checksum = self.registry.getDatasetLocation(dataset)
        except LookupError:  # not registered, or its dataset type is not
            return None
        return checksum or "?"

    def record_run(self, provenance: dict[str, Any]) -> None:
        """Record the run's provenance with its RUN (idempotent; refused if the pipeline or
        configs differ from what the RUN already records)."""
        self.registry.registerRun(self.output_run, provenance=provenance)

    def record_schemas(self, graph_file: str | Path) -> list[str]:
        """Record the graph's output schemas in the RUN, once (the jobs never write the registry).

        Returns the names written (none on a restart).

        Raises
        ------
        SchemaConflictError
            If the RUN records other schemas (``bps prepare`` refuses that already).
        """
        from supertask.execution.schema_outputs import graph_schemas, write_schemas
        from supertask.graph.file_format import read_header

        schemas, outputs = graph_schemas(read_header(graph_file).get("metadata"))
        return write_schemas(self.butler, self.output_run, {name: schemas[name] for name in outputs})

    def close(self) -> None:
        self.butler.close()


def finalize(
    submit_dir: str | Path,
    *,
    batch_size: int = 5000,
    registrar_factory: Callable[[str, str], Any] = Registrar,
    workflow_status: int | None = None,
    failed_jobs: int | None = None,
) -> FinalizeSummary:
    """Verify and register every staged output listed in the submit directory's manifests.

    Parameters
    ----------
    submit_dir
        A directory written by ``bps prepare`` (with ``workflow.json``).
    batch_size
        Datasets per registry transaction: large enough to amortise the commit,
        small enough that a failure loses little and locks are held briefly.
    registrar_factory
        ``(repo, output_run) -> registrar``; tests pass a stand-in.
    workflow_status, failed_jobs
        The workflow system's verdict (DAGMan's ``$(DAG_STATUS)`` and ``$(FAILED_COUNT)``),
        if it gives one: registration is the same, only the exit code follows it.
    """
    start = time.perf_counter()
    submit_dir = Path(submit_dir)
    workflow_file = submit_dir / WORKFLOW_FILE
    if not workflow_file.exists():
        raise FileNotFoundError(
            f"{submit_dir} has no {WORKFLOW_FILE}: is it a submit directory made by bps prepare?"
        )
    wf = load_workflow(workflow_file)
    summary = FinalizeSummary(
        output_run=wf.output_run, workflow_status=workflow_status, failed_jobs=failed_jobs
    )
    state_path = submit_dir / STATE_FILE
    state, known_no_work = _read_state(state_path)
    manifests = _read_manifests(submit_dir / MANIFEST_DIR)

    registrar = registrar_factory(wf.repo, wf.output_run)
    try:
        record_run = getattr(registrar, "record_run", None)
        if record_run is not None:  # what `supertask run` records, and the submit config
            from supertask.repo.registry import RunConflictError

            try:
                record_run(run_provenance(submit_dir, wf.graph_file))
            except (OSError, ValueError, RunConflictError) as exc:  # the outputs are still registered
                summary.provenance_error = f"the run's provenance was not recorded: {exc}"
                log.warning("%s", summary.provenance_error)
        record_schemas = getattr(registrar, "record_schemas", None)
        if record_schemas is not None:  # each output schema once per RUN, as `supertask run` does
            from supertask.schemas import SchemaError

            try:
                for name in record_schemas(wf.graph_file):
                    log.info("recorded the schema of %s in %s", name, wf.output_run)
            except (OSError, SchemaError) as exc:  # the outputs are still registered
                problem = f"the run's schemas were not recorded: {exc}"
                summary.provenance_error = "; ".join(filter(None, [summary.provenance_error, problem]))
                log.warning("%s", problem)
        #: the files to register, one group per quantum (a quantum registers whole or not at all)
        pending: list[tuple[str, list[StagedFile]]] = []  # (manifest name, the quantum's files)
        fresh: dict[str, str] = {}
        registered_lfns: set[str] = set()
        #: lfn -> places a tombstone may be (staged by file transfer, or at its datastore path)
        tombstones: dict[str, list[Path]] = {}
        planned = {f.lfn: f.path for job in wf.jobs.values() for f in job.outputs}
        datastore_root = Path(str(getattr(registrar, "root", wf.repo)))
        for name, (manifest, digest) in manifests.items():
            if manifest.output_run != wf.output_run:
                summary.rejected.append(
                    {"path": name, "reason": f"manifest is for run {manifest.output_run!r}"}
                )
                continue
            root = Path(manifest.root) if manifest.root else datastore_root
            if state.get(name) == digest:
                for f in manifest.files():
                    if f.tombstone or f.lfn in known_no_work:
                        tombstones[f.lfn] = _tombstone_places(submit_dir, root, f, planned)
                    else:
                        summary.already_registered += 1
                        registered_lfns.add(f.lfn)
                continue
            fresh[name] = digest
            for files in manifest.quanta.values():
                group: list[StagedFile] = []
                bad = 0
                for f in files:
                    if f.tombstone:
                        tombstones[f.lfn] = _tombstone_places(submit_dir, root, f, planned)
                        continue
                    relative = f.path or planned.get(f.lfn, "")
                    if not relative:
                        summary.rejected.append(
                            {"path": f.lfn, "reason": "not an output of this workflow", "job": manifest.job}
                        )
                        bad += 1
                        continue
                    if is_tombstone(submit_dir / STAGED_DIR / f.lfn) or is_tombstone(root / relative):
                        # listed as an output but it is a tombstone: never register it
                        tombstones[f.lfn] = _tombstone_places(submit_dir, root, f, planned)
                        continue
                    reason = _put_in_place(
                        submit_dir / STAGED_DIR / f.lfn,
                        root / relative,
                        f,
                        _lookup(registrar, f, wf.output_run),
                    )
                    reason = reason or _verify(root / relative, f)
                    if reason:
                        summary.rejected.append(
                            {"path": str(root / relative), "reason": reason, "job": manifest.job}
                        )
                        bad += 1
                        continue
                    group.append(f._replace(path=relative) if relative != f.path else f)
                if bad:
                    fresh.pop(name, None)  # retry this manifest next time
                    if group:  # never a part of a quantum: its good files wait for the rest
                        summary.rejected.append(
                            {
                                "path": ", ".join(f.path for f in group),
                                "reason": f"not registered: {bad} other output(s) of the same quantum were rejected",
                                "job": manifest.job,
                            }
                        )
                    continue
                if group:
                    pending.append((name, group))
        batch: list[tuple[str, list[StagedFile]]] = []
        size = 0
        for item in [*pending, None]:
            if item is not None:
                batch.append(item)
                size += len(item[1])
            if batch and (item is None or size >= batch_size):
                _register_batch(registrar, wf.output_run, batch, summary, fresh, registered_lfns)
                batch, size = [], 0
        # remember manifests registered in full, so a rerun skips them without re-reading files
        state.update(fresh)
        payload = {"manifests": state, "no_work": sorted(known_no_work | set(tombstones))}
        atomic_write_text(state_path, json.dumps(payload, sort_keys=True))
    finally:
        close = getattr(registrar, "close", None)
        if close is not None:
            close()

    complete = _per_label(wf, manifests, registered_lfns, set(tombstones), summary)
    if complete:  # nothing will read them again: a restart of a complete workflow runs nothing
        for places in tombstones.values():
            summary.tombstones_removed += _remove_tombstones(places)
    summary.seconds = time.perf_counter() - start
    payload = asdict(summary)
    atomic_write_text(submit_dir / SUMMARY_FILE, json.dumps(payload, indent=1))
    return summary


def _read_state(path: Path) -> tuple[dict[str, str], set[str]]:
    """Manifests registered in full (name -> digest) and the lfns found to be tombstones, from earlier runs.

    Tombstones are remembered because they are removed once the workflow is complete,
    so a rerun can no longer tell them from their files.
    """
    if not path.exists():
        return {}, set()
    data = json.loads(path.read_text())
    if isinstance(data.get("manifests"), dict):
        return dict(data["manifests"]), set(data.get("no_work", []))
    return dict(data), set()  # the earlier format: just the manifests


def _read_manifests(directory: Path) -> dict[str, tuple[Manifest, str]]:
    result: dict[str, tuple[Manifest, str]] = {}
    if not directory.is_dir():
        return result
    for path in sorted(directory.glob("*.manifest.json")):
        raw = path.read_bytes()
        manifest = read_manifest(path)
        if manifest is not None:
            result[path.name] = (manifest, hashlib.blake2b(raw, digest_size=16).hexdigest())
    return result


def _tombstone_places(submit_dir: Path, root: Path, f: StagedFile, planned: dict[str, str]) -> list[Path]:
    """Where the tombstone of ``f`` may be: staged back by file transfer, or at its datastore path."""
    places = [submit_dir / STAGED_DIR / f.lfn]
    relative = f.path or planned.get(f.lfn, "")
    if relative:
        places.append(root / relative)
    return places


def _remove_tombstones(places: list[Path]) -> int:
    """Delete the tombstones among ``places`` (never a real file); return how many."""
    removed = 0
    for place in places:
        if is_tombstone(place):
            place.unlink(missing_ok=True)
            removed += 1
    return removed


def _register_batch(
    registrar: Any,
    run: str,
    batch: list[tuple[str, list[StagedFile]]],
    summary: FinalizeSummary,
    fresh: dict[str, str],
    registered_lfns: set[str],
) -> None:
    """Register a batch of whole quanta: one transaction (``insert_groups``) when the registrar
    has it, so a kill never leaves a quantum half registered; per dataset type otherwise.

    A quantum with an output registered before with another checksum is rejected whole
    (exit 65) and the others are registered: finalize never registers a dataset again with
    other bytes, and never writes over its file (`_put_in_place` never publishes over a registered one).
    Such a conflict comes from a job of a plan made before the dataset was registered.
    """

    def record(f: StagedFile) -> dict[str, Any]:
        return {"dataId": f.data_id, "path": f.path, "size": f.size, "checksum": f.checksum}

    def dataset_type(f: StagedFile) -> Any:
        return registrar.dataset_type(f.dataset_type, f.units, f.storage_class)

    def done(files: list[StagedFile]) -> None:
        summary.registered += len(files)
        registered_lfns.update(f.lfn for f in files)

    insert_groups = getattr(registrar, "insert_groups", None)
    if insert_groups is None:  # a registrar without transactions over types (test stand-ins)
        by_type: dict[str, list[StagedFile]] = defaultdict(list)
        for _, files in batch:
            for f in files:
                by_type[f.dataset_type].append(f)
        for files in by_type.values():
            registrar.insert(dataset_type(files[0]), run, [record(f) for f in files])
            done(files)
        return
    groups = [[(dataset_type(f), record(f)) for f in files] for _, files in batch]
    try:
        insert_groups(run, groups)
    except Exception as err:
        if type(err).__name__ != "ConflictingDatasetError":
            raise
    else:
        for _, files in batch:
            done(files)
        return
    for (name, files), group in zip(batch, groups, strict=True):  # find the offenders
        try:
            insert_groups(run, [group])
        except Exception as err:
            if type(err).__name__ != "ConflictingDatasetError":
                raise
            summary.rejected.append(
                {
                    "path": ", ".join(f.path for f in files),
                    "reason": f"already registered in {run!r} with another checksum, so this quantum's "
                    f"outputs are not registered: {err} (plan with --skip-existing, --clobber-outputs "
                    "or into a new RUN)",
                    "job": name,
                }
            )
            fresh.pop(name, None)
        else:
            done(files)


def _lookup(registrar: Any, f: StagedFile, run: str) -> Callable[[], str | None]:
    """The registry look-up `publish` makes when a datastore path holds other bytes.

    A registrar without one (a test stand-in) answers "registered": nothing is replaced.
    """
    registered = getattr(registrar, "registered", None)
    if registered is None:
        return lambda: "unknown"
    return lambda: registered(f, run)


def _put_in_place(staged: Path, target: Path, f: StagedFile, registered: Callable[[], str | None]) -> str:
    """Move a file that file-transfer staging left in ``staged/`` to its datastore path (`bps.publish`).

    Never over a registered dataset's file (the place is linked no-clobber; other bytes
    there are replaced only when ``registered()`` says they are not registered: a
    leftover, e.g. of a killed ``supertask run``); nothing that does not match its
    manifest reaches the datastore. Returns why the file is rejected, or ''.
    """
    if not staged.exists():
        return ""
    try:
        publish(staged, target, registered, expected=(f.size, f.checksum))
    except RegisteredOutputError as err:
        return (
            f"already registered in this RUN with other content (registered checksum {err}), left unchanged: "
            "the plan was made before it was registered (plan again with --skip-existing-in RUN or "
            "--extend-run, or --clobber-outputs, or into a new RUN)"
        )
    except SourceMismatchError:
        return f"{staged} does not match its manifest (size or checksum)"
    except Exception as err:  # I/O, or the registry could not be read: nothing was replaced
        return f"cannot move {staged} into place: {err}"
    staged.unlink(missing_ok=True)
    return ""


def _verify(path: Path, f: StagedFile) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "file is missing"
    if size != f.size:
        return f"size {size} differs from the manifest's {f.size}"
    if checksum_file(path) != f.checksum:
        return "checksum differs from the manifest's"
    return ""


def _per_label(
    wf: GenericWorkflow,
    manifests: dict[str, tuple[Manifest, str]],
    registered: set[str],
    no_work: set[str],
    summary: FinalizeSummary,
) -> bool:
    """Fill the per-label counts; return True if every job of the workflow has all its quanta done."""
    done_quanta = {m.job: set(m.quanta) for m, _ in manifests.values()}
    complete = True
    for job in wf.jobs.values():
        s = summary.labels.setdefault(job.label, LabelSummary())
        s.jobs += 1
        if set(job.quantum_ids) <= done_quanta.get(job.name, set()):
            s.jobs_complete += 1
        else:
            complete = False
        s.outputs_expected += len(job.outputs)
        made = sum(1 for f in job.outputs if f.lfn in registered)
        none = sum(1 for f in job.outputs if f.lfn in no_work and f.lfn not in registered)
        s.outputs_registered += made
        s.outputs_no_work += none
        summary.no_work += none
        summary.missing += len(job.outputs) - made - none
    return complete


def main(submit_dir: str, batch_size: int = 5000) -> int:
    """Run finalize, print the summary; return the exit code."""
    try:
        summary = finalize(submit_dir, batch_size=batch_size)
    except FileNotFoundError as err:
        log.error("%s", err)
        return exit_codes.USAGE
    print(summary.text())
    return summary.exit_code
