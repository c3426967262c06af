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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clustering import ClusterRule
from .config import ResolvedConfig
from .finalize import WORKFLOW_FILE
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
    from supertask.graph.quantum_graph import QuantumGraph

    graph = QuantumGraph.load(graph_file)
    if not len(graph):
        raise PrepareError(f"graph {graph_file} has no quanta: nothing to run")
    output_run = graph.metadata.get("output_run") or c.output_run
    _check_schemas(c.repo, graph.metadata, c.output_run or output_run)
    if c.output_run and output_run != c.output_run:
        graph_file = _retarget(graph, graph_file, c.repo, c.output_run, submit_dir)
        output_run = c.output_run
    _check_labels(resolved, {q.taskLabel for q in graph})
    path_of, off_template = _locator(c.repo, graph)
    options = BuildOptions(
        name=safe_name(f"{output_run}"),
        submit_dir=str(submit_dir),
        graph_file=str(graph_file),
        repo=str(c.repo),
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
    workflow = build_workflow(iter(graph), options, path_of)
    checks = _input_checks(c.repo, graph)
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
    save_workflow(workflow, submit_dir / WORKFLOW_FILE)
    main_file = service.prepare(workflow) if service is not None else None
    return Prepared(submit_dir=submit_dir, workflow=workflow, main_file=main_file, messages=messages)


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


def _check_schemas(repo: str | None, metadata: dict[str, Any], output_run: str) -> None:
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


def _retarget(graph: Any, graph_file: Path, repo: str | None, output_run: str, submit_dir: Path) -> Path:
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


def _graph_file(resolved: ResolvedConfig, submit_dir: Path) -> Path:
    """The existing graph file, or a new one planned from the pipeline into the submit directory."""
    c = resolved.config
    if c.qgraph:
        path = Path(c.qgraph).absolute()
        if not path.is_file():
            raise PrepareError(f"qgraph {path} ({resolved.source_of('qgraph')}) does not exist")
        return path
    from supertask.graph.builder import build_quantum_graph
    from supertask.repo.butler import Butler
    from supertask.repo.registry import OutputExistsError, RunConflictError

    pipeline = _load_pipeline(c.pipeline, c.subset)
    butler = Butler(c.repo, collections=c.input_collections or None)
    try:
        graph, report = build_quantum_graph(
            pipeline,
            butler,
            where=c.where or None,
            input_collections=list(c.input_collections) or None,
            output_run=c.output_run,
            skip_existing_in=list(c.skip_existing_in),
            skip_existing=c.skip_existing,
        )
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


def _locator(repo: str | None, graph: Any) -> tuple[Any, dict[tuple[str, Any], str]]:
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
    """Write ``{lfn: value}`` of the overall inputs into files shared by consecutive jobs.

    Each job reading any of ``by_lfn`` gets ``option PATH`` on its command line; a file
    holds at most `LOCATIONS_PER_FILE` entries, except that one job's entries are never
    split across files.
    """
    if not by_lfn:
        return
    group: dict[str, Any] = {}
    members: list[Any] = []
    count = 0

    def flush() -> None:
        nonlocal group, members, count
        if members:
            directory.mkdir(exist_ok=True)
            path = directory / f"{count:06d}.json"
            atomic_write_text(path, json.dumps(group))
            for job in members:
                job.arguments += [option, str(path)]
            count += 1
        group, members = {}, []

    for job in workflow.jobs.values():
        mine = {f.lfn: by_lfn[f.lfn] for f in job.inputs if f.producer is None and f.lfn in by_lfn}
        if not mine:
            continue
        if members and len(group) + len(mine) > LOCATIONS_PER_FILE:
            flush()
        group.update(mine)
        members.append(job)
    flush()


def _input_checks(repo: str | None, graph: Any) -> dict[tuple[str, Any], tuple[int | None, str | None]]:
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
