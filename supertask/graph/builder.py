"""Preflight: from a pipeline, a repository and an expression, the whole plan (DMTN-055 section 7).

`QuantumGraphBuilder` follows the seed: it instantiates every task (configs frozen),
collects the overall-input and output dataset types, and `makeGraph` calls each task's
``defineQuanta`` in pipeline order. Two things are added to the seed's procedure,
both from what users of the reference middleware run into: a too-loose expression makes
the planning query explode, "tract slicing" truncates gathering tasks at tile edges, and
empty graphs come with no explanation:

1. Before any quanta are defined, the builder *plans* the quantum data IDs of every
   task backwards through the pipeline: the expression selects the quanta a campaign
   is about; a task that gathers inputs (all detectors of a visit, every warp of a
   patch) may need datasets that the expression did not select, and the producers of
   those are planned too. Inputs are therefore never sliced by the expression.
2. What the plan cannot do is reported: quanta whose inputs cannot exist are pruned
   (with a reason per task), and an empty graph comes with an explanation.

`build_quantum_graph` is the whole request (size check, RepoGraph, builder,
skip-existing, QuantumGraph) used by the command line and the notebook API.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from ..execution.existing_outputs import OutputPolicy, classify_existing, find_registered
from ..execution.schema_outputs import check_schemas
from ..gc_pause import gc_paused
from ..heap_trim import trim_heap
from ..options import DEFAULT_MAX_ROWS as DEFAULT_MAX_ROWS  # the size limit's default, where it was defined
from ..options import PlanRequest, from_keywords
from ..repo.dataid import DataId
from ..repo.dataset import Dataset, DatasetType
from ..repo.registry import RowLimitError
from ..repo.units import sort_data_ids
from ..schemas import DatasetSchema, SchemaError, SchemaSource, schemas_to_json
from .quanta import PlannedRepoGraph, PruneRecord, _common_keys, _locality_order, _project_all

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..quantum import Quantum
    from .quantum_graph import QuantumGraph

_LOG = logging.getLogger("supertask.graph.builder")


class GraphBuilderError(RuntimeError):
    """A preflight request cannot be planned; the message says why and what to change."""


class EmptyGraphError(GraphBuilderError):
    """The request selects no work; the message explains which constraint or input emptied it."""


class QueryTooLargeError(GraphBuilderError):
    """The planning query would return more rows than the limit."""


@dataclass
class BuildReport:
    """What preflight found, beyond the graph itself."""

    rows: int = 0
    pruned: dict[str, PruneRecord] = field(default_factory=dict)
    skipped_existing: dict[str, int] = field(default_factory=dict)
    expanded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: wall-clock seconds per preflight step (makeRepoGraph, planning,
    #: defineQuanta per label, QuantumGraph construction), so a slow plan says where it went
    timings: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Human-readable lines for the command line."""
        out = [f"planning query: {self.rows} rows"]
        for label, n in self.expanded.items():
            if n:
                out.append(
                    f"{label}: {n} quanta added outside the expression because later tasks gather their outputs"
                )
        for label, record in self.pruned.items():
            out.append(f"{label}: {record.count} quanta pruned (inputs cannot exist), e.g.:")
            out.extend(f"    {example}" for example in record.examples)
        for label, n in self.skipped_existing.items():
            if n:
                out.append(f"{label}: {n} quanta skipped, their outputs exist already (skip-existing)")
        return out


