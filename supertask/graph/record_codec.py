"""Turn a `Quantum` into a compact tuple of plain values, and back.

Why plain tuples
----------------
A ``.qgraph`` file must load with any later version of the software (graph
files that only load with the exact software version that wrote them strand a campaign
whenever the software is upgraded). Pickling
`Quantum` and `Dataset` objects would store their module paths and constructor
signatures; pickling tuples of ``int``/``str``/``None`` stores nothing but data, and the
reader can refuse any pickle that names a class at all.

Why interning
-------------
Most of a quantum's bytes are the data IDs of its inputs and outputs, and the same
dataset type, task label, run name and set of data-ID keys recur in every record. The
encoder numbers each of those once (the *tables*, stored once in the file header
section) and a record refers to them by index, so a record is essentially its
data-ID values.

Record layout (format version 1)::

    (label_index, keyset_index, data_id_values, inputs, outputs)

where ``inputs`` and ``outputs`` are tuples with one entry per dataset type::

    (type_index, keyset_index, flat_values, ids, runs)

``flat_values`` holds the values of every dataset of that type one after the other
(``len(keyset)`` values each); ``ids`` is ``None`` when no dataset has a registry id,
else one ``int | None`` per dataset; ``runs`` likewise holds run-name indices or ``-1``.
When the datasets of one type do not all share the same data-ID keys, or their data
IDs are empty (a dataset with no units), ``keyset_index`` is ``-1`` and
``flat_values`` is a tuple of ``(keyset_index, values)`` pairs.

This module must stay light: a batch job imports it to read one quantum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from ..quantum import Quantum
from ..repo.dataid import DataId, KeyValue
from ..repo.dataset import Dataset, DatasetType

__all__ = ("PlainDataset", "PlainQuantum", "RecordDecoder", "RecordEncoder", "Tables")

Tables = dict[str, list[Any]]
"""The interning tables: ``datasetTypes`` (name, units, storageClass), ``keySets``
(sorted tuples of unit names), ``labels`` and ``runs``."""

_MIXED = -1

PlainDataset = tuple[int, int, tuple[Any, ...], "int | None", int]
"""``(type_index, keyset_index, data_id_values, id, run_index)`` of one dataset of a record
(``run_index`` ``-1``: no RUN); see `RecordDecoder.decode_plain`."""

PlainQuantum = tuple[int, int, tuple[Any, ...], list[PlainDataset], list[PlainDataset]]
"""``(label_index, keyset_index, data_id_values, inputs, outputs)``; see `RecordDecoder.decode_plain`."""


class _Interner:
    """Assign consecutive indices to hashable values in first-seen order."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}
        self.values: list[Any] = []

    def __call__(self, value: Any) -> int:
        i = self.index.get(value)
        if i is None:
            i = self.index[value] = len(self.values)
            self.values.append(value)
        return i


_PLAIN_VALUES = frozenset((int, str))
_PLAIN_IDS = frozenset((int, type(None)))


def _values(dataId: DataId) -> dict[str, KeyValue]:
    """The sorted ``{unit: value}`` dict behind a data ID (without copying when possible)."""
    values = getattr(dataId, "_values", None)
    return values if type(values) is dict else dict(sorted(dataId.items()))


def _check_values(values: Iterable[Any], what: Callable[[], str]) -> None:
    # map/issuperset run in C: this check costs little even for a million records
    if not _PLAIN_VALUES.issuperset(map(type, values)):
        bad = next(v for v in values if type(v) is not int and type(v) is not str)
        raise TypeError(
            f"{what()} has a data-ID value {bad!r} of type {type(bad).__name__}; graph files store only "
            "int and str data-ID values: convert it before building the graph"
        )


