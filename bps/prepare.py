"""``bps prepare``: a resolved submit configuration becomes a submit directory; nothing is submitted.

The submit directory holds everything a workflow system and an operator need, and
one copy of the graph only (each copy multiplies submission time and memory)::

    SUBMIT_DIR/
      submit_config.yaml       every resolved value and where it came from
      provenance.json          the bps command and the submit config, for the final job to record
      workflow.json            the generic workflow (translators and bps report read it)
      <output_run>.qgraph      the graph, when prepare planned it (else the qgraph file is used in place)
      slices/slice-NNNNN.qslice    transfer staging only: the jobs' records, a few thousand quanta per
                               file; each job is shipped its slice (`bps.slices`), never the whole graph
      input_locations/<job>.json   only for jobs reading inputs stored off their template path
      input_checks/NNNNNN.json     registered size and checksum of the jobs' overall inputs
      manifests/               filled by the jobs, read by the final job
      logs/<label>/            job logs
      ...                      the workflow system's own files
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_, is_not, itemgetter, ne
from pathlib import Path
from typing import Any

from supertask import atomic_write
from supertask.atomic_write import TMP_MARK
from supertask.gc_pause import gc_paused

from .clustering import ClusterRule
from .config import ResolvedConfig
from .finalize import WORKFLOW_FILE
from .forked_write import write_alongside
from .job_environment import PendingCheck, start_task_import_check, task_classes
from .provenance import write_submit_provenance
from .staging import atomic_write_text
from .workflow import GenericWorkflow, Resources, dataset_lfn, safe_name
from .workflow_builder import LOG_DIR, MANIFEST_DIR, BuildOptions, build_workflow
from .workflow_io import save_workflow

log = logging.getLogger("bps.prepare")

CONFIG_FILE = "submit_config.yaml"


class PrepareError(RuntimeError):
    """Prepare cannot proceed; the message says what to change."""


@dataclass
class Prepared:
    """The outcome of `prepare`."""

    submit_dir: Path
    workflow: GenericWorkflow
    main_file: Path | None
    #: what prepare decided that the user should read (memory right-sized from earlier runs)
    messages: list[str] = field(default_factory=list)


def prepare(resolved: ResolvedConfig, *, service: Any = None) -> Prepared:
    """Write the submit directory for ``resolved``; let ``service`` (a `WorkflowService`) add its files."""
    c = resolved.config
    submit_dir = Path(c.submit_dir).absolute()
    if (submit_dir / WORKFLOW_FILE).exists():
        raise PrepareError(
            f"{submit_dir} already holds a prepared workflow: use `bps restart {submit_dir}` to rerun what "
            "failed, or choose another submit_dir (its default includes {timestamp})"
        )
    if service is not None:
        # Site and directory mistakes cost a second here, not the reading of a large graph.
        service.precheck(resolved.site, submit_dir)
    submit_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(submit_dir, os.W_OK):
        raise PrepareError(f"submit directory {submit_dir} is not writable")
    for sub in (MANIFEST_DIR, LOG_DIR):
        (submit_dir / sub).mkdir(exist_ok=True)
    messages: list[str] = []
    if c.right_sizing.runs:
        from .right_size import RightSizingError, right_size

        try:
            messages = right_size(resolved)
        except RightSizingError as err:
            raise PrepareError(str(err)) from None
    atomic_write_text(submit_dir / CONFIG_FILE, resolved.show() + "\n")
    write_submit_provenance(submit_dir, resolved)

    graph_file = _graph_file(resolved, submit_dir)
    # Transfer staging ships each job its graph slice (`bps.slices`), written on the loaded path
    # (the streamed workflow's jobs all name the graph file).
    if not c.clustering.clusters and c.wms in STREAMED_WMS and resolved.site.staging != "transfer":
        workflow, import_messages = _prepare_streamed(resolved, graph_file, submit_dir, service)
    else:
        workflow, import_messages = _prepare_loaded(resolved, graph_file, submit_dir, service)
    messages += import_messages
    main_file = _write_workflow_files(workflow, submit_dir, service)
    return Prepared(submit_dir=submit_dir, workflow=workflow, main_file=main_file, messages=messages)


#: Workflow systems whose files `prepare` writes while a forked child writes ``workflow.json``.
FORKED_WMS = ("htcondor", "pegasus")


def _write_workflow_files(workflow: GenericWorkflow, submit_dir: Path, service: Any) -> Path | None:
    """Write ``workflow.json`` and the workflow system's files; return the latter's main file.

    Both only read the finished workflow: ``workflow.json`` is written by a forked child
    while this process writes the engine's files (`bps.forked_write`), where a fork is
    safe; otherwise one after the other.

    Either way, a failure is the same one-line error and leaves neither a ``workflow.json``
    (so ``bps prepare`` can be run again on the directory) nor a run record saying
    "prepared": the run record the service writes is held back until ``workflow.json`` is
    written, then put in place.
    """
    path = submit_dir / WORKFLOW_FILE

    def write_workflow() -> None:
        try:
            save_workflow(workflow, path)
        except OSError as err:
            raise PrepareError(
                f"cannot write {path}: {err.strerror or err}; free space in or choose another submit_dir"
            ) from None

    if service is None or service.name not in FORKED_WMS:
        # The other systems' own file is workflow.json: nothing to write alongside it.
        write_workflow()
        return service.prepare(workflow) if service is not None else None

    from .wms.base import RUN_RECORD

    record = submit_dir / RUN_RECORD
    record_before = _read_if_any(record)

    def parent_work() -> tuple[Path | None, str | None]:
        main_file: Path | None = service.prepare(workflow, save=False)
        # The service records the directory as prepared: true only once workflow.json is.
        prepared = _read_if_any(record)
        _put_back(record, record_before)
        return main_file, prepared

    def discard() -> None:
        for stray in path.parent.glob(f"{path.name}{TMP_MARK}*"):
            stray.unlink(missing_ok=True)
        path.unlink(missing_ok=True)  # written before the other side failed: prepare again
        _put_back(record, record_before)

    def killed(how: str) -> PrepareError:
        return PrepareError(
            f"the process writing {path} was {how}, so it was not written: run bps prepare again"
        )

    main_file, prepared = write_alongside(write_workflow, parent_work, discard=discard, killed_error=killed)
    _put_back(record, prepared)
    return main_file


def _read_if_any(path: Path) -> str | None:
    """The text of ``path``, or None when there is no such file."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _put_back(path: Path, text: str | None) -> None:
    """Make ``path`` hold ``text`` (atomically), or not exist when ``text`` is None."""
    if text is None:
        path.unlink(missing_ok=True)
    elif _read_if_any(path) != text:
        atomic_write_text(path, text)


