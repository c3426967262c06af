"""Dataset types and the seed's ``Dataset`` handle.

The design note (DMTN-055 section 6.2) makes each dataset type a dynamically created
``Dataset`` subclass. Here a dataset type is a small immutable value, `DatasetType`,
and a `Dataset` is one instance of it: type plus data ID. One class instead of one
subclass per type keeps graphs picklable by any process that imports ``supertask``,
which every batch job must do, and stores no class of a given software version in a
graph file (a file that only loads with the exact version that wrote it is stranded by
the next upgrade).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import TYPE_CHECKING, Any

from .dataid import DataId

if TYPE_CHECKING:
    from ..quantum import Quantum


class DatasetType:
    """A named kind of dataset.

    Parameters
    ----------
    name : `str`
        The dataset type name, e.g. ``"calexp"``.
    units : `tuple` [`str`]
        The unit names whose values identify one dataset of this type. Stored
        sorted so that equal sets of units compare equal.
    storageClass : `str`
        How the in-memory object is written and read (see ``repo.formatters``),
        e.g. ``"NumpyArray"``, ``"StructuredDataDict"``, ``"Table"``.

    Notes
    -----
    Immutable and hashable. Written as a plain slotted class rather than a
    dataclass: every batch job imports this module, and ``dataclasses`` costs
    start-up time.
    """

    __slots__ = ("name", "units", "storageClass")

    name: str
    units: tuple[str, ...]
    storageClass: str

    def __init__(self, name: str, units: Iterable[str], storageClass: str):
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ValueError(
                f"invalid dataset type name {name!r}: use letters, digits and '_', not starting with a digit"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "units", tuple(sorted(set(units))))
        object.__setattr__(self, "storageClass", storageClass)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"DatasetType is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetType):
            return NotImplemented
        return (self.name, self.units, self.storageClass) == (other.name, other.units, other.storageClass)

    def __hash__(self) -> int:
        return hash((self.name, self.units, self.storageClass))

    def __repr__(self) -> str:
        return f"DatasetType(name={self.name!r}, units={self.units!r}, storageClass={self.storageClass!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DatasetType, (self.name, self.units, self.storageClass))


class _Unlinked(list["Quantum"]):
    """The ``consumers`` of a dataset no graph has linked yet: empty, and shared by all of them.

    A million datasets made during preflight would otherwise each hold an empty list
    of their own (56 bytes apiece, about 110 MB at 10^6 quanta) until the
    `QuantumGraph` gives every one of them its real list of readers. The graph always
    assigns a new list before adding readers, so this one only has to stay empty:
    every way of adding to it raises.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "this dataset is not linked into a graph: assign a new list to its consumers before adding to it"
        )

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


#: the ``consumers`` of every dataset until a graph links it
_NOT_LINKED: list[Quantum] = _Unlinked()


class Dataset:
    """A handle to one dataset: its `DatasetType` and the `DataId` that identifies it.

    ``creator`` and ``consumers`` are the graph links of the seed (the quantum that
    will produce this dataset, and the quanta that read it); they are filled in by
    the graph builder and are not pickled. Until then ``consumers`` is one shared empty
    list that refuses additions (a fresh list per dataset would cost 56 bytes apiece
    at a million datasets): assign a list of one's own before adding readers. ``id`` and ``run`` are set when the
    dataset is known to the registry (resolved), ``None`` for datasets that a
    pipeline will produce.

    Equality and hashing use only the type name and data ID.
    """

    __slots__ = ("datasetType", "dataId", "creator", "consumers", "id", "run")

    def __init__(
        self,
        datasetType: DatasetType,
        dataId: DataId,
        *,
        id: int | None = None,
        run: str | None = None,
    ):
        self.datasetType = datasetType
        self.dataId = dataId if isinstance(dataId, DataId) else DataId(dataId)
        self.creator: Quantum | None = None
        self.consumers: list[Quantum] = _NOT_LINKED
        self.id = id
        self.run = run

    @classmethod
    def _many(
        cls,
        datasetType: DatasetType,
        dataIds: Iterable[DataId],
        refs: Iterable[tuple[int, str]] | None = None,
    ) -> list[Dataset]:
        """One dataset of ``datasetType`` per data ID, in order (internal fast path).

        The bulk form of the constructor for preflight's million inputs and outputs:
        ``dataIds`` must be `DataId` objects already (nothing is converted), ``refs``
        the ``(id, run)`` of each when they are resolved. About a third cheaper than
        one constructor call per dataset.
        """
        new = object.__new__
        out: list[Dataset] = []
        append = out.append
        pairs: Iterable[tuple[DataId, tuple[int | None, str | None]]] = (
            zip(dataIds, repeat((None, None))) if refs is None else zip(dataIds, refs, strict=True)
        )
        for dataId, (id_, run) in pairs:
            self = new(cls)
            self.datasetType = datasetType
            self.dataId = dataId
            self.creator = None
            self.consumers = _NOT_LINKED
            self.id = id_
            self.run = run
            append(self)
        return out

    @property
    def name(self) -> str:
        """The dataset type name."""
        return self.datasetType.name

    @property
    def key(self) -> tuple[str, DataId]:
        """``(dataset type name, data ID)``: the identity of this dataset within a run."""
        return (self.datasetType.name, self.dataId)

    def __hash__(self) -> int:
        return hash((self.datasetType.name, self.dataId))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dataset):
            return NotImplemented
        return self.datasetType.name == other.datasetType.name and self.dataId == other.dataId

    def __repr__(self) -> str:
        return f"Dataset({self.datasetType.name}, {self.dataId!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_dataset, (self.datasetType, self.dataId, self.id, self.run))


def _restore_dataset(datasetType: DatasetType, dataId: DataId, id: int | None, run: str | None) -> Dataset:
    return Dataset(datasetType, dataId, id=id, run=run)