class RecordEncoder:
    """Encode quanta into plain tuples, growing the interning tables as it goes.

    The same encoder must encode every record of one file, and its `tables` must be
    written after the last record (they are complete only then).
    """

    def __init__(self) -> None:
        self._labels = _Interner()
        self._keysets = _Interner()
        self._runs = _Interner()
        self._types: dict[str, int] = {}
        self._type_values: list[tuple[str, tuple[str, ...], str]] = []
        self._type_objects: list[DatasetType] = []  # identity fast path of _type_index

    def _type_index(self, datasetType: DatasetType) -> int:
        """Index of ``datasetType``, refusing two different types with one name."""
        i = self._types.get(datasetType.name)
        if i is None:
            i = self._types[datasetType.name] = len(self._type_values)
            self._type_values.append((datasetType.name, datasetType.units, datasetType.storageClass))
            self._type_objects.append(datasetType)
        elif self._type_values[i] != (datasetType.name, datasetType.units, datasetType.storageClass):
            raise ValueError(
                f"two different dataset types are both named {datasetType.name!r}: "
                f"{self._type_values[i]} and {(datasetType.name, datasetType.units, datasetType.storageClass)}; "
                "a graph needs one definition per name"
            )
        return i

    def _datasets(self, by_type: dict[str, list[Dataset]], quantum: Quantum) -> tuple[Any, ...]:
        # hot loop of writing a graph: a million quanta, a few dataset lists each
        entries = []
        keysets = self._keysets
        for datasets in by_type.values():
            if not datasets:
                continue
            first = datasets[0]
            datasetType = first.datasetType
            type_index = self._types.get(datasetType.name)
            if type_index is None or self._type_objects[type_index] is not datasetType:
                type_index = self._type_index(datasetType)
            if len(datasets) == 1 and first.dataId:
                values = _values(first.dataId)
                keyset = keysets(tuple(values))
                flat: tuple[Any, ...] = tuple(values.values())
                if not _PLAIN_VALUES.issuperset(map(type, flat)):
                    _check_values(flat, lambda: repr(quantum))
                ids: tuple[int | None, ...] | None = None if first.id is None else (first.id,)
                runs: tuple[int, ...] | None = None if first.run is None else (self._runs(first.run),)
            else:
                if any(d.datasetType is not datasetType for d in datasets) and any(
                    d.datasetType.name != datasetType.name for d in datasets
                ):
                    raise ValueError(
                        f"{quantum!r} lists datasets of several types under {datasetType.name!r}"
                    )
                dicts = [_values(d.dataId) for d in datasets]
                keys = dicts[0].keys()
                if keys and all(v.keys() == keys for v in dicts):
                    keyset = keysets(tuple(keys))
                    flat = tuple(chain.from_iterable(v.values() for v in dicts))
                    if not _PLAIN_VALUES.issuperset(map(type, flat)):
                        _check_values(flat, lambda: repr(quantum))
                else:
                    keyset = _MIXED
                    flat = tuple((keysets(tuple(v)), tuple(v.values())) for v in dicts)
                    for _, values in flat:
                        _check_values(values, lambda: repr(quantum))
                ids = tuple(d.id for d in datasets)
                if ids.count(None) == len(ids):
                    ids = None
                runs_ = [d.run for d in datasets]
                runs = None
                if runs_.count(None) != len(runs_):
                    runs = tuple(_MIXED if r is None else self._runs(r) for r in runs_)
            if ids is not None and not _PLAIN_IDS.issuperset(map(type, ids)):
                raise TypeError(f"{quantum!r} has an input or output whose registry id is not an int: {ids}")
            entries.append((type_index, keyset, flat, ids, runs))
        return tuple(entries)

    def encode(self, quantum: Quantum) -> tuple[Any, ...]:
        """Return the plain-tuple record of ``quantum`` (its ``id`` is not stored)."""
        values = _values(quantum.dataId)
        _check_values(values.values(), lambda: f"data ID of {quantum!r}")
        return (
            self._labels(quantum.taskLabel),
            self._keysets(tuple(values)),
            tuple(values.values()),
            self._datasets(quantum.inputs, quantum),
            self._datasets(quantum.outputs, quantum),
        )

    def tables(self) -> Tables:
        """The interning tables the records written so far refer to."""
        bad = [r for r in self._runs.values if type(r) is not str]
        if bad:
            raise TypeError(f"run names must be str, not {bad[0]!r} of type {type(bad[0]).__name__}")
        return {
            "datasetTypes": list(self._type_values),
            "keySets": list(self._keysets.values),
            "labels": list(self._labels.values),
            "runs": list(self._runs.values),
        }


