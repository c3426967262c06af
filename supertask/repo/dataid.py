"""Data IDs: the unit values that identify a dataset or a quantum.

A data ID maps unit names (``instrument``, ``visit``, ``detector``, ``tract``...) to
their key values. It is immutable and hashable so that it can key dictionaries and
sets in a graph of a million quanta; its items are kept sorted by unit name so that
two data IDs with the same content always compare and hash alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

KeyValue = int | str


class DataId(Mapping[str, KeyValue]):
    """An immutable mapping from unit name to key value.

    Parameters
    ----------
    mapping : `~collections.abc.Mapping` or iterable of pairs, optional
        Initial content.
    **kwargs
        More unit values.
    """

    __slots__ = ("_values", "_hash")

    def __init__(self, mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kwargs: Any):
        items = dict(mapping, **kwargs) if kwargs else dict(mapping)
        self._values: dict[str, KeyValue] = dict(sorted(items.items()))
        self._hash: int | None = None

    @classmethod
    def _from_sorted(cls, values: dict[str, KeyValue]) -> DataId:
        """Build without sorting; ``values`` must already be sorted by key (internal fast path)."""
        self = cls.__new__(cls)
        self._values = values
        self._hash = None
        return self

    @classmethod
    def _many_from_sorted(cls, keys: tuple[str, ...], values: Iterable[tuple[Any, ...]]) -> list[DataId]:
        """One data ID per value tuple over ``keys`` (sorted by name), in order (internal fast path).

        The bulk form of `_from_sorted` for the projections of a planning query (a
        million data IDs at 10^6 quanta). Each dictionary comes from one call of a
        function that is a dict display of the keys (`_dict_maker`), half the cost of
        ``dict(zip(keys, v))``. Each hash is the one `__hash__` would compute (that of
        the value tuple), taken from the tuple at hand: the graph hashes nearly every
        one of these data IDs, and `__hash__` would otherwise build the same tuple
        again. Each data ID's object, dictionary and hash are made together, as one
        at a time would make them (the same memory layout, no list of a million
        dictionaries on the side).

        Raises
        ------
        ValueError
            If a tuple has not one value per key.
        """
        make = _dict_maker(keys)
        new = object.__new__
        out: list[DataId] = []
        append = out.append
        for v in values:
            self = new(cls)
            try:
                self._values = make(*v)
            except TypeError:  # (the maker takes exactly one value per key)
                raise ValueError(f"value tuples over {keys} must have {len(keys)} values each") from None
            self._hash = hash(tuple(v))  # (a tuple is itself: no copy)
            append(self)
        return out

    def __getitem__(self, key: str) -> KeyValue:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __hash__(self) -> int:
        if self._hash is None:
            # The values alone (keys are sorted, so equal data IDs have equal value
            # tuples): half the cost of hashing the (key, value) pairs, and data IDs
            # sharing a dictionary nearly always share their keys.
            self._hash = hash(tuple(self._values.values()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataId):
            return self._values == other._values
        if isinstance(other, Mapping):
            return self._values == dict(other)
        return NotImplemented

    def __lt__(self, other: DataId) -> bool:
        return self.sort_key() < other.sort_key()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v!r}" for k, v in self._values.items())
        return "{" + inner + "}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataId._from_sorted, (self._values,))

    @property
    def units(self) -> frozenset[str]:
        """The unit names this data ID has values for."""
        return frozenset(self._values)

    def sort_key(self) -> tuple[Any, ...]:
        """A key that orders data IDs deterministically even with mixed value types."""
        return tuple((k, (0, v) if isinstance(v, int) else (1, str(v))) for k, v in self._values.items())

    def subset(self, units: Iterable[str]) -> DataId:
        """Return the data ID restricted to ``units``.

        Raises
        ------
        KeyError
            If a requested unit has no value here; the message lists what is present.
        """
        values = self._values
        try:
            return DataId._from_sorted({u: values[u] for u in sorted(units)})
        except KeyError as err:
            raise KeyError(
                f"data ID {self!r} has no value for unit {err.args[0]!r}; it has {sorted(values)}"
            ) from None

    def union(self, other: Mapping[str, KeyValue]) -> DataId:
        """Combine two data IDs, refusing contradictory values."""
        merged = dict(self._values)
        for key, value in other.items():
            if merged.setdefault(key, value) != value:
                raise ValueError(f"data IDs disagree on {key!r}: {merged[key]!r} != {value!r}")
        return DataId(merged)

    def matches(self, other: Mapping[str, KeyValue]) -> bool:
        """True if the two data IDs agree on every unit they share."""
        values = self._values
        return all(values.get(k, v) == v for k, v in other.items())

    def to_dict(self) -> dict[str, KeyValue]:
        """A plain dict copy (for JSON and YAML)."""
        return dict(self._values)


@lru_cache(maxsize=256)
def _dict_maker(keys: tuple[str, ...]) -> Callable[..., dict[str, KeyValue]]:
    """A function of ``len(keys)`` values returning the dictionary ``{keys[i]: values[i]}``, keys in order.

    Written as a dict display of the keys (one bytecode building the whole dictionary,
    the same dictionary as ``dict(zip(keys, values))``), which costs about half as much
    per call: `DataId._many_from_sorted` makes a million of them at 10^6 quanta. The
    keys appear in the code only as string literals (``repr``); the parameters are
    named by position, so any key text is safe.
    """
    params = ", ".join(f"_{i}" for i in range(len(keys)))
    items = ", ".join(f"{key!r}: _{i}" for i, key in enumerate(keys))
    made: Callable[..., dict[str, KeyValue]] = eval(f"lambda {params}: {{{items}}}", {"__builtins__": {}})
    return made
