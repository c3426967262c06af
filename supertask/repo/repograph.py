"""The seed's RepoGraph and ``makeRepoGraph`` (DMTN-055 6.2).

``makeRepoGraph`` runs one joined SELECT over all units of the needed and future dataset
types, restricted by the user's expression and by the existence of the needed datasets,
which the same SELECT finds (their ids and runs); its rows are the campaign selection.
Units and their links are built from those rows with a few bulk look-ups (one per unit
type), never one query per unit.

Gathering tasks must not be sliced by the expression (a coadd would lose the visits
the expression left out at the edge of a tile): `relatedDataIds`
asks the registry again, restricted only by the given data IDs, and `findDatasets`
loads datasets outside the selection on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from operator import is_, itemgetter, ne
from typing import TYPE_CHECKING, Any, cast, overload

from .dataid import DataId
from .dataset import Dataset, DatasetType
from .registry.found import FoundDatasets
from .units import Unit, index_getter, sort_scattered_value_tuples, sort_value_tuples

if TYPE_CHECKING:
    from .butler import Butler
    from .registry import Registry


class RowView(Sequence[DataId]):
    """The graph's rows as `DataId` objects, built on access from value tuples.

    The planning query of a large campaign has a million rows; a `DataId` per row was the
    largest single block of preflight's memory, and the graph itself only needs the
    value tuples. This view keeps the seed's ``RepoGraph.rows`` interface.
    """

    __slots__ = ("_keys", "_values")

    def __init__(self, keys: tuple[str, ...], values: list[tuple[Any, ...]]):
        self._keys = keys
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, i: int) -> DataId: ...

    @overload
    def __getitem__(self, i: slice) -> list[DataId]: ...

    def __getitem__(self, i: int | slice) -> DataId | list[DataId]:
        if isinstance(i, slice):
            return [self._make(v) for v in self._values[i]]
        return self._make(self._values[i])

    def __iter__(self) -> Iterator[DataId]:
        return map(self._make, self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))

    def _make(self, values: tuple[Any, ...]) -> DataId:
        return DataId._from_sorted(dict(zip(self._keys, values, strict=True)))


class _ReleasedRows(RowView):
    """``RepoGraph.rows`` after `RepoGraph.releaseRows`: their number, and a clear error for anything else."""

    __slots__ = ("_count",)

    def __init__(self, keys: tuple[str, ...], count: int):
        super().__init__(keys, [])
        self._count = count

    def __len__(self) -> int:
        return self._count

    def _make(self, values: tuple[Any, ...]) -> DataId:
        raise _rows_released()

    def __getitem__(self, i: int | slice) -> Any:
        raise _rows_released()

    def __iter__(self) -> Iterator[DataId]:
        raise _rows_released()


class _ReleasedIndex(dict[str, dict[DataId, Dataset]]):
    """``RepoGraph._datasetIndex`` after `RepoGraph.releaseDatasets`: empty, and every look-up says why."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            "the datasets of this RepoGraph were released once its quanta were defined "
            "(releaseDatasets); make a new RepoGraph to look datasets up"
        )

    get = setdefault = items = values = keys = __getitem__ = __iter__ = _refuse


def _rows_released() -> RuntimeError:
    return RuntimeError(
        "the rows of this RepoGraph were released after planning (releaseRows); "
        "make a new RepoGraph to look at them again"
    )


