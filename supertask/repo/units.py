"""The unit universe (loaded from ``universe.yaml``) and the seed's ``Unit``.

The universe is data, not code (DMTN-055 6.2): which units exist, which keys identify
them and how they relate is read from a YAML file shipped with the package, and the
registry schema and every data-ID query are generated from it. Nothing here imports
SQLAlchemy, so batch jobs that only need data-ID arithmetic stay cheap to start.
"""

from __future__ import annotations

import hashlib
import operator
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .dataid import DataId

if TYPE_CHECKING:
    from .dataset import Dataset
    from .repograph import RepoGraph

FIELD_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


class UniverseError(ValueError):
    """The universe YAML is malformed; the message names the entry and the fix."""


@dataclass(frozen=True)
class UnitSpec:
    """One kind of unit: its key, the units it requires and implies, its fields."""

    name: str
    keyType: type
    requires: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()
    fields: Mapping[str, type] = field(default_factory=dict)


@dataclass(frozen=True)
class RelationSpec:
    """A many-to-many table between units (e.g. which exposures make up a visit)."""

    name: str
    units: tuple[str, ...]
    fields: Mapping[str, type] = field(default_factory=dict)
    joinWhen: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class SpatialOverlap:
    """A relation the registry computes by intersecting the boxes of two elements."""

    relation: str
    left: str
    right: str


BOX_FIELDS = ("ra_min", "ra_max", "dec_min", "dec_max")


