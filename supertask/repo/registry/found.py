"""`FoundDatasets`: the datasets of one type that a planning query found with its rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

__all__ = ["FoundDatasets"]


@dataclass
class FoundDatasets:
    """The datasets of one type at some data IDs: an id per data ID and the run of each.

    Data IDs are value tuples in the order of the type's expanded keys. The run is kept
    once when one run was searched (``run``), by dataset id otherwise (``runOf``): a
    planning query finds a million raws, and a ``(id, run)`` tuple per dataset (as
    `Registry.findDatasetValues` returns) was 60 MB that lived among the query's rows.

    Attributes
    ----------
    ids : `dict` [`tuple`, `int`]
        ``{key values: dataset id}``.
    run : `str` or `None`
        The run of every dataset, when only one run was searched.
    runOf : `dict` [`int`, `str`]
        ``{dataset id: run}`` when several runs were searched.
    ofRows : `bool`
        `True` when the keys of ``ids`` are exactly the distinct values of the query's
        rows over the type's keys (the rows' projection, in no particular order): every
        row had its dataset recorded and none was dropped afterwards. The graph then
        takes that projection from here rather than from a second pass over the rows.
    """

    ids: dict[tuple[Any, ...], int] = field(default_factory=dict)
    run: str | None = None
    runOf: dict[int, str] = field(default_factory=dict)
    ofRows: bool = False

    @classmethod
    def fromRefs(cls, refs: Mapping[tuple[Any, ...], tuple[int, str]]) -> FoundDatasets:
        """From ``{key values: (id, run)}`` (`Registry.findDatasetValues`)."""
        return cls({values: dsId for values, (dsId, _) in refs.items()}, None, dict(refs.values()))

    def refs(self, ids: Iterable[int]) -> Iterator[tuple[int, str]]:
        """``(id, run)`` of each of ``ids`` (ids of these datasets), in order."""
        if self.run is not None:
            return zip(ids, repeat(self.run))
        return ((dsId, self.runOf[dsId]) for dsId in ids)

    def asDict(self) -> dict[tuple[Any, ...], tuple[int, str]]:
        """``{key values: (id, run)}``, the form of `Registry.findDatasetValues`."""
        return dict(zip(self.ids, self.refs(self.ids.values()), strict=True))
