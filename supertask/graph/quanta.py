"""The default ``defineQuanta``: one quantum per distinct combination of a task's quantum units.

Why it is written this way
--------------------------
"Tract slicing" is the trap: applying the user's expression to every data ID drops
(visit, detector) work and truncates gathering tasks at the edges of a sky tile. Here the expression only selects
*which quanta* a campaign is about (through `PlannedRepoGraph.quantumDataIds`); the
inputs of each quantum are then looked up through the unit relations *without* the
expression (`RepoGraph.relatedDataIds`), so a task that gathers all detectors of a
visit sees every detector even when ``tract = 0`` touches only some of them. The
builder (`supertask.graph.builder`) makes sure the quanta that produce such inputs are
planned too.

Input rules, per input dataset type ``T`` of a task with quantum units ``Q``:

- ``units(T) ⊆ Q``: exactly one dataset, ``dataId.subset(units(T))``; if it cannot
  exist the quantum is pruned;
- otherwise ``T`` is *gathered*: every related dataset that exists or will be
  produced; the quantum is pruned only if none does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, is_, itemgetter
from typing import TYPE_CHECKING, Any, cast

from ..quantum import Quantum
from ..repo.dataid import DataId
from ..repo.dataset import Dataset, DatasetType
from ..repo.repograph import RepoGraph
from ..repo.units import sort_data_ids

if TYPE_CHECKING:
    from ..supertask import SuperTask


@dataclass
class PruneRecord:
    """Why quanta of one task were not planned."""

    label: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, message: str, max_examples: int = 5) -> None:
        self.count += 1
        if len(self.examples) < max_examples:
            self.examples.append(message)


class PlannedRepoGraph:
    """A `RepoGraph` seen by one task during `QuantumGraphBuilder.makeGraph`.

    It adds to the repository graph what the builder planned: the quantum data IDs
    of each task (the expression's selection plus what downstream tasks need), an
    index of the datasets produced so far, and a record of pruned quanta. Every other
    attribute is the underlying RepoGraph's, so a custom ``defineQuanta`` can use the
    seed's interface unchanged.

    ``planned`` comes from `QuantumGraphBuilder.planDataIds`: each task's set holds at
    least the graph's own data IDs over the task's quantum units (the expression's
    selection), which `quantumDataIds` relies on.
    """

    def __init__(
        self,
        repoGraph: Any,
        planned: dict[str, set[DataId]],
        produced: dict[str, dict[DataId, Dataset]],
        prunes: dict[str, PruneRecord],
        expand_inputs: bool = True,
        related_cache: dict[tuple[tuple[str, ...], tuple[DataId, ...]], dict[DataId, list[DataId]]]
        | None = None,
    ):
        self._repoGraph = repoGraph
        self._planned = planned
        self._produced = produced
        self._prunes = prunes
        self._expand_inputs = expand_inputs
        # The builder's planning and its defineQuanta pass ask the same unconstrained
        # look-ups (one registry query each); sharing this cache between the two views
        # halves the queries. Keyed by the exact sequence of data IDs asked about.
        self._related_cache = related_cache if related_cache is not None else {}
        self._sorted_cache: dict[str, tuple[int, list[DataId], frozenset[str] | None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repoGraph, name)

    @property
    def repoGraph(self) -> Any:
        """The underlying repository graph."""
        return self._repoGraph

    def quantumDataIds(self, task: SuperTask) -> list[DataId]:
        """The data IDs of the quanta planned for ``task``, sorted."""
        return self._quantumDataIdsAndKeys(task)[0]

    def _quantumDataIdsAndKeys(self, task: SuperTask) -> tuple[list[DataId], frozenset[str] | None]:
        """`quantumDataIds`, and the keys every one of them has when the graph guarantees them.

        The keys are known without looking at the data IDs when they are a `RepoGraph`'s
        projection onto the task's units (`RepoGraph.dataIds`: exactly the expanded
        units); otherwise they are `None` (the caller finds them out if it needs them).
        """
        planned = self._planned.get(task.label)
        if planned is None:
            return sort_data_ids(set(self._repoGraph.dataIds(task.quantumUnits))), None
        cached = self._sorted_cache.get(task.label)
        if cached is None or cached[0] != len(planned):
            # The planned sets only grow, so an unchanged size means an unchanged set.
            selected = self._repoGraph.dataIds(task.quantumUnits)
            if len(selected) == len(planned):
                # Planning started from the expression's selection and added nothing: the
                # graph's projection is that very set, already sorted (10^6 sorts saved).
                keys = None
                if type(self._repoGraph) is RepoGraph:
                    keys = frozenset(self._repoGraph.universe.expand(task.quantumUnits))
                cached = (len(planned), selected, keys)
            else:
                cached = (len(planned), sort_data_ids(planned), None)
            self._sorted_cache[task.label] = cached
        return list(cached[1]), cached[2]

    def _relatedKeys(self, toUnits: Iterable[str]) -> frozenset[str] | None:
        """The keys every data ID of `related` over ``toUnits`` has, when the graph guarantees them.

        A `RepoGraph`'s `~RepoGraph.relatedDataIds` makes them all over the expanded
        ``toUnits``; for another graph, or inputs restricted to the rows, `None`.
        """
        toUnits = tuple(toUnits)
        if toUnits and self._expand_inputs and type(self._repoGraph) is RepoGraph:
            return frozenset(self._repoGraph.universe.expand(toUnits))
        return None

    def related(self, dataIds: Sequence[DataId], toUnits: Iterable[str]) -> dict[DataId, list[DataId]]:
        """Data IDs over ``toUnits`` related to each of ``dataIds``.

        Unconstrained by the expression unless the builder was told to restrict
        inputs (``expand_inputs=False``), in which case only related data IDs that
        appear together in the selected rows count.

        Results are cached per (``toUnits``, ``dataIds``) and shared: treat them as read-only.
        """
        toUnits = tuple(sorted(toUnits))
        if not toUnits:
            return {d: [DataId()] for d in dataIds}
        key = (toUnits, tuple(dataIds))
        cached = self._related_cache.get(key)
        if cached is None:
            cached = self._related_cache[key] = self._computeRelated(key[1], toUnits)
        return cached

    def _computeRelated(
        self, dataIds: Sequence[DataId], toUnits: tuple[str, ...]
    ) -> dict[DataId, list[DataId]]:
        if self._expand_inputs:
            related: dict[DataId, list[DataId]] = self._repoGraph.relatedDataIds(dataIds, toUnits)
            return related
        wanted = set(dataIds)
        fromUnits = frozenset().union(*(d.units for d in dataIds)) if dataIds else frozenset()
        result: dict[DataId, set[DataId]] = {d: set() for d in dataIds}
        for row in self._repoGraph.rows:
            key = row.subset(fromUnits)
            if key in wanted:
                result[key].add(row.subset(toUnits))
        return {k: sort_data_ids(v) for k, v in result.items()}

    def existingOrPlanned(self, datasetType: DatasetType, dataIds: Iterable[DataId]) -> dict[DataId, Dataset]:
        """Datasets of ``datasetType`` that exist in the inputs or will be produced by an earlier task."""
        dataIds = list(dataIds)
        produced = self._produced.get(datasetType.name)
        if produced is not None:
            return {d: produced[d] for d in dataIds if d in produced}
        found: dict[DataId, Dataset] = self._repoGraph.findDatasets(datasetType.name, dataIds)
        return found

    def _existingOrPlannedList(
        self, datasetType: DatasetType, dataIds: Sequence[DataId], *, exact: bool = False
    ) -> list[Dataset | None]:
        """`existingOrPlanned` as a list aligned with ``dataIds`` (`None` where there is none).

        What `define_quanta_by_units` asks for a non-gathered input: one look-up per
        quantum, without a set of a million data IDs or a dictionary keyed by them.
        ``exact``: every data ID has exactly the type's units (see `RepoGraph.findDatasetList`).
        """
        produced = self._produced.get(datasetType.name)
        if produced is not None:
            aligned = _aligned_values(produced, dataIds)
            if aligned is not None:
                return cast("list[Dataset | None]", aligned)
            get = produced.get
            return [get(d) for d in dataIds]
        findList = getattr(self._repoGraph, "findDatasetList", None)
        if findList is not None:
            # (``exact`` is RepoGraph's: a graph of one's own, or a subclass's override, may not take it)
            found: list[Dataset | None] = (
                findList(datasetType.name, dataIds, exact=True)
                if exact and type(self._repoGraph) is RepoGraph
                else findList(datasetType.name, dataIds)
            )
            return found
        byId: dict[DataId, Dataset] = self._repoGraph.findDatasets(datasetType.name, set(dataIds))
        get = byId.get
        return [get(d) for d in dataIds]

    def prune(self, label: str, message: str) -> None:
        """Record that a quantum of ``label`` was not planned, and why."""
        self._prunes.setdefault(label, PruneRecord(label)).add(message)


def _aligned_values(index: dict[DataId, Dataset], dataIds: Sequence[DataId]) -> list[Dataset] | None:
    """``[index[d] for d in dataIds]`` when the index's keys are the very objects ``dataIds``, in order.

    Then the index's values are the answer as they are, found in one C-level pass that
    compares pointers: no data ID is hashed (a Python-level ``__hash__`` call and a
    look-up in a dictionary of a million entries, about 0.3 s per million). This is the
    common case of preflight, where an input's datasets were indexed by the very data
    IDs, in the very order, of the quanta that read them (a task's raws, or the outputs
    of a task with the same quanta). `None` otherwise: the caller looks each one up.
    """
    if len(index) != len(dataIds) or not all(map(is_, index, dataIds)):
        return None
    return list(index.values())


#: gathered data IDs per quantum from which `_locality_order` groups the look-ups
_GROUP_FROM = 8


def _locality_order(
    dataIds: Sequence[DataId],
    related: Sequence[Sequence[DataId]],
    keys: frozenset[str] | None,
    toKeys: frozenset[str] | None,
) -> list[int] | None:
    """An order of the quanta in which to look their gathered inputs up, or `None` for their own.

    A quantum's related data IDs all have its values on the keys the two share (a warp's
    calexps have its instrument and visit), so quanta that agree on those keys gather from
    one group of datasets. Looking the quanta up grouped by those values, not in their
    sorted order (makeWarp's is by patch first, so each quantum reads another visit), keeps
    a group's data IDs, index entries and datasets in the CPU's caches for the quanta that
    share them: at 10^6 makeWarp's 1.5 million look-ups took 0.7 s instead of 1.2 s. The
    answer is the same in any order (each quantum's list is put at its own place); the
    grouping is only worth its sort when quanta gather several datasets each.
    """
    if keys is None or toKeys is None:
        return None
    shared = sorted(keys & toKeys)
    if not shared or len(shared) == len(keys) or sum(map(len, related)) < _GROUP_FROM * len(dataIds):
        return None
    values = list(map(itemgetter(*shared), map(_values_of, dataIds)))
    try:
        return sorted(range(len(values)), key=values.__getitem__)
    except TypeError:  # values of mixed types under one key: look them up in their own order
        return None


def _is_gathering(datasetType: DatasetType, quantumUnits: Iterable[str]) -> bool:
    return not set(datasetType.units) <= set(quantumUnits)


def define_quanta_by_units(task: SuperTask, repoGraph: Any) -> list[Quantum]:
    """One quantum per planned data ID of ``task.quantumUnits``, with its inputs and outputs.

    Parameters
    ----------
    task : `SuperTask`
        The task; its ``getDatasetClasses()`` says what it reads and writes.
    repoGraph : `PlannedRepoGraph` or `RepoGraph`
        The repository graph; outputs are added to it with ``addDataset`` so that
        later tasks see them.
    """
    planned = repoGraph if isinstance(repoGraph, PlannedRepoGraph) else None
    classes = task.getDatasetClasses()
    inputs: dict[str, DatasetType] = classes["inputs"]
    outputs: dict[str, DatasetType] = classes["outputs"]
    quantumUnits = tuple(task.quantumUnits)
    keys: frozenset[str] | None = None
    if planned is not None:
        dataIds, keys = planned._quantumDataIdsAndKeys(task)
    else:
        dataIds = sort_data_ids(repoGraph.dataIds(quantumUnits))
    if not dataIds:
        return []
    # The keys of the quantum data IDs (found once, in C-level passes, unless the graph
    # guarantees them): projecting them onto those very keys is then no pass at all.
    if keys is None:
        keys = _common_keys(dataIds)

    # Resolve every input type for all quanta at once: one bulk look-up per type, kept
    # as lists aligned with ``dataIds`` (no dictionary keyed by a million data IDs): a
    # gathered type's list of datasets per quantum, or the one dataset (or `None`) of
    # each quantum for a type that is not gathered.
    gathered: dict[str, list[list[Dataset]]] = {}
    single: dict[str, list[Dataset | None]] = {}
    for datasetType in inputs.values():
        if datasetType.name in gathered or datasetType.name in single:
            continue
        if _is_gathering(datasetType, quantumUnits):
            related = (
                planned.related(dataIds, datasetType.units)
                if planned is not None
                else repoGraph.relatedDataIds(dataIds, datasetType.units)
            )
            index = planned._produced.get(datasetType.name) if planned is not None else None
            if index is not None:
                # An earlier task's outputs: its index answers each look-up directly
                # (no set of the million related data IDs, no dict of what was found).
                get = index.get
            else:
                wanted = {d for ids in related.values() for d in ids}
                found = (
                    planned.existingOrPlanned(datasetType, wanted)
                    if planned is not None
                    else repoGraph.findDatasets(datasetType.name, wanted)
                )
                get = found.get
            # (A Dataset is never false: filter(None, ...) drops exactly the data IDs without one.)
            toKeys = planned._relatedKeys(datasetType.units) if planned is not None else None
            lists = [related.get(q, ()) for q in dataIds]
            order = _locality_order(dataIds, lists, keys, toKeys)
            if order is None:
                gathered[datasetType.name] = [list(filter(None, map(get, ids))) for ids in lists]
            else:
                # The same lists, found in an order that keeps what they share in the CPU's caches.
                column: list[list[Dataset]] = [[]] * len(lists)
                for i in order:
                    column[i] = list(filter(None, map(get, lists[i])))
                gathered[datasetType.name] = column
            continue
        projected = _project_all(dataIds, datasetType.units, keys)
        if planned is not None:
            # (every projected data ID has exactly the type's units: `_project_all`)
            single[datasetType.name] = planned._existingOrPlannedList(datasetType, projected, exact=True)
        else:
            byId = repoGraph.findDatasets(datasetType.name, set(projected))
            single[datasetType.name] = [byId.get(d) for d in projected]

    # Each quantum's inputs, or `None` for a quantum that is pruned (an input is missing).
    label = task.label
    names = list(dict.fromkeys(datasetType.name for datasetType in inputs.values()))
    quantumInputs: list[dict[str, list[Dataset]] | None]
    if len(names) == 1:
        # One input type (calibrate's raw, makeWarp's calexps): each quantum's dict made
        # in one comprehension, without a loop over the types and an index per quantum.
        (name,) = names
        if name in single:
            quantumInputs = [{name: [ds]} if ds is not None else None for ds in single[name]]
        else:
            quantumInputs = [{name: datasets} if datasets else None for datasets in gathered[name]]
        columns: list[tuple[str, list[list[Dataset]]]] = []
    else:
        quantumInputs = []
        append = quantumInputs.append
        columns = [
            (
                name,
                gathered[name]
                if name in gathered
                else [[ds] if ds is not None else [] for ds in single[name]],
            )
            for name in names
        ]
        for i in range(len(dataIds)):
            these: dict[str, list[Dataset]] = {}
            for name, column in columns:
                datasets = column[i]
                if not datasets:
                    break
                these[name] = datasets
            else:
                append(these)
                continue
            append(None)
    if any(map(is_, quantumInputs, repeat(None))):
        if planned is not None:
            for i, (dataId, kept) in enumerate(zip(dataIds, quantumInputs, strict=True)):
                if kept is None:
                    # (the first input type in input order that the quantum has none of)
                    first = next((n for n, column in columns if not column[i]), names[0])
                    planned.prune(label, f"{dataId!r}: no {first!r} exists or will be produced")
        dataIds = [d for d, kept in zip(dataIds, quantumInputs, strict=True) if kept is not None]
        quantumInputs = [kept for kept in quantumInputs if kept is not None]

    # Outputs are added in bulk, one call per output type (same datasets, same order per
    # type as one addDataset per quantum; a graph without addDatasets gets those calls),
    # before the quanta are made, so that each quantum is made with its outputs.
    addDatasets = getattr(repoGraph, "addDatasets", None)
    # (``exact`` is RepoGraph's: a graph of one's own, or a subclass's override, may not take it)
    own = type(planned.repoGraph if planned is not None else repoGraph) is RepoGraph
    outputColumns: list[tuple[str, list[Dataset]]] = []
    for datasetType in outputs.values():
        # (the kept data IDs are some of the quantum data IDs: the same keys)
        projected = _project_all(dataIds, datasetType.units, keys)
        if own:
            added = repoGraph.addDatasets(datasetType, projected, exact=True)
        elif addDatasets is not None:
            added = addDatasets(datasetType, projected)
        else:
            added = [repoGraph.addDataset(datasetType, d) for d in projected]
        if len(added) != len(dataIds):
            raise ValueError(
                f"{type(repoGraph).__name__}.addDatasets returned {len(added)} datasets of "
                f"{datasetType.name!r} for {len(dataIds)} data IDs; it must return one per data ID, in order"
            )
        outputColumns.append((datasetType.name, added))
    quantumOutputs: list[dict[str, list[Dataset]]] | None
    if not outputColumns:
        quantumOutputs = None
    elif len(outputColumns) == 1:
        ((name, added),) = outputColumns
        quantumOutputs = [{name: [ds]} for ds in added]
    else:
        outputNames = [name for name, _ in outputColumns]
        quantumOutputs = [
            {name: [ds] for name, ds in zip(outputNames, row, strict=True)}
            for row in zip(*(added for _, added in outputColumns), strict=True)
        ]
    return Quantum._many(label, dataIds, quantumInputs, task, outputs=quantumOutputs)


def _project(dataId: DataId, units: Sequence[str]) -> DataId:
    """``dataId.subset(units)``, without building a new data ID when it already has exactly those keys.

    Most inputs and outputs share their quantum's units, so this saves one data ID per
    quantum and dataset type at 10^6 quanta.
    """
    if len(dataId) == len(units) and dataId._values.keys() == set(units):
        return dataId
    return dataId.subset(units)


def _project_all(
    dataIds: Iterable[DataId], units: Sequence[str], keys: frozenset[str] | None = None
) -> list[DataId]:
    """`_project` of every data ID, in order (the set of ``units`` is built once, not per data ID).

    Every data ID of the result has exactly ``units`` (a data ID lacking one raises
    `KeyError`). ``keys``: the keys every given data ID has, when the caller knows them
    (`_common_keys`); if they are ``units``, the data IDs are their own projections and
    are not looked at one by one (a million quanta per task at 10^6).
    """
    wanted = frozenset(units)
    if keys is not None and keys == wanted:
        # (a copy, even of a list: handing out the list itself saved ~20 ms at 10^6 but made
        # the heap's trim after the indexes are released, and so the peak RSS, a matter of luck)
        return list(dataIds)
    subset = DataId.subset
    return [d if d._values.keys() == wanted else subset(d, units) for d in dataIds]


#: a data ID's ``{unit: value}`` dictionary (C-level, for passes over a million data IDs)
_values_of = attrgetter("_values")


def _common_keys(dataIds: Sequence[DataId]) -> frozenset[str] | None:
    """The keys of ``dataIds`` if they all have the same keys, else `None` (C-level passes only).

    All have the same keys exactly when they all have as many keys as the first and the
    union of their keys is no larger: cheaper than comparing each data ID's keys.
    """
    if not dataIds:
        return None
    values = list(map(_values_of, dataIds))
    first = frozenset(values[0])
    if set(map(len, values)) != {len(first)} or len(set[str]().union(*values)) != len(first):
        return None
    return first