class Universe:
    """All units and relations of a repository.

    Parameters
    ----------
    data : `dict`
        The parsed YAML (see ``universe.yaml`` for the format).

    Raises
    ------
    UniverseError
        If a unit refers to an unknown unit, a dependency cycle exists, or a type is unknown.
    """

    def __init__(self, data: Mapping[str, Any]):
        try:
            self.version = int(data["version"])
            raw_units = data["units"]
        except (KeyError, TypeError, ValueError) as err:
            raise UniverseError(
                f"universe needs an integer 'version' and a 'units' mapping ({err})"
            ) from None
        self.units: dict[str, UnitSpec] = {}
        for name, spec in raw_units.items():
            spec = spec or {}
            self.units[name] = UnitSpec(
                name=name,
                keyType=_field_type(spec.get("key", {}).get("type", "int"), f"unit {name!r} key"),
                requires=tuple(spec.get("requires", ())),
                implies=tuple(spec.get("implies", ())),
                fields={
                    k: _field_type(v, f"unit {name!r} field {k!r}") for k, v in spec.get("fields", {}).items()
                },
            )
        self.relations: dict[str, RelationSpec] = {}
        for name, spec in (data.get("relations") or {}).items():
            if name in self.units:
                raise UniverseError(f"relation {name!r} has the name of a unit; rename one of them")
            self.relations[name] = RelationSpec(
                name=name,
                units=tuple(spec["units"]),
                fields={
                    k: _field_type(v, f"relation {name!r} field {k!r}")
                    for k, v in (spec.get("fields") or {}).items()
                },
                joinWhen=tuple(frozenset(group) for group in spec.get("join_when", ())),
            )
        self._requiredCache: dict[str, tuple[str, ...]] = {}
        self._expandCache: dict[frozenset[str], tuple[str, ...]] = {}
        self.spatialOverlaps = tuple(SpatialOverlap(**item) for item in data.get("spatial_overlaps", ()))
        self._check()
        self.digest = hashlib.blake2b(
            yaml.safe_dump(dict(data), sort_keys=True).encode(), digest_size=8
        ).hexdigest()

    def _check(self) -> None:
        for spec in self.units.values():
            for other in (*spec.requires, *spec.implies):
                if other not in self.units:
                    raise UniverseError(f"unit {spec.name!r} refers to unknown unit {other!r}")
        for rel in self.relations.values():
            for unit in (*rel.units, *(u for group in rel.joinWhen for u in group)):
                if unit not in self.units:
                    raise UniverseError(f"relation {rel.name!r} refers to unknown unit {unit!r}")
        for name in self.units:
            self._closure(name, set())
        for overlap in self.spatialOverlaps:
            if overlap.relation not in self.relations:
                raise UniverseError(f"spatial overlap names unknown relation {overlap.relation!r}")
            for side in (overlap.left, overlap.right):
                fields = self.elementFields(side)
                if not all(f in fields for f in BOX_FIELDS):
                    raise UniverseError(f"spatial overlap side {side!r} needs the fields {BOX_FIELDS}")

    def _closure(self, name: str, visiting: set[str]) -> tuple[str, ...]:
        if name in visiting:
            raise UniverseError(f"unit {name!r} requires itself (cycle through {sorted(visiting)})")
        visiting = visiting | {name}
        result: dict[str, None] = {}
        for req in self.units[name].requires:
            for unit in self._closure(req, visiting):
                result[unit] = None
            result[req] = None
        return tuple(result)

    @classmethod
    def default(cls) -> Universe:
        """The universe shipped with the package (``supertask/repo/universe.yaml``)."""
        global _DEFAULT
        if _DEFAULT is None:
            text = resources.files("supertask.repo").joinpath("universe.yaml").read_text()
            _DEFAULT = cls(yaml.safe_load(text))
        return _DEFAULT

    @classmethod
    def fromFile(cls, path: str | Path) -> Universe:
        """Load a universe from another YAML file (a campaign with extra units)."""
        return cls(yaml.safe_load(Path(path).read_text()))

    def toData(self) -> dict[str, Any]:
        """Back to YAML-able data (a repository stores the universe it was created with)."""
        universe = self
        names = {v: k for k, v in FIELD_TYPES.items()}
        units = {}
        for name, spec in universe.units.items():
            entry: dict[str, Any] = {"key": {"type": names[spec.keyType]}}
            if spec.requires:
                entry["requires"] = list(spec.requires)
            if spec.implies:
                entry["implies"] = list(spec.implies)
            if spec.fields:
                entry["fields"] = {k: names[v] for k, v in spec.fields.items()}
            units[name] = entry
        relations = {
            name: {
                "units": list(rel.units),
                "fields": {k: names[v] for k, v in rel.fields.items()},
                "join_when": [sorted(g) for g in rel.joinWhen],
            }
            for name, rel in universe.relations.items()
        }
        overlaps = [
            {"relation": o.relation, "left": o.left, "right": o.right} for o in universe.spatialOverlaps
        ]
        return {
            "version": universe.version,
            "units": units,
            "relations": relations,
            "spatial_overlaps": overlaps,
        }

    def requiredKeys(self, unit: str) -> tuple[str, ...]:
        """The unit names whose values identify one ``unit``, itself last (``visit`` →
        ``instrument, visit``)."""
        cached = self._requiredCache.get(unit)
        if cached is None:
            if unit not in self.units:
                raise KeyError(f"unknown unit {unit!r}; known units: {sorted(self.units)}")
            cached = self._requiredCache[unit] = (*self._closure(unit, set()), unit)
        return cached

    def expand(self, units: Iterable[str]) -> tuple[str, ...]:
        """The units plus everything they require, sorted (the keys of their data IDs)."""
        key = units if isinstance(units, frozenset) else frozenset(units)
        cached = self._expandCache.get(key)
        if cached is None:
            result: set[str] = set()
            for unit in key:
                result.update(self.requiredKeys(unit))
            cached = self._expandCache[key] = tuple(sorted(result))
        return cached

    def elementKeys(self, element: str) -> tuple[str, ...]:
        """Key columns of a unit or relation table."""
        if element in self.units:
            return self.requiredKeys(element)
        if element in self.relations:
            return self.expand(self.relations[element].units)
        raise KeyError(f"unknown unit or relation {element!r}")

    def elementFields(self, element: str) -> Mapping[str, type]:
        """Descriptive fields of a unit or relation table."""
        if element in self.units:
            return self.units[element].fields
        if element in self.relations:
            return self.relations[element].fields
        raise KeyError(f"unknown unit or relation {element!r}")

    def impliedColumns(self, unit: str) -> tuple[str, ...]:
        """Implied unit keys stored in the unit's table (``visit`` → ``physical_filter``)."""
        return self.units[unit].implies

    def checkDataId(self, units: Iterable[str], dataId: Mapping[str, Any]) -> DataId:
        """Return ``dataId`` restricted to the keys of ``units``, with values converted.

        Raises
        ------
        ValueError
            If a key is missing or has a value of the wrong type; the message lists
            the keys expected.
        """
        keys = self.expand(units)
        values: dict[str, Any] = {}
        for key in keys:
            if key not in dataId:
                raise ValueError(
                    f"data ID {dict(dataId)!r} lacks {key!r}; units {sorted(units)} need keys {list(keys)}"
                )
            values[key] = _convert(self.units[key].keyType, dataId[key], key)
        return DataId(values)

    def dataIdConverter(self, units: Iterable[str]) -> Callable[[Mapping[str, Any]], DataId]:
        """A fast `checkDataId` for many data IDs of the same units (bulk registration).

        Returns
        -------
        convert : callable
            ``convert(mapping) -> DataId``, raising like `checkDataId`.
        """
        keys = self.expand(units)
        kinds = [(k, self.units[k].keyType) for k in keys]
        types = tuple(kind for _, kind in kinds)
        units = list(units)
        getter: Callable[[Mapping[str, Any]], tuple[Any, ...]]
        if len(keys) > 1:
            getter = operator.itemgetter(*keys)
        elif keys:
            key0 = keys[0]

            def one(d: Mapping[str, Any]) -> tuple[Any, ...]:
                return (d[key0],)

            getter = one
        else:

            def none(d: Mapping[str, Any]) -> tuple[Any, ...]:
                return ()

            getter = none

        def convert(dataId: Mapping[str, Any]) -> DataId:
            if type(dataId) is DataId and tuple(dataId._values) == keys:
                given = dataId._values
                if all(type(given[k]) is kind for k, kind in kinds):
                    return dataId  # already exactly right: no copy
            try:
                values = getter(dataId)
            except KeyError:
                return self.checkDataId(units, dataId)  # raises the detailed message
            if tuple(map(type, values)) == types:  # the common case: one C-level check
                return DataId._from_sorted(dict(zip(keys, values, strict=True)))
            converted: dict[str, Any] = {
                k: v if type(v) is kind else _convert(kind, v, k)
                for (k, kind), v in zip(kinds, values, strict=True)
            }
            return DataId._from_sorted(converted)

        return convert