class QuantumGraphBuilder:
    """Instantiate a pipeline's tasks and turn a RepoGraph into a QuantumGraph.

    Parameters
    ----------
    pipeline : `Pipeline`
        The pipeline; its tasks are instantiated here (which freezes their configs).
    butler : `Butler`, optional
        Passed to each task's constructor (seed section 4); may be ``None``.
    expand_inputs : `bool`
        If `True` (default), gathering tasks receive every related input regardless
        of the expression, and the quanta producing those inputs are planned. If
        `False`, the expression also restricts gathered inputs (the reference
        middleware's behaviour, which truncates gathering at tile edges).
    """

    def __init__(self, pipeline: Pipeline, butler: Any = None, *, expand_inputs: bool = True):
        self.pipeline = pipeline
        self.expand_inputs = expand_inputs
        # Tasks read their input schemas through a dict-backed source holding the schemas
        # of the tasks before them, falling back to the repository (DMTN-055 section 7).
        source = SchemaSource(fallback=butler)
        self.tasks = list(pipeline.makeTasks(butler=source))
        self.configs: dict[str, Any] = {task.label: task.config for task in self.tasks}
        #: the output schemas, by dataset type name: the run records each in its RUN
        self.schemas: dict[str, DatasetSchema] = {}
        self.producers: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        self.datasetTypes: dict[str, DatasetType] = {}
        for task in self.tasks:
            classes = task.getDatasetClasses()
            for datasetType in classes["outputs"].values():
                other = self.producers.get(datasetType.name)
                if other is not None and other is not task:
                    raise GraphBuilderError(
                        f"dataset type {datasetType.name!r} is written by both {other.label!r} and "
                        f"{task.label!r}; rename one output in its config"
                    )
                if not set(datasetType.units) <= set(task.quantumUnits):
                    raise GraphBuilderError(
                        f"task {task.label!r}: output {datasetType.name!r} has units {datasetType.units} that "
                        f"are not among the quantum units {tuple(task.quantumUnits)}; the default defineQuanta "
                        "cannot place it (write a custom defineQuanta or change quantumUnits)"
                    )
                self.producers[datasetType.name] = task
                self._addType(datasetType)
            for datasetType in classes["inputs"].values():
                self.consumers.setdefault(datasetType.name, []).append(task)
                self._addType(datasetType)
            self.schemas.update(_checked_schemas(task, classes["outputs"].values()))
        #: the schemas of overall inputs that tasks read, from the repository
        self.inputSchemas: dict[str, DatasetSchema] = {
            name: schema for name, schema in source.used.items() if name not in self.schemas
        }
        self.inputDatasetTypes: set[DatasetType] = {
            self.datasetTypes[name] for name in self.consumers if name not in self.producers
        }
        self.outputDatasetTypes: set[DatasetType] = {self.datasetTypes[name] for name in self.producers}

    def schemaRecord(self) -> dict[str, Any]:
        """What a graph records of schemas (its metadata's ``"schemas"``; {} when there are none)."""
        if not self.schemas and not self.inputSchemas:
            return {}
        return {"outputs": schemas_to_json(self.schemas), "inputs": schemas_to_json(self.inputSchemas)}

    def _addType(self, datasetType: DatasetType) -> None:
        known = self.datasetTypes.setdefault(datasetType.name, datasetType)
        if known != datasetType:
            raise GraphBuilderError(
                f"dataset type {datasetType.name!r} is declared twice with different definitions: "
                f"{known} and {datasetType}; make the DatasetFields agree"
            )

    def _relatedCache(self, repoGraph: Any) -> dict[Any, Any]:
        """The look-up cache shared by the planning and defineQuanta views of one RepoGraph."""
        if getattr(self, "_cacheOwner", None) is not repoGraph:
            self._cacheOwner = repoGraph
            self._cache: dict[Any, Any] = {}
        return self._cache

    @property
    def units(self) -> set[str]:
        """Every unit any task's quanta or datasets use: the planning query's units."""
        units: set[str] = set()
        for task in self.tasks:
            units.update(task.quantumUnits)
        for datasetType in self.datasetTypes.values():
            units.update(datasetType.units)
        return units

    # -- planning ---------------------------------------------------------------------
    def planDataIds(self, repoGraph: Any) -> tuple[dict[str, set[DataId]], dict[str, int]]:
        """Quantum data IDs per task label: the expression's selection plus what later tasks need.

        Walks the pipeline backwards; for each intermediate input of a task, the data
        IDs it needs (directly or gathered, unconstrained by the expression) become
        quanta of the producing task.
        """
        prepare = getattr(repoGraph, "_prepareProjections", None)
        if prepare is not None:  # (a RepoGraph: every task's projection from one pass over the rows)
            prepare([task.quantumUnits for task in self.tasks])
        planned: dict[str, set[DataId]] = {
            task.label: set(repoGraph.dataIds(task.quantumUnits)) for task in self.tasks
        }
        selected = {label: len(ids) for label, ids in planned.items()}
        view = PlannedRepoGraph(
            repoGraph, planned, {}, {}, self.expand_inputs, related_cache=self._relatedCache(repoGraph)
        )
        for task in reversed(self.tasks):
            produced_inputs = [
                (datasetType, self.producers[datasetType.name])
                for datasetType in task.getDatasetClasses()["inputs"].values()
                if datasetType.name in self.producers
            ]
            if not produced_inputs or not planned[task.label]:
                continue  # (sorting a first task's million data IDs here would be wasted)
            # (sorted; the graph's own projection when nothing was added to the selection)
            dataIds, taskKeys = view._quantumDataIdsAndKeys(task)
            for datasetType, producer in produced_inputs:
                # The needed data IDs, repeats included: only a look-up of the producer's
                # related quanta needs them distinct (a set of a million data IDs at 10^6
                # would otherwise be built only to be added to another set).
                needed: list[DataId]
                keys: frozenset[str] | None
                if set(datasetType.units) <= set(task.quantumUnits):
                    needed = _project_all(dataIds, datasetType.units)
                    keys = frozenset(datasetType.units)  # (what `_project_all` makes)
                else:
                    related = view.related(dataIds, datasetType.units)
                    keys = view._relatedKeys(datasetType.units)
                    lists = [related[d] for d in dataIds]
                    # Grouped as defineQuanta looks them up (`_locality_order`): the producer's
                    # set below is probed for a group's data IDs while they are in the caches
                    # (a set: the order of ``needed`` changes nothing else).
                    order = _locality_order(dataIds, lists, taskKeys or _common_keys(dataIds), keys)
                    needed = list(
                        chain.from_iterable(lists if order is None else map(lists.__getitem__, order))
                    )
                    if keys is None:
                        keys = _common_keys(needed)
                target = planned[producer.label]
                if set(producer.quantumUnits) <= set(datasetType.units):
                    # (nearly always the needed data IDs are over the producer's units already)
                    target.update(_project_all(needed, producer.quantumUnits, keys))
                else:
                    for ids in view.related(sort_data_ids(set(needed)), producer.quantumUnits).values():
                        target.update(ids)
        expanded = {label: len(ids) - selected[label] for label, ids in planned.items()}
        return planned, expanded

    def makeGraph(
        self,
        repoGraph: Any,
        *,
        existing_outputs: Mapping[str, Mapping[DataId, Dataset]] | None = None,
        report: BuildReport | None = None,
        pipelineYaml: str | None = None,
        metadata: dict[str, Any] | None = None,
        release_repo_graph: bool = False,
        _new_repo_graph: bool = False,
    ) -> QuantumGraph:
        """Call each task's ``defineQuanta`` in order and link the result into a `QuantumGraph`.

        Parameters
        ----------
        repoGraph : `RepoGraph`
            From `makeRepoGraph`; datasets the pipeline will produce are added to it.
        existing_outputs : mapping, optional
            ``{dataset type name: {data ID: Dataset}}`` already present in the output
            run (``--skip-existing``): quanta whose outputs all exist are left out and
            their outputs are used as existing inputs downstream.
        report : `BuildReport`, optional
            Filled with pruning and skipping counts.
        release_repo_graph : `bool`
            The caller is done with ``repoGraph``: drop its rows after planning
            (`RepoGraph.releaseRows`, about 110 MB at 10^6 quanta) and its dataset
            index once the quanta are defined (`RepoGraph.releaseDatasets`, about 85 MB),
            when nothing reads them any more, i.e. every task uses the default
            ``defineQuanta`` over a plain `RepoGraph` and inputs are expanded.
            `build_quantum_graph` does: its RepoGraph is its own.
        _new_repo_graph : `bool`
            (internal) With ``release_repo_graph``: no graph has linked any dataset of
            ``repoGraph`` yet (it was made for this call, as in `build_quantum_graph`),
            so the `QuantumGraph` links them without telling its own from earlier
            graphs' (`QuantumGraph._from_shared`'s ``unlinked``).
        """
        from .quantum_graph import QuantumGraph

        report = report if report is not None else BuildReport()
        tick = time.perf_counter()
        planned, report.expanded = self.planDataIds(repoGraph)
        report.timings["planning"] = time.perf_counter() - tick
        # The defineQuanta pass finds planning's look-ups in the shared cache, whose
        # results are the graph's data IDs themselves: the tables that made them so
        # are not needed any more, and go before the quanta are built (peak memory).
        _release_lookup_tables(repoGraph)
        release = release_repo_graph and self.expand_inputs and self._sharesDatasets(repoGraph)
        if release:
            repoGraph.releaseRows()
        produced: dict[str, dict[DataId, Dataset]] = {}
        view = PlannedRepoGraph(
            repoGraph,
            planned,
            produced,
            report.pruned,
            self.expand_inputs,
            related_cache=self._relatedCache(repoGraph),
        )
        existing_outputs = existing_outputs or {}
        quanta: list[Quantum] = []
        for task in self.tasks:
            outputs = task.getDatasetClasses()["outputs"]
            for datasetType in outputs.values():
                if datasetType.name not in produced:
                    # Over a RepoGraph of its own, the outputs are indexed where addDatasets
                    # puts them already (one dictionary of a million entries, not two).
                    produced[datasetType.name] = repoGraph.datasetIndex(datasetType.name) if release else {}
            tick = time.perf_counter()
            task_quanta = task.defineQuanta(view)
            report.timings[f"defineQuanta[{task.label}]"] = time.perf_counter() - tick
            skipped = 0
            nothing_exists = not any(
                existing_outputs.get(datasetType.name) for datasetType in outputs.values()
            )
            if release and nothing_exists:
                # The default defineQuanta over the graph's own index (``release``): each
                # quantum holds its task already, its outputs are in ``produced`` (which
                # is the graph's index that addDatasets filled) and it has every output
                # type, so the pass below would change nothing (a million quanta at 10^6).
                quanta.extend(task_quanta)
                report.skipped_existing[task.label] = 0
                continue
            if nothing_exists:
                # Nothing of this task exists in the output run (the common case): no
                # quantum can be skipped, so the per-quantum check below is not needed.
                for quantum in task_quanta:
                    quantum.task = task
                    empty = True
                    for datasets in quantum.outputs.values():
                        for dataset in datasets:
                            empty = False
                            name = dataset.datasetType.name
                            index = produced.get(name)
                            if index is None:
                                index = produced[name] = {}
                            index[dataset.dataId] = dataset
                    if empty and outputs:
                        skipped += 1  # as below: a quantum with no outputs has nothing left to do
                        continue
                    quanta.append(quantum)
                report.skipped_existing[task.label] = skipped
                continue
            for quantum in task_quanta:
                quantum.task = task
                if outputs and all(
                    dataset.dataId in existing_outputs.get(dataset.datasetType.name, {})
                    for dataset in quantum.iterOutputs()
                ):
                    # Already done in the output run: consumers read the existing datasets.
                    for dataset in quantum.iterOutputs():
                        produced[dataset.datasetType.name][dataset.dataId] = existing_outputs[
                            dataset.datasetType.name
                        ][dataset.dataId]
                    skipped += 1
                    continue
                for dataset in quantum.iterOutputs():
                    produced.setdefault(dataset.datasetType.name, {})[dataset.dataId] = dataset
                quanta.append(quantum)
            report.skipped_existing[task.label] = skipped
        # The shared look-ups are not needed any more; at 10^6 quanta they hold about a
        # million data IDs, which would otherwise stay alive while the graph is linked.
        self._relatedCache(repoGraph).clear()
        _release_lookup_tables(repoGraph)  # (tables a custom defineQuanta's look-ups made again)
        del view, planned
        if release:
            repoGraph.releaseDatasets()
            # What was just freed goes back to the system before the QuantumGraph links the
            # quanta, the peak of preflight (else at 10^6 a matter of the heap's layout:
            # 1,444 or 1,496 MB of peak RSS from one commit; see `supertask.heap_trim`).
            trim_heap()
        tick = time.perf_counter()
        shared = self._sharesDatasets(repoGraph)
        if not shared:
            _relink_inputs(quanta, produced)
        del produced
        described: dict[str, Any] = {
            "pipelineYaml": pipelineYaml if pipelineYaml is not None else self.pipeline.toYaml(),
            "configs": {label: config.saveToString() for label, config in self.configs.items()},
            "metadata": _with_schemas(metadata or {}, self.schemaRecord()),
        }
        if shared:
            # The existing outputs of skip-existing are found for this call too: with a new
            # RepoGraph, no dataset of the quanta has been linked by a graph before.
            graph = QuantumGraph._from_shared(quanta, unlinked=release and _new_repo_graph, **described)
        else:
            graph = QuantumGraph(quanta, **described)
        report.timings["QuantumGraph"] = time.perf_counter() - tick
        return graph

    def _sharesDatasets(self, repoGraph: Any) -> bool:
        """Whether the quanta of `makeGraph` hold one object per dataset already.

        True when every task uses the default ``defineQuanta`` over a plain `RepoGraph`:
        its inputs are the graph's own datasets (one per type and data ID, from
        `RepoGraph.findDatasets`) or the objects in the builder's index of produced and
        existing outputs, and its outputs come from `RepoGraph.addDatasets`, which
        returns the graph's handle for a dataset it holds. The `QuantumGraph` then links
        by identity, and re-pointing inputs at the produced objects would change nothing.
        A custom ``defineQuanta`` or graph may build equal datasets as distinct objects:
        those quanta go through the sharing pass.
        """
        from ..repo.repograph import RepoGraph
        from ..supertask import SuperTask

        return type(repoGraph) is RepoGraph and all(
            type(task).defineQuanta is SuperTask.defineQuanta for task in self.tasks
        )