class RecordDecoder:
    """Rebuild `Quantum` objects from records, sharing `Dataset` objects between them.

    Parameters
    ----------
    tables : `Tables`
        The interning tables of the file.

    Notes
    -----
    Datasets are cached by their encoded identity, so every quantum decoded by one
    decoder that reads or writes the same dataset holds the same `Dataset` object, as
    a `QuantumGraph` requires.
    """

    def __init__(self, tables: Tables):
        try:
            self._types = [DatasetType(name, tuple(units), sc) for name, units, sc in tables["datasetTypes"]]
            self._keysets = [tuple(k) for k in tables["keySets"]]
            self._labels = list(tables["labels"])
            self._runs = list(tables["runs"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed interning tables: {err}") from None
        self._cache: dict[tuple[Any, ...], Dataset] = {}
        #: the number of keys of each keyset (`decode_plain`)
        self._widths = list(map(len, self._keysets))

    def _dataset(self, type_index: int, keyset: int, values: tuple[Any, ...], id: Any, run: int) -> Dataset:
        key = (type_index, keyset, values)
        dataset = self._cache.get(key)
        if dataset is None:
            dataId = DataId._from_sorted(dict(zip(self._keysets[keyset], values, strict=True)))
            dataset = Dataset(
                self._types[type_index], dataId, id=id, run=self._runs[run] if run >= 0 else None
            )
            self._cache[key] = dataset
        return dataset

    def _pairs(self, entry: Any) -> tuple[int, list[tuple[int, Any]], Any, Any]:
        """``(type_index, [(keyset_index, values)], ids, runs)`` of one per-type entry of a record."""
        type_index, keyset, flat, ids, runs = entry
        if keyset == _MIXED:
            pairs = list(flat)
        else:
            width = len(self._keysets[keyset])
            if width == len(flat):  # the common case: one dataset of this type
                pairs = [(keyset, flat)]
            elif width == 0:  # the encoder writes empty data IDs in the mixed form
                raise ValueError("datasets with empty data IDs in the flat form")
            else:
                pairs = [(keyset, flat[i : i + width]) for i in range(0, len(flat), width)]
        n = len(pairs)
        ids = ids if ids is not None else (None,) * n
        runs = runs if runs is not None else (_MIXED,) * n
        if len(ids) != n or len(runs) != n:
            raise ValueError("dataset ids or runs do not match the number of datasets")
        return type_index, pairs, ids, runs

    def _datasets(self, entries: tuple[Any, ...]) -> dict[str, list[Dataset]]:
        result: dict[str, list[Dataset]] = {}
        for entry in entries:
            type_index, pairs, ids, runs = self._pairs(entry)
            result[self._types[type_index].name] = [
                self._dataset(type_index, ks, values, id, run)
                for (ks, values), id, run in zip(pairs, ids, runs, strict=True)
            ]
        return result

    def _plain(self, entries: tuple[Any, ...]) -> list[PlainDataset]:
        """The datasets of ``entries`` as `PlainDataset` tuples, in the order `_datasets` lists them.

        One entry of one dataset (most entries: a calibrate quantum's raw, its calexp) is
        taken first, without the loop's set-up.
        """
        if len(entries) == 1:
            ((type_index, keyset, flat, ids, runs),) = entries
            self._types[type_index]  # noqa: B018 - refuses a type index outside the tables
            if (
                keyset >= 0
                and len(flat) == self._widths[keyset] != 0
                and (ids is None or len(ids) == 1)
                and (runs is None or len(runs) == 1)
            ):
                run = _MIXED if runs is None else runs[0]
                if run >= len(self._runs):
                    raise ValueError(f"unknown run index {run}")
                return [(type_index, keyset, flat, None if ids is None else ids[0], run)]
        keysets, types, n_runs = self._keysets, self._types, len(self._runs)
        result: list[PlainDataset] = []
        for entry in entries:
            type_index, keyset, flat, ids, runs = entry
            types[type_index]  # noqa: B018 - refuses a type index outside the tables
            if (
                keyset >= 0
                and len(flat) == len(keysets[keyset]) != 0
                and (ids is None or len(ids) == 1)
                and (runs is None or len(runs) == 1)
            ):  # the common case: one dataset of this type
                run = _MIXED if runs is None else runs[0]
                if run >= n_runs:
                    raise ValueError(f"unknown run index {run}")
                result.append((type_index, keyset, flat, None if ids is None else ids[0], run))
                continue
            _, pairs, ids, runs = self._pairs(entry)
            for (ks, values), id, run in zip(pairs, ids, runs, strict=True):
                if len(keysets[ks]) != len(values) or run >= n_runs:
                    raise ValueError(
                        f"a dataset of {types[type_index].name} has {len(values)} data-ID values for keys "
                        f"{keysets[ks]}, or an unknown run index {run}"
                    )
                result.append((type_index, ks, values, id, run))
        if len(entries) > 1:
            names = [types[entry[0]].name for entry in entries]
            if len(set(names)) != len(names):
                # two entries of one type: the later one replaces the earlier, as in `_datasets`
                by_name: dict[str, list[PlainDataset]] = {}
                for entry, name in zip(entries, names, strict=True):
                    by_name[name] = self._plain((entry,))
                result = [d for datasets in by_name.values() for d in datasets]
        return result

    def decode(self, record: tuple[Any, ...], id: int) -> Quantum:
        """Rebuild the quantum with index ``id`` from its record.

        Raises
        ------
        ValueError
            If the record does not have the layout of this format version (the caller
            turns it into a `GraphFileError` naming the file).
        """
        try:
            label, keyset, values, inputs, outputs = record
            dataId = DataId._from_sorted(dict(zip(self._keysets[keyset], values, strict=True)))
            return Quantum(
                self._labels[label], dataId, self._datasets(inputs), self._datasets(outputs), id=id
            )
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"record of quantum {id} is malformed: {err}") from None

    def decode_plain(self, record: tuple[Any, ...], id: int) -> PlainQuantum:
        """The quantum with index ``id`` as plain values: no `Quantum`, `Dataset` or `DataId`.

        Returns ``(label_index, keyset_index, data_id_values, inputs, outputs)`` with the
        inputs and outputs as lists of `PlainDataset`, in the order `decode` lists them; the
        indices refer to `types`, `keysets`, `labels` and `runs`. For a streamed `bps
        prepare`, which keeps a few columns per dataset and makes no object per quantum.

        Raises
        ------
        ValueError
            If the record is malformed, as `decode` does.
        """
        try:
            label, keyset, values, inputs, outputs = record
            if self._widths[keyset] != len(values):
                raise ValueError(f"{len(values)} data-ID values for keys {self._keysets[keyset]}")
            self._labels[label]  # noqa: B018 - refuses a label index outside the tables
            return label, keyset, values, self._plain(inputs), self._plain(outputs)
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"record of quantum {id} is malformed: {err}") from None

    @property
    def types(self) -> list[DatasetType]:
        """The dataset types of the file, by type index."""
        return self._types

    @property
    def keysets(self) -> list[tuple[str, ...]]:
        """The data-ID key sets (sorted unit names) of the file, by keyset index."""
        return self._keysets

    @property
    def labels(self) -> list[str]:
        """The task labels of the file, by label index."""
        return self._labels

    @property
    def runs(self) -> list[str]:
        """The RUN names of the file, by run index (``-1``: no RUN)."""
        return self._runs