#: Workflow systems whose unclustered workflows are streamed from the graph file
#: (`bps.workflow_stream`): their translators only read the workflow, one job at a time.
STREAMED_WMS = ("htcondor", "pegasus")


def _build_options(
    resolved: ResolvedConfig, graph_file: Path, output_run: str, submit_dir: Path
) -> BuildOptions:
    c = resolved.config
    return BuildOptions(
        name=safe_name(f"{output_run}"),
        submit_dir=str(submit_dir),
        graph_file=str(graph_file),
        repo=_required(c.repo, "repo"),
        output_run=output_run,
        site=resolved.site,
        rules=[
            ClusterRule(r.name, tuple(r.labels), tuple(r.units), r.max_size) for r in c.clustering.clusters
        ],
        resources_for=resolved.resources_for,
        cluster_resources={
            r.name: resolved.resources_for(r.name)
            for r in c.clustering.clusters
            if r.name in c.resources.labels
        },
        retry=resolved.retry_policy(),
        throttles=dict(c.throttles),
        final_resources=Resources(memory_mb=c.final.memory_mb, cpus=c.final.cpus, disk_mb=c.final.disk_mb),
        final_retries=c.final.retries,
        final_batch_size=c.final.batch_size,
    )


def _prepare_loaded(
    resolved: ResolvedConfig, graph_file: Path, submit_dir: Path, service: Any
) -> tuple[GenericWorkflow, list[str]]:
    """The workflow of a whole loaded graph (clustering needs every quantum at once)."""
    c = resolved.config
    from supertask.graph.quantum_graph import QuantumGraph

    graph = QuantumGraph.load(graph_file)
    if not len(graph):
        raise PrepareError(f"graph {graph_file} has no quanta: nothing to run")
    repo = _required(c.repo, "repo")
    output_run = _required(graph.metadata.get("output_run") or c.output_run, "output_run")
    _check_schemas(repo, graph.metadata, c.output_run or output_run)
    if c.output_run and output_run != c.output_run:
        graph_file = _retarget(graph, graph_file, repo, c.output_run, submit_dir)
        output_run = c.output_run
    labels = {q.taskLabel for q in graph}
    _check_labels(resolved, labels)
    imports = _start_import_check(service, resolved, graph.pipelineYaml, labels)
    path_of, off_template = _locator(repo, graph)
    options = _build_options(resolved, graph_file, output_run, submit_dir)
    workflow = build_workflow(iter(graph), options, path_of)
    import_messages = _import_check_result(imports)
    checks = _input_checks(repo, graph)
    # The graph is not needed any more: what it frees holds the files written next. Its
    # quanta and datasets refer to each other, so only a full collection frees them.
    del graph, path_of
    gc.collect()
    if resolved.site.staging == "transfer":
        # Each job is shipped its slice of the graph, not the whole graph.
        from .slices import write_job_slices

        if resolved.site.slice_quanta < 1:
            raise PrepareError(
                f"site.slice_quanta ({resolved.source_of('site.slice_quanta')}) is "
                f"{resolved.site.slice_quanta}: give the number of quanta per graph slice, at least 1"
            )
        write_job_slices(
            graph_file, workflow.jobs.values(), submit_dir, quanta_per_slice=resolved.site.slice_quanta
        )
    _write_input_locations(workflow, off_template, submit_dir)
    _write_input_checks(workflow, checks, submit_dir)
    del off_template, checks
    return workflow, import_messages