class _InputSchemas:
    """``getSchema`` over a butler's repository, searching the request's input collections."""

    def __init__(self, butler: Any, collections: Sequence[str]):
        self.butler = butler
        self.collections = list(collections)

    def getSchema(self, name: str) -> DatasetSchema:
        getter = getattr(self.butler, "getSchema", None)
        if getter is None:
            raise SchemaError(
                f"no schema of {name!r}: the repository given to planning cannot look schemas up"
            )
        schema: DatasetSchema = getter(name, collections=self.collections)
        return schema


def _checked_schemas(task: Any, outputs: Iterable[DatasetType]) -> dict[str, DatasetSchema]:
    """A task's `getDatasetSchemas`, refused unless each names one of its outputs with a `DatasetSchema`."""
    schemas = task.getDatasetSchemas() or {}
    names = {datasetType.name for datasetType in outputs}
    for name, schema in schemas.items():
        if name not in names:
            raise GraphBuilderError(
                f"task {task.label!r}: getDatasetSchemas() names {name!r}, which is not one of its outputs "
                f"{sorted(names)}; key the schemas by the configured output dataset type names"
            )
        if not isinstance(schema, DatasetSchema):
            raise GraphBuilderError(
                f"task {task.label!r}: getDatasetSchemas()[{name!r}] is a {type(schema).__name__}, not a "
                "DatasetSchema; return DatasetSchema.from_dtype(dtype)"
            )
    return dict(schemas)