_DEFAULT: Universe | None = None


def _field_type(name: str, where: str) -> type:
    try:
        return FIELD_TYPES[name]
    except KeyError:
        raise UniverseError(f"{where}: unknown type {name!r}; use one of {sorted(FIELD_TYPES)}") from None


def _convert(kind: type, value: Any, key: str) -> Any:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"data ID value for {key!r} must be an int, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"data ID value for {key!r} must be an int, got {value!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"data ID value for {key!r} must be a str, got {value!r}")
    return value


def sort_data_ids(dataIds: Iterable[DataId]) -> list[DataId]:
    """Sort data IDs deterministically (same order as `DataId.sort_key`, much faster).

    Data IDs with the same keys whose values have one type per key (as the registry's
    are) sort by their value tuples; anything else falls back to `DataId.sort_key`.
    """
    items = list(dataIds)
    if not items:
        return items
    keys = items[0]._values.keys()
    try:
        if all(d._values.keys() == keys for d in items):
            return sorted(items, key=lambda d: tuple(d._values.values()))
    except TypeError:  # mixed value types under one key
        pass
    return sorted(items, key=DataId.sort_key)


def index_getter(indices: Sequence[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A function from a value tuple to the tuple of its values at ``indices`` (always a tuple).

    ``itemgetter`` in C where it returns a tuple (two indices or more); a one-value
    tuple or the empty tuple otherwise.
    """
    if not indices:
        return lambda row: ()
    if len(indices) == 1:
        (i,) = indices
        return lambda row: (row[i],)
    return operator.itemgetter(*indices)


def sort_value_tuples(keys: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Sort value tuples over ``keys`` in the order `sort_data_ids` gives their data IDs.

    Tuples compare as the registry's one-type-per-column values do; a column of mixed
    types falls back to the order of `DataId.sort_key` (ints before strings).
    """
    try:
        return sorted(rows)
    except TypeError:  # mixed value types under one key
        return sorted(rows, key=lambda row: tuple(zip(keys, map(_sort_item, row), strict=True)))


def sort_scattered_value_tuples(
    keys: Sequence[str], rows: Collection[tuple[Any, ...]], constant: Collection[int] = ()
) -> list[tuple[Any, ...]]:
    """`sort_value_tuples` for tuples in no useful order (no long sorted runs): the same list, sooner.

    One stable sort per column, the last column first, each by that column's values
    alone: the sort then compares single values of one type with its type-specific
    comparison, where a tuple comparison first tests the leading values of both tuples
    for equality. For the million scattered tuples of the datasets a planning query
    found (at 10^6 quanta) that is about a quarter less. Tuples taken from sorted rows
    keep long sorted runs, which `sort_value_tuples` merges faster: use that for them.
    A column of mixed types falls back to `sort_value_tuples`. ``constant``: positions
    whose value is the same in every tuple (a stable sort by them would change nothing:
    one pass less each, such as the instrument of a million raws).
    """
    values = list(rows)
    try:
        for i in reversed(range(len(keys))):
            if i not in constant:
                values.sort(key=operator.itemgetter(i))
    except TypeError:  # mixed value types under one key
        return sort_value_tuples(keys, rows)
    return values


def _sort_item(value: Any) -> tuple[Any, ...]:
    return (0, value) if isinstance(value, int) else (1, str(value))


class Unit:
    """One unit of data in a `RepoGraph` (DMTN-055 6.2): a visit, a detector, a patch...

    Parameters
    ----------
    name : `str`
        The unit type (``"visit"``).
    dataId : `DataId`
        The keys that identify it (``{instrument, visit}``).
    fields : `dict`
        Its descriptive values from the registry (exposure time, filter, box...).
    graph : `RepoGraph`, optional
        The graph it belongs to; ``related`` and ``datasets`` are computed from it on
        first use, because linking every unit eagerly costs more than most tasks ever
        read (a million datasets linked to each of their units at 10^6 quanta).

    Notes
    -----
    ``datasets`` maps dataset type names to the sets of datasets in the graph whose data
    IDs contain this unit. ``related`` maps unit type names to the sets of units that
    appear together with this one in the graph's rows.
    """

    __slots__ = ("name", "dataId", "fields", "_datasets", "_graph", "__dict__")

    def __init__(
        self,
        name: str,
        dataId: DataId,
        fields: Mapping[str, Any] | None = None,
        graph: RepoGraph | None = None,
    ):
        self.name = name
        self.dataId = dataId
        self.fields: dict[str, Any] = dict(fields or {})
        self._datasets: dict[str, set[Dataset]] = {}
        # Weak: the graph owns its units, and a strong back-reference would make every
        # RepoGraph a reference cycle that only the cyclic collector can free.
        self._graph = weakref.ref(graph) if graph is not None else None

    def _owner(self, what: str) -> RepoGraph | None:
        if self._graph is None:
            return None
        graph = self._graph()
        if graph is None:
            raise RuntimeError(
                f"{self!r}: its RepoGraph no longer exists, so its {what} are unknown; "
                f"keep the RepoGraph alive while using Unit.{what}"
            )
        return graph

    @cached_property
    def related(self) -> dict[str, set[Unit]]:
        """Units that share at least one graph row with this one, by unit type."""
        graph = self._owner("related")
        return {} if graph is None else graph._relatedUnits(self)

    @property
    def datasets(self) -> dict[str, set[Dataset]]:
        """Datasets of the graph whose data IDs contain this unit, by dataset type name."""
        graph = self._owner("datasets")
        if graph is not None:
            graph._linkUnits(self.name)
        return self._datasets

    def __hash__(self) -> int:
        return hash((self.name, self.dataId))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Unit):
            return NotImplemented
        return self.name == other.name and self.dataId == other.dataId

    def __lt__(self, other: Unit) -> bool:
        return (self.name, self.dataId.sort_key()) < (other.name, other.dataId.sort_key())

    def __repr__(self) -> str:
        return f"Unit({self.name}, {self.dataId!r})"