def _prepare_streamed(
    resolved: ResolvedConfig, graph_file: Path, submit_dir: Path, service: Any
) -> tuple[GenericWorkflow, list[str]]:
    """The unclustered workflow, streamed from the graph file: the graph is never held whole.

    The same submit directory as `_prepare_loaded` writes (`bps.workflow_stream`), within
    the memory of the workflow's compact columns: quanta are read a chunk at a time and the
    registry is asked about the overall inputs in batches.
    """
    c = resolved.config
    from supertask.graph.quantum_graph import QuantumGraph
    from supertask.repo.butler import Butler

    from .workflow_stream import build_streamed_workflow_file

    header = QuantumGraph.readHeader(graph_file)
    metadata = header.get("metadata") or {}
    repo = _required(c.repo, "repo")
    output_run = _required(metadata.get("output_run") or c.output_run, "output_run")
    _check_schemas(repo, metadata, c.output_run or output_run)
    if c.output_run and output_run != c.output_run:
        graph = QuantumGraph.load(graph_file)
        if not len(graph):
            raise PrepareError(f"graph {graph_file} has no quanta: nothing to run")
        graph_file = _retarget(graph, graph_file, repo, c.output_run, submit_dir)
        output_run = c.output_run
        del graph
        gc.collect()
    options = _build_options(resolved, graph_file, output_run, submit_dir)
    butler = Butler(repo)
    try:
        streamed = build_streamed_workflow_file(graph_file, options, butler.datastore.paths_formatter)
        workflow = streamed.workflow
        if not len(workflow.jobs):
            raise PrepareError(f"graph {graph_file} has no quanta: nothing to run")
        labels = set(workflow.labels())
        _check_labels(resolved, labels)
        # The labels are known only once the quanta are streamed: the import check
        # overlaps the registry's look-up of the overall inputs instead.
        imports = _start_import_check(service, resolved, str(header.get("pipelineYaml") or ""), labels)
        locations, checks = _registered_inputs(butler.registry, streamed)
    finally:
        butler.close()
    import_messages = _import_check_result(imports)
    _write_streamed_inputs(
        streamed,
        [
            (locations, submit_dir / "input_locations", "--input-locations"),
            (checks, submit_dir / "input_checks", "--input-checks"),
        ],
    )
    del locations, checks
    return workflow, import_messages