def _with_schemas(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    if not record:
        return metadata
    return {**metadata, "schemas": record}


def _release_lookup_tables(repoGraph: Any) -> None:
    """`RepoGraph.releaseLookupTables`, for a graph that has it (a graph of one's own may not)."""
    release = getattr(repoGraph, "releaseLookupTables", None)
    if release is not None:
        release()


def _relink_inputs(quanta: list[Any], produced: Mapping[str, Mapping[DataId, Dataset]]) -> None:
    """Make each intermediate input the very object its producer outputs (or the existing dataset)."""
    for quantum in quanta:
        for name, datasets in quantum.inputs.items():
            index = produced.get(name)
            if index:
                quantum.inputs[name] = [index.get(d.dataId, d) for d in datasets]


def explain_empty(pipeline_units: Iterable[str], repoGraph: Any, report: BuildReport) -> str:
    """Why a graph came out empty, in words an operator can act on."""
    lines = []
    if not repoGraph.rows:
        lines.append(repoGraph.explainEmpty())
    else:
        lines.append(f"the planning query selected {len(repoGraph.rows)} rows, but every quantum was pruned:")
        for record in report.pruned.values():
            lines.append(f"  {record.label}: {record.count} pruned, e.g. {record.examples[0]}")
        if any(report.skipped_existing.values()):
            lines.append("  (or skipped: their outputs already exist in the output run)")
            for label, n in report.skipped_existing.items():
                if n:
                    lines.append(f"  {label}: {n} skipped because --skip-existing found their outputs")
    return "\n".join(lines)


def _check_output_run(registry: Any, graph: QuantumGraph, output_run: str, policy: OutputPolicy) -> None:
    """Refuse a plan into an existing RUN made with another pipeline or config, or whose
    quanta would write outputs registered there (skipped quanta are out of the graph already).
    """
    from ..repo.registry import RunConflictError
    from ..repo.registry.run_provenance import mismatch_message

    try:
        stored = registry.getRunProvenance(output_run)
    except (KeyError, AttributeError):
        return  # a new RUN: nothing can be in the way
    refusal = mismatch_message(output_run, stored, {"pipeline": graph.pipelineYaml, "configs": graph.configs})
    if refusal:
        raise RunConflictError(refusal)
    classify_existing(graph, registry, output_run, OutputPolicy(clobber_outputs=policy.clobber_outputs))


def package_versions() -> dict[str, str]:
    """Versions of the software that planned the graph (never the environment: it holds secrets)."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in ("supertask", "numpy", "scipy", "sqlalchemy", "pydantic", "zstandard"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def build_quantum_graph(
    pipeline: Pipeline,
    butler: Any,
    request: PlanRequest | None = None,
    **keywords: Any,
) -> tuple[QuantumGraph, BuildReport]:
    """Plan a whole request: size check, RepoGraph, builder, skip-existing.

    Planning into a RUN that exists already: quanta whose outputs all exist in the
    output run are left out with ``skip_existing`` or ``extend_run`` (in other
    collections: ``skip_existing_in``), and their consumers read the existing datasets;
    a quantum with any output registered in the output run is otherwise refused
    (`OutputExistsError`), unless ``clobber_outputs`` (the run will unregister them).
    A RUN recorded with another pipeline or task configs is refused (`RunConflictError`).

    Parameters
    ----------
    pipeline : `Pipeline`
        What to plan.
    butler : `Butler`
        The repository.
    request : `PlanRequest`, optional
        The request (where, bind, input collections, output run, output policy, size
        limit, ...).
    **keywords
        Instead of ``request``: its fields as keyword arguments (``output_run=...,
        where=...``), from which the `PlanRequest` is built.

    Raises
    ------
    OptionsError
        An option's value or a combination of options cannot be honoured.
    OutputExistsError
        Outputs of the plan are registered in the output run and no option says what to do.
    RunConflictError
        The output RUN was made with another pipeline or configs.
    QueryTooLargeError
        When the planning query would return more than ``max_rows`` rows
        (``max_rows=None`` disables the check).
    EmptyGraphError
        When nothing is selected, with the explanation (unless ``allow_empty``).
    """
    request = from_keywords(PlanRequest, request, keywords, "build_quantum_graph")
    with gc_paused():
        return _build_quantum_graph(pipeline, butler, request)


def _build_quantum_graph(
    pipeline: Pipeline, butler: Any, request: PlanRequest
) -> tuple[QuantumGraph, BuildReport]:
    from ..repo.repograph import makeRepoGraph

    start = time.perf_counter()
    report = BuildReport()
    # The checks a pipeline file gets when it is read, for pipelines built in Python too:
    # a misspelt input must be named here, not found missing in the repository later.
    pipeline.validate()
    collections = list(request.input_collections or butler.collections or [])
    # Schemas of overall inputs that tasks read come from the input collections.
    builder = QuantumGraphBuilder(
        pipeline, _InputSchemas(butler, collections), expand_inputs=request.expand_inputs
    )
    where, bind, output_run, max_rows = request.where, request.bind, request.output_run, request.max_rows
    units = sorted(builder.units)
    registry = butler.registry
    tick = time.perf_counter()
    try:
        repoGraph = makeRepoGraph(
            butler,
            builder.inputDatasetTypes,
            builder.outputDatasetTypes,
            where,
            bind=bind,
            collections=collections,
            maxRows=max_rows,
        )
    except RowLimitError:
        # Fetching stopped at the limit; count the whole selection for the message only.
        rows = registry.countDataIds(units, where=where, bind=bind)
        raise QueryTooLargeError(
            f"the planning query selects {rows} rows (limit {max_rows}); constrain the expression "
            f"(e.g. add a tract, patch or visit constraint: where={where!r}) or raise the limit "
            "(--max-rows N, or 0 for no limit)"
        ) from None
    report.rows = len(repoGraph.rows)
    _LOG.info("planning query over %s: %d rows", units, report.rows)
    report.timings["makeRepoGraph"] = time.perf_counter() - tick
    existing: dict[str, dict[DataId, Dataset]] = {}
    skip_in = request.skip_collections(output_run)
    if skip_in:
        names = [datasetType.name for datasetType in builder.outputDatasetTypes]
        for (name, dataId), dataset in find_registered(registry, names, skip_in).items():
            existing.setdefault(name, {})[dataId] = dataset
    metadata = {
        "output_run": output_run,
        "input_collections": collections,
        "where": where or "",
        "bind": dict(bind or {}),
        "command_line": request.command_line,
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repo": str(getattr(butler, "root", "")),
    }
    graph = builder.makeGraph(
        repoGraph,
        existing_outputs=existing,
        report=report,
        metadata=metadata,
        release_repo_graph=True,
        _new_repo_graph=True,
    )
    if builder.schemas:  # a RUN never mixes schemas (whatever else is in the way)
        check_schemas(butler, output_run, builder.schemas)
    # What the plan left out because it was done already (bps campaign reports the reuse per tile).
    reused = {label: n for label, n in report.skipped_existing.items() if n}
    if reused:
        graph.metadata["skipped_existing"] = reused
    _check_output_run(registry, graph, output_run, request.policy)
    report.seconds = time.perf_counter() - start
    if len(graph) == 0 and not request.allow_empty:
        raise EmptyGraphError("the quantum graph is empty: " + explain_empty(units, repoGraph, report))
    return graph, report