def _projector(rowKeys: Sequence[str], keys: Sequence[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function from a row's value tuple (over ``rowKeys``) to its values over ``keys``.

    Raises
    ------
    KeyError
        If a key is not among the row keys.
    """
    try:
        idx = [rowKeys.index(k) for k in keys]
    except ValueError:
        missing = [k for k in keys if k not in rowKeys]
        raise KeyError(f"the graph's rows have no value for {missing}; they have {list(rowKeys)}") from None
    return index_getter(idx)


def _fixedGetter(keys: Sequence[str], member: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function from a tuple over ``keys`` to its values but the one at ``member`` (always a tuple)."""
    return index_getter([i for i in range(len(keys)) if i != member])


def _projector_from_mapping(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function from a mapping to the tuple of its values at ``keys`` (always a tuple)."""
    if not keys:
        return lambda values: ()
    if len(keys) == 1:
        (k,) = keys
        return lambda values: (values[k],)
    return itemgetter(*keys)


class RepoGraph:
    """A subset of a data repository: units, datasets and their relations.

    Built by `makeRepoGraph`; ``units`` and ``datasets`` map type names to sets (read-only
    by convention, DMTN-055); `addDataset` adds the datasets a pipeline will produce.

    Parameters
    ----------
    registry : `Registry`
        The registry the graph was read from (for the unconstrained look-ups).
    collections : sequence of `str`
        Input collections searched for datasets.
    rows : `list` [`DataId`] or `None`
        The constrained rows over all units involved (or ``None`` with ``rowKeys`` and
        ``rowValues``: the same rows as value tuples, as `makeRepoGraph` passes them).
    unitNames : iterable of `str`
        The units of the rows.
    """

    def __init__(
        self,
        registry: Registry,
        collections: Sequence[str],
        rows: Sequence[DataId] | None,
        unitNames: Iterable[str],
        *,
        rowKeys: Sequence[str] = (),
        rowValues: list[tuple[Any, ...]] | None = None,
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        neededDatasetTypes: Sequence[DatasetType] = (),
        futureDatasetTypes: Sequence[DatasetType] = (),
        problems: Sequence[str] = (),
    ):
        self.registry = registry
        self.universe = registry.universe
        self.collections = list(collections)
        self.unitNames = tuple(sorted(unitNames))
        if rowValues is None:
            rows = list(rows or ())
            rowKeys = tuple(rows[0]._values) if rows else self.universe.expand(self.unitNames)
            rowValues = [tuple(r._values.values()) for r in rows]
        self._rowKeys: tuple[str, ...] = tuple(rowKeys)
        self._rowValues: list[tuple[Any, ...]] = rowValues
        self.rows = RowView(self._rowKeys, rowValues)
        self.where = where
        self.bind = dict(bind or {})
        self.datasetTypes: dict[str, DatasetType] = {
            dt.name: dt for dt in (*neededDatasetTypes, *futureDatasetTypes)
        }
        self.neededDatasetTypes = list(neededDatasetTypes)
        self._problems = list(problems)
        self.units: dict[str, set[Unit]] = {}
        self._unitIndex: dict[str, dict[DataId, Unit]] = {}
        self._unitsByValues: dict[str, dict[tuple[Any, ...], Unit]] = {}  # same units, keyed by value tuples
        self._datasetIndex: dict[str, dict[DataId, Dataset]] = {name: {} for name in self.datasetTypes}
        self._datasetSets: dict[str, set[Dataset]] | None = None  # `datasets`, built on first use
        self._linkedUnits: set[str] = set()  # unit types whose Unit.datasets are filled in
        self._projections: dict[tuple[str, ...], list[DataId]] = {}
        self._interned: dict[tuple[str, ...], dict[tuple[Any, ...], DataId]] = {}
        self._internedGroups: dict[tuple[tuple[str, ...], int], dict[tuple[Any, ...], dict[Any, DataId]]] = {}
        self._rowsByUnit: dict[str, dict[tuple[Any, ...], list[int]]] = {}
        self._constantColumns: set[int] = set()  # row columns found to hold one value

    # ------------------------------------------------------------------ building
    def _buildUnits(self, withFields: bool = True) -> None:
        for name in self.unitNames:
            values, dataIds = self._projection(self.universe.expand([name]))
            records = self.registry.getUnitRecords(name, dataIds) if withFields and dataIds else {}
            units = [Unit(name, d, records.get(d), graph=self) for d in dataIds]
            self._unitIndex[name] = dict(zip(dataIds, units, strict=True))
            self._unitsByValues[name] = dict(zip(values, units, strict=True))
            self.units[name] = set(units)

    def _attachFound(
        self,
        datasetType: DatasetType,
        dataIds: list[DataId],
        values: list[tuple[Any, ...]],
        found: FoundDatasets | None = None,
    ) -> None:
        """Attach the existing datasets of a needed type at the given data IDs (one bulk look-up).

        ``values`` are the data IDs' value tuples; each dataset reuses its graph data ID
        rather than a copy built by the registry. ``found`` holds the datasets when the
        planning query found them already; otherwise the registry is asked.
        """
        if found is None:
            found = FoundDatasets.fromRefs(
                self.registry.findDatasetValues(datasetType, self.collections, values)
            )
        # The id of each data ID, looked up in one C-level pass; the datasets are then
        # made in bulk (a million raws at 10^6 quanta).
        ids = list(map(found.ids.get, values))
        if None in ids:  # some data IDs have none: keep those that do
            kept = [(d, dsId) for d, dsId in zip(dataIds, ids, strict=True) if dsId is not None]
            dataIds = [d for d, _ in kept]
            ids = [dsId for _, dsId in kept]
        datasets = Dataset._many(datasetType, dataIds, found.refs(cast("list[int]", ids)))
        index = self._datasetIndex.setdefault(datasetType.name, {})
        index.update(zip(dataIds, datasets, strict=True))
        self._attachMany(datasetType, datasets, indexed=True)

    def _attach(self, dataset: Dataset) -> None:
        self._attachMany(dataset.datasetType, [dataset])

    @property
    def datasets(self) -> dict[str, set[Dataset]]:
        """Every dataset in the graph (existing inputs and datasets to be produced), by type name.

        Built on first use and after datasets are added: preflight itself looks datasets
        up by data ID and never needs these sets. Read-only.
        """
        if self._datasetSets is None:
            self._datasetSets = {name: set(index.values()) for name, index in self._datasetIndex.items()}
        return self._datasetSets

    def _attachMany(
        self, datasetType: DatasetType, datasets: Iterable[Dataset], *, indexed: bool = False
    ) -> None:
        """Add datasets of one type; link them to units whose ``datasets`` were already asked for.

        ``indexed``: the caller has put them in the type's index already (`addDatasets`).
        """
        name = datasetType.name
        index = self._datasetIndex.setdefault(name, {})
        self.datasetTypes.setdefault(name, datasetType)
        if not isinstance(datasets, list):
            datasets = list(datasets)
        if not indexed:
            index.update((d.dataId, d) for d in datasets)
        self._datasetSets = None
        for u in self.universe.expand(datasetType.units):
            if u in self._linkedUnits:
                self._link(u, name, datasets)

    def _linkUnits(self, unitName: str) -> None:
        """Fill in ``Unit.datasets`` of every unit of one type (once; `_attachMany` keeps it current)."""
        if unitName in self._linkedUnits:
            return
        self._linkedUnits.add(unitName)
        for name, index in self._datasetIndex.items():
            datasetType = self.datasetTypes.get(name)
            if index and datasetType is not None and unitName in self.universe.expand(datasetType.units):
                self._link(unitName, name, list(index.values()))

    def _link(self, u: str, name: str, datasets: list[Dataset]) -> None:
        """Link datasets of type ``name`` to the graph's units of type ``u`` in their data IDs."""
        units = self._unitsByValues.get(u)
        if units is not None:
            # Group the datasets by the unit's key values and link every group with one
            # set update: the same sets as one add per link, in a fraction of the time.
            project = _projector_from_mapping(self.universe.expand([u]))
            groups: dict[tuple[Any, ...], list[Dataset]] = {}
            for dataset in datasets:
                key = project(dataset.dataId._values)
                group = groups.get(key)
                if group is None:
                    groups[key] = [dataset]
                else:
                    group.append(dataset)
            for key, group in groups.items():
                unit = units.get(key)
                if unit is not None:
                    unit._datasets.setdefault(name, set()).update(group)

    # ------------------------------------------------------------------ queries on the graph
    def dataIds(self, units: Iterable[str]) -> list[DataId]:
        """Distinct projections of the rows onto ``units`` (and the units they require), sorted."""
        keys = self.universe.expand(units)
        cached = self._projections.get(keys)
        return cached if cached is not None else self._projection(keys)[1]

    def _projection(self, keys: tuple[str, ...]) -> tuple[list[tuple[Any, ...]], list[DataId]]:
        """Distinct sorted value tuples over ``keys`` and their data IDs (one per distinct tuple).

        Only the data IDs are cached (the tuples are cheap to recompute and would double
        the memory of a large projection).
        """
        if isinstance(self.rows, _ReleasedRows):
            cached = self._projections.get(keys)
            if cached is None:
                raise _rows_released()
            return [tuple(d._values.values()) for d in cached], cached
        rows = self._rowValues
        if not rows:
            values: list[tuple[Any, ...]] = []
        elif keys == self._rowKeys:  # the rows themselves: already distinct and sorted
            values = rows
        else:
            # Distinct in the order of what is projected (not a set's): the rows come
            # sorted from the database, so the projection keeps long sorted runs, which
            # the sort merges in about half the time it takes to sort a set's order.
            source = self._coveringProjection(keys)
            if source is None:
                project = _projector(self._rowKeys, keys)  # (a KeyError names a key the rows lack)
                positions = [self._rowKeys.index(k) for k in keys]
                varying = self._varyingColumns(positions)
                if len(varying) <= 1:
                    # At most one key's values vary (one key, or a detector's or a visit's
                    # keys under one instrument): that column's distinct values, then
                    # tuples with the constant values (no tuple per row).
                    first = rows[0]
                    if not varying:  # every key constant: one tuple
                        distinct = {tuple([first[i] for i in positions]): None}
                    else:
                        (at,) = varying
                        where = positions.index(at)
                        head = tuple([first[i] for i in positions[:where]])
                        tail = tuple([first[i] for i in positions[where + 1 :]])
                        column = dict.fromkeys(map(itemgetter(at), rows))
                        distinct = dict.fromkeys([(*head, v, *tail) for v in column])
                else:
                    distinct = dict.fromkeys(map(project, rows))
            else:  # the same distinct tuples, from far fewer data IDs than rows
                distinct = dict.fromkeys(map(_projector_from_mapping(keys), [d._values for d in source]))
            return self._projectionOf(keys, distinct)
        return values, self._dataIdsOf(keys, values)

    def _varyingColumns(self, positions: Sequence[int]) -> list[int]:
        """The row columns at ``positions`` that hold more than one value; it stops at two.

        A column that varies usually does so within its first rows (one C-level pass
        that stops at the first other value); one that does not costs a pass over the
        rows, once: constant columns are remembered.
        """
        rows = self._rowValues
        varying = []
        for i in positions:
            if i in self._constantColumns:
                continue
            if any(map(ne, map(itemgetter(i), rows), repeat(rows[0][i]))):
                varying.append(i)
                if len(varying) > 1:
                    break
            else:
                self._constantColumns.add(i)
        return varying

    def _projectionOf(
        self, keys: tuple[str, ...], distinct: Collection[tuple[Any, ...]], *, scattered: bool = False
    ) -> tuple[list[tuple[Any, ...]], list[DataId]]:
        """`_projection` of ``keys`` from the distinct value tuples the rows have over them, in any order.

        Also for a projection known without a pass over the rows: the keys of the
        datasets the planning query found when they are the rows' own
        (`FoundDatasets.ofRows`). ``scattered``: the tuples have no long sorted runs
        (`sort_scattered_value_tuples` then sorts them sooner, skipping the keys whose
        row columns are known to hold one value).
        """
        if scattered:
            rowKeys = self._rowKeys
            constant = [
                j for j, k in enumerate(keys) if k in rowKeys and rowKeys.index(k) in self._constantColumns
            ]
            values = sort_scattered_value_tuples(keys, distinct, constant)
        else:
            values = sort_value_tuples(keys, distinct)
        return values, self._dataIdsOf(keys, values)

    def _dataIdsOf(self, keys: tuple[str, ...], values: list[tuple[Any, ...]]) -> list[DataId]:
        """The cached data IDs of the projection onto ``keys``, made from its sorted ``values`` if new."""
        cached = self._projections.get(keys)
        if cached is None:
            cached = self._projections[keys] = DataId._many_from_sorted(keys, values)
        return cached

    def _prepareProjections(self, unitSets: Iterable[Iterable[str]]) -> None:
        """Make the projections onto several unit sets with one pass over the rows instead of one each.

        The rows are projected once onto the union of the sets' keys; when that has far
        fewer distinct tuples than there are rows (a campaign's warps and coadds: about
        one per thirty rows), each set's projection is made from those tuples: the same
        distinct tuples as from the rows (the projection of a projection), in the same
        sorted order. Otherwise nothing is kept and `dataIds` projects the rows as before
        (one pass more, no data ID made). Sets already cached, or answered by the rows
        themselves or a smaller cached projection, are left out.
        """
        if isinstance(self.rows, _ReleasedRows) or not self._rowValues:
            return
        todo = []
        for units in unitSets:
            keys = self.universe.expand(units)
            if keys not in self._projections and keys != self._rowKeys and keys not in todo:
                if self._coveringProjection(keys) is None:
                    todo.append(keys)
        if len(todo) < 2:
            return
        union = tuple(sorted(set().union(*todo)))
        if union == self._rowKeys:
            return
        distinct = list(dict.fromkeys(map(_projector(self._rowKeys, union), self._rowValues)))
        if 4 * len(distinct) > len(self._rowValues):
            return
        for keys in todo:
            values = sort_value_tuples(keys, dict.fromkeys(map(_projector(union, keys), distinct)))
            self._projections[keys] = DataId._many_from_sorted(keys, values)

    def _coveringProjection(self, keys: tuple[str, ...]) -> list[DataId] | None:
        """The smallest cached projection over a superset of ``keys``, if it is much smaller than the rows.

        Projecting it onto ``keys`` gives the same distinct value tuples as projecting
        every row (the projection of a projection), e.g. the instruments from the
        hundred (instrument, detector) pairs instead of a million rows.
        """
        wanted = frozenset(keys)
        best: list[DataId] | None = None
        for known, dataIds in self._projections.items():
            if (best is None or len(dataIds) < len(best)) and wanted.issubset(known):
                best = dataIds
        return best if best is not None and 4 * len(best) <= len(self._rowValues) else None

    def getUnit(self, name: str, dataId: Mapping[str, Any]) -> Unit:
        """The graph's unit of type ``name`` for ``dataId`` (extra keys are ignored).

        Raises
        ------
        KeyError
            If the graph has no such unit.
        """
        key = DataId(dataId).subset(self.universe.requiredKeys(name))
        try:
            return self._unitIndex[name][key]
        except KeyError:
            raise KeyError(f"the graph has no {name} unit {dict(key)}") from None

    def _relatedUnits(self, unit: Unit) -> dict[str, set[Unit]]:
        expand = self.universe.expand
        index = self._rowsByUnit.get(unit.name)
        if index is None:
            if isinstance(self.rows, _ReleasedRows):
                raise _rows_released()
            project = _projector(self._rowKeys, expand([unit.name]))
            index = {}
            for i, row in enumerate(self._rowValues):
                index.setdefault(project(row), []).append(i)
            self._rowsByUnit[unit.name] = index
        others = [
            (other, units, _projector(self._rowKeys, expand([other])))
            for other, units in self._unitsByValues.items()
            if other != unit.name
        ]
        out: dict[str, set[Unit]] = {}
        for i in index.get(tuple(unit.dataId._values.values()), ()):
            row = self._rowValues[i]
            for other, units, project in others:
                found = units.get(project(row))
                if found is not None:
                    out.setdefault(other, set()).add(found)
        return out

    def relatedDataIds(self, dataIds: Iterable[DataId], toUnits: Iterable[str]) -> dict[DataId, list[DataId]]:
        """For each data ID, the data IDs over ``toUnits`` related to it in the repository.

        Not restricted by the graph's expression: a coadd of a patch gathers every
        (visit, detector) overlapping the patch even if the expression selected only
        some visits (no "tract slicing").

        Returns
        -------
        related : `dict` [`DataId`, `list` [`DataId`]]
            Every given data ID is a key; values are sorted.
        """
        dataIds = list(dataIds)
        if not dataIds:
            return {}
        toUnits = list(toUnits)
        toKeys = self.universe.expand(toUnits)
        related: dict[DataId, list[tuple[Any, ...]]] = {}
        byKeys: dict[tuple[str, ...], list[DataId]] = {}
        for d in dataIds:
            byKeys.setdefault(tuple(d.keys()), []).append(d)
        for fromKeys, group in byKeys.items():
            restrict = self._usefulRestrictions({k: {d[k] for d in group} for k in fromKeys})
            groups = self.registry.queryRelatedDataIdValues(fromKeys, toKeys, restrict=restrict)
            for d in group:  # each data ID's related tuples are sorted below
                related[d] = groups.get(tuple(d._values.values()), [])
        # Related data IDs are the graph's own objects where it has them (one object per
        # data ID keeps memory down and makes later dictionary look-ups identity hits).
        if len(byKeys) == 1:
            ((fromKeys, _),) = byKeys.items()
            members = [i for i, k in enumerate(toKeys) if k not in fromKeys]
            if len(members) == 1 and len(toKeys) > 1:
                return self._internedByGroup(dataIds, related, toKeys, members[0])
        interned = self._internTable(toKeys)
        result: dict[DataId, list[DataId]] = {}
        for d in dataIds:
            ids = []
            for v in sort_value_tuples(toKeys, related[d]):
                to = interned.get(v)
                if to is None:
                    to = interned[v] = DataId._from_sorted(dict(zip(toKeys, v, strict=True)))
                ids.append(to)
            result[d] = ids
        return result

    def _internedByGroup(
        self,
        dataIds: list[DataId],
        related: dict[DataId, list[tuple[Any, ...]]],
        toKeys: tuple[str, ...],
        member: int,
    ) -> dict[DataId, list[DataId]]:
        """`relatedDataIds`' interning when one to key (at ``member``) is not a from key.

        The other to keys then hold a data ID's own values, the same for all its
        related tuples (a warp's instrument and visit; its detectors vary), so the
        graph's data IDs are looked up in a small dictionary per such prefix
        (`_internGroups`), by the one varying value: a million look-ups of a warp's
        detectors in one dictionary of every (instrument, visit, detector) cost as
        many cache misses, about half of the whole look-up at 10^6 quanta.
        """
        table = self._internGroups(toKeys, member)
        fixed = _fixedGetter(toKeys, member)
        value = itemgetter(member)
        result: dict[DataId, list[DataId]] = {}
        for d in dataIds:
            values = sort_value_tuples(toKeys, related[d])
            if not values:
                result[d] = []
                continue
            prefix = fixed(values[0])
            inner = table.get(prefix)
            if inner is None:
                inner = table[prefix] = {}
            ids: list[DataId | None] = list(map(inner.get, map(value, values)))
            if any(map(is_, ids, repeat(None))):
                for i, v in enumerate(values):  # (distinct values: each missing one made once)
                    if ids[i] is None:
                        ids[i] = inner[v[member]] = DataId._from_sorted(dict(zip(toKeys, v, strict=True)))
            result[d] = cast(list[DataId], ids)
        return result

    def _internGroups(self, keys: tuple[str, ...], member: int) -> dict[tuple[Any, ...], dict[Any, DataId]]:
        """``{values but the member's: {member value: DataId}}`` over ``keys``: `_internTable` in two levels."""
        table = self._internedGroups.get((keys, member))
        if table is None:
            table = self._internedGroups[(keys, member)] = {}
            known = self._projections.get(keys)
            if known:
                columns = list(zip(*map(dict.values, [d._values for d in known]), strict=True))
                others = [c for i, c in enumerate(columns) if i != member]
                get = table.get
                for prefix, value, d in zip(zip(*others, strict=True), columns[member], known, strict=True):
                    inner = get(prefix)
                    if inner is None:
                        inner = table[prefix] = {}
                    inner[value] = d
        return table

    def _usefulRestrictions(self, restrict: dict[str, set[Any]]) -> dict[str, set[Any]]:
        """The restrictions of a related look-up that leave something out.

        A key whose values are every value the registry has for its unit restricts
        nothing; sending it only makes the database test an IN list per row (about a
        sixth of the look-up of a whole campaign's warps, two thirds of its coadds'). It
        is dropped after one small look-up of at most one more value than it holds. The
        answer stays the same whatever is dropped: the rows are grouped by the exact data
        IDs asked about, so rows outside them are never used.
        """
        useful = {}
        for key, values in restrict.items():
            try:
                known = self.registry.unitKeyValues(key, len(values) + 1)
            except KeyError:  # (not a unit with a table of its own: keep the restriction)
                useful[key] = values
                continue
            if len(known) > len(values) or not values.issuperset(known):
                useful[key] = values
        return useful

    def _internTable(self, keys: tuple[str, ...]) -> dict[tuple[Any, ...], DataId]:
        """``{values: DataId}`` over ``keys``: the graph's data IDs, shared by its look-ups."""
        table = self._interned.get(keys)
        if table is None:
            table = self._interned[keys] = {}
            known = self._projections.get(keys)
            if known:
                table.update(
                    zip(map(tuple, map(dict.values, [d._values for d in known])), known, strict=True)
                )
        return table

    def releaseLookupTables(self) -> None:
        """Drop the ``{values: DataId}`` tables that `relatedDataIds` keeps to reuse the graph's data IDs.

        Preflight calls this once the last look-up is done: at 10^6 quanta the tables
        hold about a million value tuples (over 100 MB) that nothing reads afterwards.
        A later look-up builds them again, so results stay the same (equal data IDs,
        possibly new objects).
        """
        self._interned.clear()
        self._internedGroups.clear()

    def releaseRows(self) -> None:
        """Drop the planning query's row tuples once every projection preflight needs is made.

        At 10^6 quanta the rows are about 110 MB that the default ``defineQuanta`` and
        the `QuantumGraph` never read (they use the cached projections of `dataIds`,
        the registry and the dataset indexes). `build_quantum_graph` calls this after
        planning, when the graph is its own and every task uses the default
        ``defineQuanta``. Afterwards ``len(rows)`` and the projections already made
        still answer; anything that needs the rows themselves raises `RuntimeError`.
        """
        if isinstance(self.rows, _ReleasedRows):
            return
        self.rows = _ReleasedRows(self._rowKeys, len(self._rowValues))
        self._rowValues = []
        self._rowsByUnit.clear()
        self._constantColumns.clear()

    def datasetIndex(self, typeName: str) -> dict[DataId, Dataset]:
        """The graph's own ``{data ID: Dataset}`` index of one type: live, not a copy.

        `QuantumGraphBuilder.makeGraph` indexes the outputs of each task by data ID;
        over a RepoGraph of its own it uses this index (which `addDatasets` fills with
        the same datasets) instead of a second dictionary of a million entries.
        """
        return self._datasetIndex.setdefault(typeName, {})

    def releaseDatasets(self) -> None:
        """Drop the graph's index of datasets by type and data ID once every quantum is defined.

        The quanta hold the datasets themselves; at 10^6 quanta the index of the
        million raws and the million calexps is about 85 MB that the `QuantumGraph`
        never reads, and it would be alive while the graph links its datasets, the
        peak of preflight. `build_quantum_graph` calls this, with `releaseRows`, on a
        graph that is its own. Afterwards any look-up of datasets raises `RuntimeError`.
        """
        self._datasetIndex = _ReleasedIndex()
        self._datasetSets = None

    def findDatasets(self, typeName: str, dataIds: Iterable[DataId]) -> dict[DataId, Dataset]:
        """Datasets of a type for the given data IDs: from the graph, else from the input collections.

        Datasets found in the registry but not yet in the graph are added to it. Data IDs
        without a dataset are absent from the result.
        """
        dataIds = list(dataIds)
        found = self.findDatasetList(typeName, dataIds)
        return {d: f for d, f in zip(dataIds, found, strict=True) if f is not None}

    def findDatasetList(
        self, typeName: str, dataIds: Sequence[DataId], *, exact: bool = False
    ) -> list[Dataset | None]:
        """`findDatasets` as a list aligned with ``dataIds``: the dataset of each, or `None`.

        For a look-up per quantum (the default ``defineQuanta`` asks for one input of
        each of a million quanta): no set of the data IDs and no dictionary keyed by
        them is built, and repeated data IDs are simply looked up again.

        ``exact``: the caller guarantees that every data ID has exactly the type's units
        (as `define_quanta_by_units`' projections do). If those are the type's expanded
        keys, each data ID is then looked up as it is, in one C-level pass, instead of
        having its keys compared first.
        """
        dt = self.datasetTypes.get(typeName)
        if dt is None:
            dt = self.registry.getDatasetType(typeName)
            self.datasetTypes[typeName] = dt
        keys = self.universe.expand(dt.units)
        index = self._datasetIndex.setdefault(typeName, {})
        if len(index) == len(dataIds) and all(map(is_, index, dataIds)):
            # The index's keys are the very data IDs asked about, in order (a task's raws,
            # found by the planning query for the graph's data IDs): its values are the
            # answer, found by comparing pointers, with no data ID hashed (0.3 s per million).
            return list(index.values())
        get = index.get
        keySet = frozenset(keys)
        # A data ID with exactly the type's keys is its own key (no copy to hash).
        out: list[Dataset | None]
        if exact and keySet == frozenset(dt.units):
            out = list(map(get, dataIds))
        else:
            out = [get(d) if d._values.keys() == keySet else get(d.subset(keys)) for d in dataIds]
        # (one C-level pass first: nearly always every data ID has its dataset)
        hasNone = any(map(is_, out, repeat(None)))
        missing = [i for i, found in enumerate(out) if found is None] if hasNone else []
        if missing and self.collections:
            convert = self.universe.dataIdConverter(dt.units)
            byValues: dict[tuple[Any, ...], DataId] = {}
            for i in missing:
                key = convert(dataIds[i])
                byValues.setdefault(tuple(key._values.values()), key)
            try:
                loaded = self.registry.findDatasetValues(dt, self.collections, byValues)
            except KeyError:  # type not registered: nothing exists yet
                loaded = {}
            self._attachMany(
                dt,
                [
                    Dataset(dt, byValues[v], id=loaded[v][0], run=loaded[v][1])
                    for v in sort_value_tuples(keys, loaded)
                ],
            )
            for i in missing:
                out[i] = get(dataIds[i].subset(keys))
        return out

    def addDataset(
        self, datasetType: DatasetType, dataId: Mapping[str, Any] | None = None, **units: Any
    ) -> Dataset:
        """Add a dataset that a pipeline will produce (not written to the repository).

        Returns the graph's existing handle if the dataset is already there.
        """
        values = dict(dataId or {}, **units)
        key = self.universe.checkDataId(datasetType.units, values)
        existing = self._datasetIndex.get(datasetType.name, {}).get(key)
        if existing is not None:
            return existing
        dataset = Dataset(datasetType, key)
        self._attach(dataset)
        return dataset

    def addDatasets(
        self, datasetType: DatasetType, dataIds: Iterable[Mapping[str, Any]], *, exact: bool = False
    ) -> list[Dataset]:
        """Add many datasets of one type that a pipeline will produce; one handle per data ID, in order.

        The bulk form of `addDataset` (one call per output type of a task instead of one
        per quantum): the unit links are computed once, and a `DataId` that already has
        exactly the type's expanded keys is used as it is (the builder's data IDs come
        from the registry, so checking and copying each again would only cost time).
        Anything else goes through `Universe.checkDataId` as in `addDataset`.
        ``exact``: the caller guarantees that every item is a `DataId` with exactly the
        type's units (as `define_quanta_by_units`' projections are); if those are the
        type's expanded keys, the data IDs are then not checked one by one.

        Returns
        -------
        datasets : `list` [`Dataset`]
            The graph's handle for each data ID (an existing one if already there).
        """
        name = datasetType.name
        keys = self.universe.expand(datasetType.units)
        keySet = frozenset(keys)
        nKeys = len(keys)
        index = self._datasetIndex.setdefault(name, {})
        check = self.universe.checkDataId
        out: list[Dataset] = []
        new: list[Dataset] = []
        if not isinstance(dataIds, list):  # (a list is only read: no copy of a million references)
            dataIds = list(dataIds)
        exact = exact and keySet == frozenset(datasetType.units)
        if not index and (exact or all(type(d) is DataId and d._values.keys() == keySet for d in dataIds)):
            # A type's first outputs (each task's, in preflight): one dataset per data ID
            # made in bulk and indexed in one update; only repeated data IDs need the
            # general loop below, which then starts again from an empty index.
            checked = cast("list[DataId]", dataIds)
            new = Dataset._many(datasetType, checked)
            index.update(zip(checked, new, strict=True))
            if len(index) == len(new):
                self._attachMany(datasetType, new, indexed=True)
                return new
            index.clear()
            new = []
        for dataId in dataIds:
            if not (
                type(dataId) is DataId and len(dataId._values) == nKeys and dataId._values.keys() == keySet
            ):
                dataId = check(datasetType.units, dataId)
            dataset = index.get(dataId)
            if dataset is None:
                dataset = index[dataId] = Dataset(datasetType, dataId)
                new.append(dataset)
            out.append(dataset)
        if new:
            self._attachMany(datasetType, new, indexed=True)
        return out

    # ------------------------------------------------------------------ diagnostics
    def explainEmpty(self) -> str:
        """Say why the graph has no rows: which constraint or missing dataset removed them all."""
        if self.rows:
            return f"the graph is not empty: {len(self.rows)} rows over {list(self.unitNames)}"
        return "\n".join(
            explain_empty(
                self.registry,
                self.unitNames,
                self.where,
                self.bind,
                self.neededDatasetTypes,
                self.collections,
                self._problems,
            )
        )

    def __repr__(self) -> str:
        return (
            f"RepoGraph({len(self.rows)} rows, units={ {k: len(v) for k, v in self.units.items()} }, "
            f"datasets={ {k: len(v) for k, v in dict.items(self._datasetIndex)} })"
        )


def explain_empty(
    registry: Registry,
    units: Sequence[str],
    where: str | None,
    bind: Mapping[str, Any] | None,
    needed: Sequence[DatasetType],
    collections: Sequence[str],
    problems: Sequence[str] = (),
) -> list[str]:
    """Diagnose an empty data-ID query by relaxing it step by step (counts only)."""
    from .registry.where import parse_where

    lines = [f"no data IDs over {list(units)} match:"]
    lines += [f"- {p}" for p in problems]
    base = registry.countDataIds(units)
    if base == 0:
        plan = registry.queries.plan(units)
        empty = [e for e in plan.elements if registry.countUnitRows(e) == 0]
        if empty:
            lines.append(f"- the repository has no rows for {empty}: insert those units first")
        else:
            lines.append(
                f"- joining {plan.elements} gives no rows (e.g. no overlap between visits and patches)"
            )
        return lines
    parsed = parse_where(where)
    if parsed is not None:
        killers = []
        for text, part in parsed.conjuncts():
            n = registry.countDataIds(units, part, bind)
            if n == 0:
                killers.append(text)
                hint = "; ".join(
                    f"{u} values in the repository: {_sample_values(registry, u)}"
                    for u in sorted(part.units)
                    if u in registry.universe.units
                )
                lines.append(
                    f"- the constraint `{text}` alone matches none of the {base} rows"
                    + (f" ({hint})" if hint else "")
                )
        total = registry.countDataIds(units, parsed, bind)
        if total == 0:
            if not killers:
                lines.append(
                    f"- each term of `{where}` matches some of the {base} rows, but together they match none"
                )
            return lines
        base = total
    for dt in needed:
        try:
            n = registry.countDataIds(units, parsed, bind, datasets=[dt], collections=collections)
        except KeyError:
            lines.append(f"- dataset type {dt.name!r} is not registered (no such datasets exist)")
            continue
        if n == 0:
            total = registry.countDatasetsIn(dt, collections)
            lines.append(
                f"- no {dt.name} dataset in collections {list(collections)} matches the {base} selected rows "
                f"({total} {dt.name} datasets exist in those collections)"
            )
    if len(lines) == 1 + len(problems):
        lines.append("- each needed dataset type matches alone; together they match no common data ID")
    return lines


def _sample_values(registry: Registry, unit: str, limit: int = 8) -> str:
    """A few key values of a unit, to show next to a constraint that matched nothing."""
    values = registry.unitKeyValues(unit, limit + 1)
    shown = ", ".join(repr(v) for v in values[:limit])
    return (shown + ", ...") if len(values) > limit else (shown or "none")


def makeRepoGraph(
    butler: Butler,
    neededDatasetTypes: Iterable[DatasetType],
    futureDatasetTypes: Iterable[DatasetType],
    where: str | None,
    bind: Mapping[str, Any] | None = None,
    *,
    loadUnitFields: bool = True,
    collections: Sequence[str] | None = None,
    maxRows: int | None = None,
) -> RepoGraph:
    """Build the RepoGraph of a pipeline's preflight (DMTN-055 6.2).

    Parameters
    ----------
    butler : `Butler`
        The repository; ``butler.collections`` are the input collections unless
        ``collections`` is given.
    neededDatasetTypes : iterable of `DatasetType`
        Types whose datasets must exist (rows without one are dropped).
    futureDatasetTypes : iterable of `DatasetType`
        Types a pipeline will produce: their units join the query, their existence is not required.
    where : `str` or `None`
        The data-ID expression.
    bind : `dict`, optional
        Values of ``:name`` parameters in ``where``.
    loadUnitFields : `bool`
        Fetch each unit's descriptive fields (one query per unit type).
    collections : sequence of `str`, optional
        Input collections to search for datasets, in order (default: ``butler.collections``).
    maxRows : `int`, optional
        Refuse a selection of more rows than this: `RowLimitError` is raised while
        fetching, before the graph is built (see `Registry.queryDataIdValues`).

    Returns
    -------
    graph : `RepoGraph`
        Possibly empty; `RepoGraph.explainEmpty` then says why.
    """
    registry = butler.registry
    needed = list(neededDatasetTypes)
    future = list(futureDatasetTypes)
    units: set[str] = set()
    for dt in (*needed, *future):
        units.update(dt.units)
    unitNames = registry.universe.expand(units)
    problems = []
    registered = []
    for dt in needed:
        try:
            registry.getDatasetType(dt.name)
            registered.append(dt)
        except KeyError:
            problems.append(f"needed dataset type {dt.name!r} is not registered in the repository")
    collections = list(butler.collections if collections is None else collections)
    if needed and not collections:
        raise ValueError(
            "makeRepoGraph needs input collections: pass collections=[...] or open the Butler with them"
        )
    found: dict[str, FoundDatasets] = {}
    if problems:
        rowKeys, rowValues = unitNames, list[tuple[Any, ...]]()
    else:
        # The query returns the needed datasets it required (no second read of each type).
        rowKeys, rowValues, found = registry.queryDataIdValuesWithDatasets(
            unitNames, where, bind, datasets=registered, collections=collections, max_rows=maxRows
        )
    graph = RepoGraph(
        registry,
        collections,
        None,
        unitNames,
        rowKeys=rowKeys,
        rowValues=rowValues,
        where=where,
        bind=bind,
        neededDatasetTypes=needed,
        futureDatasetTypes=future,
        problems=problems,
    )
    graph._buildUnits(withFields=loadUnitFields)
    for dt in registered:
        keys = registry.universe.expand(dt.units)
        known = found.pop(dt.name, None)
        if known is not None and known.ofRows and keys != graph._rowKeys:
            # The datasets' keys are the rows' projection: no pass over the rows.
            values, dataIds = graph._projectionOf(keys, known.ids, scattered=True)
        else:
            values, dataIds = graph._projection(keys)
        if dataIds:
            graph._attachFound(dt, dataIds, values, known)
    return graph


__all__ = ["RepoGraph", "Unit", "makeRepoGraph"]