#: Overall inputs asked of the registry at once by a streamed prepare.
REGISTRY_BATCH = 50_000


def _registered_inputs(registry: Any, streamed: Any) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """Where the overall inputs are registered, and their registered size and checksum.

    Returns ``{lfn: path}`` of the inputs registered off their template path (their path in
    the workflow is changed to it) and ``{lfn: [size, checksum]}`` of those with a registry id,
    as `_locator` and `_input_checks` find them for a loaded graph.

    The registry is asked in batches of `REGISTRY_BATCH` ids taken in id order, not in the
    workflow's: inputs registered together then come in one dense run of ids per batch, read
    by a range (`Registry.getDatasetRecordsById`). In the workflow's order each batch held
    ids spread over the whole table, read by IN lists (a million raws: two thousand
    statements instead of twenty).

    The cyclic collector is paused (`supertask.gc_pause.gc_paused`): a list per input, all
    kept, would make it walk the whole workflow's heap again and again for nothing.
    """
    with gc_paused():
        return _registered(registry, streamed)


def _registered(registry: Any, streamed: Any) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """`_registered_inputs`, by C-level ``map``/``zip``/``compress``/``sort`` over the columns.

    A million raws make every step a loop over a million inputs
    (`StreamedWorkflow.overall_input_columns`): Python runs per input only for the few
    off their template path or no longer registered under their id.
    """
    locations: dict[str, str] = {}
    checks: dict[str, list[Any]] = {}
    files, ids, unidentified = streamed.overall_input_columns()
    by_id = sorted(range(len(ids)), key=ids.__getitem__)
    files = list(map(files.__getitem__, by_id))
    ids = list(map(ids.__getitem__, by_id))
    del by_id
    set_path = streamed.set_input_path

    def by_type_and_data_id(k: int, lfn: str) -> None:
        try:
            path = registry.getDatasetLocation(streamed.dataset(k))[0]
        except LookupError:
            return
        if path != streamed.path(k):
            locations[lfn] = path
            set_path(k, path)

    sizes_and_checksums = itemgetter(slice(1, None))
    for start in range(0, len(ids), REGISTRY_BATCH):
        batch = ids[start : start + REGISTRY_BATCH]
        ks = files[start : start + REGISTRY_BATCH]
        found = list(map(registry.getDatasetRecordsById(batch).get, batch))
        lfns = streamed.lfns(ks)
        if None in found:  # no longer registered under its id: by type, data ID and RUN
            for k, lfn in compress(zip(ks, lfns, strict=True), map(is_, found, repeat(None))):
                by_type_and_data_id(k, lfn)
            kept = list(map(is_not, found, repeat(None)))
            ks, lfns, found = (
                list(compress(ks, kept)),
                list(compress(lfns, kept)),
                list(compress(found, kept)),
            )
        checks.update(zip(lfns, map(list, map(sizes_and_checksums, found)), strict=True))
        registered = list(map(itemgetter(0), found))
        for k, lfn, path in compress(
            zip(ks, lfns, registered, strict=True), map(ne, registered, streamed.paths(ks))
        ):
            locations[lfn] = path
            set_path(k, path)
    for k, lfn in zip(unidentified, streamed.lfns(unidentified), strict=True):
        by_type_and_data_id(k, lfn)
    return locations, checks


def _write_streamed_inputs(streamed: Any, kinds: list[tuple[dict[str, Any], Path, str]]) -> None:
    """`_write_shared_input_files` of each ``(by_lfn, directory, option)`` for a streamed workflow,
    all in one pass over the jobs: the same files, and the arguments added in the order of ``kinds``.

    The jobs come as columns (`StreamedWorkflow.input_reader_columns`) and fill the groups
    in bulk (`_InputGroups.add_columns`), with the cyclic collector paused: at 10^6 quanta a
    million jobs read raws.
    """
    groups = [_InputGroups(by_lfn, directory, option) for by_lfn, directory, option in kinds if by_lfn]
    if not groups:
        return
    with gc_paused():  # lists of jobs and dicts of lfns, all kept until written
        for jobs, counts, lfns in streamed.input_reader_columns():
            for group in groups:
                group.add_columns(jobs, counts, lfns)
        for group in groups:
            for members, arguments in group.close():
                streamed.add_arguments(members, arguments)


def _start_import_check(
    service: Any, resolved: ResolvedConfig, pipeline_yaml: str, labels: set[str]
) -> PendingCheck | None:
    """Start importing the graph's task classes as the jobs will (`bps.job_environment`).

    One subprocess of the jobs' interpreter, with the environment the workflow system
    gives them, runs while the workflow is built; none when the jobs run this
    interpreter with the submitter's import-relevant variables.
    """
    job_env = service.job_environment(resolved.site) if service is not None else None
    if job_env is None:
        return None
    classes = {label: path for label, path in task_classes(pipeline_yaml).items() if label in labels}
    return start_task_import_check(job_env, classes)


def _import_check_result(pending: PendingCheck | None) -> list[str]:
    """Refuse a graph whose task classes the jobs cannot import; warn when that could not be checked."""
    if pending is None:
        return []
    outcome = pending.result()
    if outcome.error:
        raise PrepareError(outcome.error)
    if outcome.warning:
        log.warning("%s", outcome.warning)
        return [f"warning: {outcome.warning}"]
    return []


def _check_labels(resolved: ResolvedConfig, task_labels: set[str]) -> None:
    """A label in ``resources.labels`` or ``throttles`` set by the user that names nothing is a typo.

    Values from the site file or the defaults may name labels of other pipelines and are
    left alone; the user's own must match a task label or a clustering rule's name.
    """
    import difflib

    from .config import DEFAULTS_SOURCE
    from .right_size import SOURCE as RIGHT_SIZED

    c = resolved.config
    known = task_labels | {rule.name for rule in c.clustering.clusters}
    site_source = resolved.source_of("site.name")
    problems = []
    for section, labels in (("resources.labels", c.resources.labels), ("throttles", c.throttles)):
        for label in labels:
            key = f"{section}.{label}"
            source = resolved.source_of(key)
            if label in known or source in (DEFAULTS_SOURCE, site_source, RIGHT_SIZED):
                continue
            close = difflib.get_close_matches(label, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"labels here: {sorted(known)}"
            problems.append(f"{key} ({source}) names no task label or cluster of this workflow: {hint}")
    if problems:
        raise PrepareError("\n  ".join(["submit configuration does not match the graph:", *problems]))


def _check_schemas(repo: str, metadata: dict[str, Any], output_run: str) -> None:
    """Refuse a graph whose output schemas differ from those its RUN records, before any job runs.

    The final job writes the schemas (jobs never write the registry); this is the check
    `supertask run` makes before its first quantum.
    """
    from supertask.execution.schema_outputs import check_schemas, graph_schemas
    from supertask.schemas import SchemaError

    schemas, outputs = graph_schemas(metadata)
    if not outputs or not repo:
        return
    from supertask.repo.butler import Butler

    butler = Butler(repo, writeable=False)
    try:
        check_schemas(butler, output_run, {name: schemas[name] for name in outputs})
    except SchemaError as err:
        raise PrepareError(str(err)) from None
    finally:
        butler.close()


def _retarget(graph: Any, graph_file: Path, repo: str, output_run: str, submit_dir: Path) -> Path:
    """Write a copy of a saved graph that writes to ``output_run`` into the submit directory.

    The jobs read their output RUN from the graph file, so the copy is what they get;
    the saved file is left as it was. The RUN is checked first as planning checks its
    own: one made with another pipeline or config, or holding outputs of the graph, is
    refused.
    """
    from supertask.graph.retarget import check_output_run, retarget
    from supertask.repo.butler import Butler
    from supertask.repo.registry import OutputExistsError, RunConflictError

    planned = graph.metadata.get("output_run")
    butler = Butler(repo, writeable=False)
    try:
        check_output_run(butler.registry, graph, output_run)
    except (OutputExistsError, RunConflictError) as err:
        raise PrepareError(f"cannot retarget graph {graph_file} to RUN {output_run!r}: {err}") from None
    finally:
        butler.close()
    retarget(graph, output_run)
    path = submit_dir / f"{safe_name(output_run)}.qgraph"
    graph.save(path)
    log.info("graph %s (planned for RUN %r) retargeted to RUN %r: %s", graph_file, planned, output_run, path)
    return path


def _required(value: str | None, key: str) -> str:
    """A setting prepare needs (the config's consistency check asks for it; a saved graph may lack it)."""
    if not value:
        raise PrepareError(f"{key} is not set: give it in the submit YAML or on the command line")
    return value


def _graph_file(resolved: ResolvedConfig, submit_dir: Path) -> Path:
    """The existing graph file, or a new one planned from the pipeline into the submit directory."""
    c = resolved.config
    if c.qgraph:
        path = Path(c.qgraph).absolute()
        if not path.is_file():
            raise PrepareError(f"qgraph {path} ({resolved.source_of('qgraph')}) does not exist")
        return path
    from supertask.graph.builder import build_quantum_graph
    from supertask.options import OptionsError, PlanRequest
    from supertask.repo.butler import Butler
    from supertask.repo.registry import OutputExistsError, RunConflictError

    try:
        request = PlanRequest(
            output_run=c.output_run or "",
            where=c.where or None,
            input_collections=tuple(c.input_collections),
            skip_existing_in=tuple(c.skip_existing_in),
            skip_existing=c.skip_existing,
        )
    except OptionsError as err:
        raise PrepareError(f"cannot plan from the submit configuration: {err}") from None
    pipeline = _load_pipeline(_required(c.pipeline, "pipeline"), c.subset)
    butler = Butler(_required(c.repo, "repo"), collections=list(request.input_collections) or None)
    try:
        graph, report = build_quantum_graph(pipeline, butler, request)
    except (OutputExistsError, RunConflictError) as err:  # registered outputs are never replaced
        raise PrepareError(str(err)) from None
    finally:
        butler.close()
    for line in report.lines():
        log.info("%s", line)
    path = submit_dir / f"{safe_name(c.output_run or 'run')}.qgraph"
    graph.save(path)
    return path


def _load_pipeline(spec: str, subset: str | None) -> Any:
    """The pipeline to plan: ``FILE``, ``FILE#NAME`` or ``FILE`` with ``subset: NAME``."""
    from supertask.pipeline import Pipeline, PipelineError
    from supertask.pipeline.steps import select, split_pipeline_spec

    path, selected = split_pipeline_spec(spec)
    if selected is not None and subset and selected != subset:
        raise PrepareError(
            f"pipeline {spec} selects {selected!r} but subset is {subset!r}: give one of the two"
        )
    selected = selected if selected is not None else subset
    try:
        pipeline = Pipeline.fromFile(path)
        if selected is not None:
            pipeline = select(pipeline, selected)
            pipeline.validate()
    except PipelineError as err:
        raise PrepareError(str(err)) from None
    return pipeline


def _locator(repo: str, graph: Any) -> tuple[Any, dict[tuple[str, Any], str]]:
    """The datastore's path function, and overall inputs whose registered path is not their template path."""
    from supertask.repo.butler import Butler

    butler = Butler(repo)
    try:
        datastore = butler.datastore
        off_template: dict[tuple[str, Any], str] = {}
        inputs = [d for d in graph.initialInputs() if d.id is not None or d.run is not None]
        try:
            # One chunked query for all of them (one query each took most of a 10^5-quantum prepare).
            registered: list[str | None] = list(butler.registry.getDatasetLocations(inputs))
        except LookupError:  # some are not registered (any more): look them up one by one
            registered = []
            for d in inputs:
                try:
                    registered.append(butler.registry.getDatasetLocation(d)[0])
                except LookupError:
                    registered.append(None)
        # Where each overall input is: its registered path (kept when off its template path).
        known: dict[tuple[str, Any], tuple[str, str]] = {}
        for d, path in zip(inputs, registered, strict=True):
            run = d.run or ""
            template = datastore.path(d.datasetType, d.dataId, run)
            if path is not None and path != template:
                off_template[d.key] = path
            known[d.key] = (run, path if path is not None else template)
    finally:
        butler.close()

    def path_of(dataset: Any, run: str) -> str:
        found = known.get(dataset.key)
        if found is not None and found[0] == run:
            return found[1]  # (computed above: a template path costs as much as the look-up)
        return off_template.get(dataset.key) or datastore.path(dataset.datasetType, dataset.dataId, run)

    return path_of, off_template


#: Entries per input-locations file: a job reads the whole file it is given (about 2 ms
#: of JSON at this size), and the submit directory holds one file per this many entries
#: instead of one per job (10^5 jobs would otherwise mean 10^5 files).
LOCATIONS_PER_FILE = 2000


def _write_input_locations(
    workflow: GenericWorkflow, off_template: dict[tuple[str, Any], str], submit_dir: Path
) -> None:
    """Tell jobs where overall inputs stored off their template path are.

    Consecutive jobs share one ``input_locations/NNNNNN.json`` (``{lfn: path}`` for all of
    them, up to `LOCATIONS_PER_FILE` entries; a job needing more gets a file to itself):
    with one file per job, a workflow of ingested raws wrote a file for every job.
    """
    by_lfn = {dataset_lfn(name, dict(data_id)): path for (name, data_id), path in off_template.items()}
    _write_shared_input_files(workflow, by_lfn, submit_dir / "input_locations", "--input-locations")


def _write_shared_input_files(
    workflow: GenericWorkflow, by_lfn: dict[str, Any], directory: Path, option: str
) -> None:
    """Write ``{lfn: value}`` of the overall inputs of a built workflow's jobs (`_write_grouped_inputs`)."""

    def add_arguments(jobs: list[Any], arguments: list[str]) -> None:
        for job in jobs:
            job.arguments += arguments

    reading = ((job, [f.lfn for f in job.inputs if f.producer is None]) for job in workflow.jobs.values())
    _write_grouped_inputs(reading, by_lfn, directory, option, add_arguments)


def _write_grouped_inputs(
    reading: Iterable[tuple[Any, list[str]]],
    by_lfn: dict[str, Any],
    directory: Path,
    option: str,
    add_arguments: Callable[[list[Any], list[str]], None],
) -> None:
    """Write ``{lfn: value}`` of the overall inputs into files shared by consecutive jobs.

    ``reading`` gives each job (in the workflow's order) with the names of its overall
    inputs. Each job reading any of ``by_lfn`` gets ``option PATH`` on its command line
    (``add_arguments``); see `_InputGroups`.
    """
    if not by_lfn:
        return
    groups = _InputGroups(by_lfn, directory, option)
    for job, lfns in reading:
        groups.add(job, lfns)
    for members, arguments in groups.close():
        add_arguments(members, arguments)


#: What `_InputGroups` looks up for a name that has no value (None may be a value).
_UNKNOWN = object()


class _InputGroups:
    """Files ``directory/NNNNNN.json`` of ``{lfn: value}`` for consecutive jobs, fed one job at a time.

    A file holds at most `LOCATIONS_PER_FILE` entries, except that one job's entries are
    never split across files. `close` writes the last file and returns, per file, its jobs
    and the arguments ``[option, PATH]`` they need.
    """

    def __init__(self, by_lfn: dict[str, Any], directory: Path, option: str) -> None:
        self._by_lfn = by_lfn
        self._directory = directory
        self._option = option
        self._group: dict[str, Any] = {}
        self._members: list[Any] = []
        self._written: list[tuple[list[Any], list[str]]] = []

    def add(self, job: Any, lfns: list[str]) -> None:
        self.add_many([(job, lfns)])

    def add_many(self, reading: Iterable[tuple[Any, list[str]]]) -> None:
        """`add` of each ``(job, lfns)`` in turn: one call for many jobs, most of which read one input."""
        by_lfn = self._by_lfn
        group, members = self._group, self._members
        for job, lfns in reading:
            if len(lfns) == 1:
                lfn = lfns[0]
                if lfn not in by_lfn:
                    continue
                if members and len(group) + 1 > LOCATIONS_PER_FILE:
                    self._flush()
                    group, members = self._group, self._members
                group[lfn] = by_lfn[lfn]
            else:
                mine = {lfn: by_lfn[lfn] for lfn in lfns if lfn in by_lfn}
                if not mine:
                    continue
                if members and len(group) + len(mine) > LOCATIONS_PER_FILE:
                    self._flush()
                    group, members = self._group, self._members
                group.update(mine)
            members.append(job)

    def add_columns(self, jobs: list[Any], counts: list[int], lfns: list[str]) -> None:
        """`add_many` of jobs given as columns: ``counts[i]`` of ``lfns`` are those of ``jobs[i]``.

        Runs of jobs reading one input each (nearly all, reading a raw) fill the groups by
        slices; a job reading several is added alone.
        """
        done = at = 0
        for several in compress(range(len(counts)), map(ne, counts, repeat(1))):
            self._add_singles(jobs[done:several], lfns[at : at + several - done])
            at += several - done
            self.add_many([(jobs[several], lfns[at : at + counts[several]])])
            at += counts[several]
            done = several + 1
        self._add_singles(jobs[done:], lfns[at:])

    def _add_singles(self, jobs: list[Any], lfns: list[str]) -> None:
        """`add_many` of ``jobs[i]`` reading ``lfns[i]`` alone, by slices of what fits in a file.

        As `add_many`: a file is closed when it holds `LOCATIONS_PER_FILE` names before the
        next job's (an input read by two jobs of a file counts once).

        Each name is looked up once (``get`` with a marker for the unknown), not once to
        know it is there and again for its value: a million look-ups in a dict of a million
        names at 10^6 quanta, each mostly a cache miss.
        """
        values = list(map(self._by_lfn.get, lfns, repeat(_UNKNOWN)))
        if any(map(is_, values, repeat(_UNKNOWN))):
            known = list(map(is_not, values, repeat(_UNKNOWN)))
            jobs, lfns, values = (
                list(compress(jobs, known)),
                list(compress(lfns, known)),
                list(compress(values, known)),
            )
        i = 0
        while i < len(jobs):
            room = LOCATIONS_PER_FILE - len(self._group)
            if room <= 0:
                if self._members:
                    self._flush()
                    continue
                room = 1
            self._group.update(zip(lfns[i : i + room], values[i : i + room], strict=True))
            self._members.extend(jobs[i : i + room])
            i += room

    def close(self) -> list[tuple[list[Any], list[str]]]:
        self._flush()
        return self._written

    def _flush(self) -> None:
        if self._members:
            self._directory.mkdir(exist_ok=True)
            path = self._directory / f"{len(self._written):06d}.json"
            # not synced, as the DAG and workflow.json: written before anything is submitted,
            # so a crash means preparing again (a sync per file was ~1,000 syncs at 10^6 jobs)
            try:
                atomic_write.atomic_write_text(path, json.dumps(self._group), fsync=False)
            except OSError as err:
                raise PrepareError(
                    f"cannot write {path}: {err.strerror or err}; free space in or choose another submit_dir"
                ) from None
            self._written.append((self._members, [self._option, str(path)]))
        self._group, self._members = {}, []


def _input_checks(repo: str, graph: Any) -> dict[tuple[str, Any], tuple[int | None, str | None]]:
    """Registered ``(size, checksum)`` of the graph's overall inputs, for jobs to verify on stage-in."""
    from supertask.repo.butler import Butler

    inputs = [d for d in graph.initialInputs() if d.id is not None]
    if not inputs:
        return {}
    butler = Butler(repo, writeable=False)
    try:
        records = butler.registry.getDatasetRecords(inputs)
    finally:
        butler.close()
    return {d.key: records[d.id][1:] for d in inputs if d.id in records}


def _write_input_checks(
    workflow: GenericWorkflow, checks: dict[tuple[str, Any], tuple[int | None, str | None]], submit_dir: Path
) -> None:
    """Give each job reading overall inputs an ``--input-checks`` file of their registered size and checksum.

    Grouped like the input-locations files, so a job verifies what it stages in without a registry.
    """
    by_lfn = {dataset_lfn(name, dict(data_id)): list(check) for (name, data_id), check in checks.items()}
    _write_shared_input_files(workflow, by_lfn, submit_dir / "input_checks", "--input-checks")
