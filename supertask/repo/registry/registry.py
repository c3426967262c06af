"""The SQL registry: units, dataset types, collections, datasets — a facade over managers.

`Registry` is the public API; each concern is a manager of its own (``managers.py``):
unit records (`UnitManager`) with their sky boxes (`SkyBoxManager`), dataset types
(`DatasetTypeManager`), collections and run provenance (`CollectionManager`), datasets
(`DatasetManager`) and data-ID queries (`DataIdQueryManager`, over `QueryBuilder`).

Everything is bulk: units and datasets are inserted with one executemany per chunk
(idempotent through ``ON CONFLICT DO NOTHING`` plus a comparison of the conflicting rows),
look-ups by many data IDs use chunked IN lists, and every data-ID query is one joined
SELECT built by `QueryBuilder`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from ..dataid import DataId
from ..dataset import Dataset, DatasetType
from ..units import BOX_FIELDS, Universe
from .bulk import COPY_THRESHOLD, INSERT_CHUNK, data_id_key
from .database import RegistryDatabase
from .errors import (
    ConflictingDatasetError,
    IncompatibleSchemaError,
    MissingCollectionError,
    OutputExistsError,
    ReadOnlyError,
    RegistryError,
    RowLimitError,
    RunConflictError,
)
from .found import FoundDatasets
from .managers import RegistryManagers
from .query import QueryBuilder
from .schema import RegistrySchema
from .where import ParsedWhere


class Registry:
    """A registry database (SQLite file or PostgreSQL schema).

    Use `Registry.create` for a new registry and ``Registry(url)`` to open one.

    Parameters
    ----------
    url : `str`
        SQLAlchemy database URL.

    Raises
    ------
    RegistryError
        If the database holds no registry.
    IncompatibleSchemaError
        If its schema version's major number differs from this software's.
    """

    def __init__(self, url: str, *, readOnly: bool | None = None, _engine: sa.Engine | None = None):
        self._db = RegistryDatabase(url, readOnly=readOnly, engine=_engine)
        self._managers = RegistryManagers.make(self._db)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, url: str, universe: Universe | None = None) -> Registry:
        """Create the tables of a new registry and return it opened.

        Raises
        ------
        RegistryError
            If the database already holds a registry.
        """
        engine = RegistryDatabase.create(url, universe or Universe.default())
        return cls(url, _engine=engine)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the registry was opened with."""
        return self._db.url

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine of the registry database."""
        return self._db.engine

    @property
    def universe(self) -> Universe:
        """The units the registry was created with (stored in the database)."""
        return self._db.universe

    @property
    def schema(self) -> RegistrySchema:
        """The registry's tables, generated from its universe."""
        return self._db.schema

    @property
    def queries(self) -> QueryBuilder:
        """The builder of data-ID query statements (for callers that join unit tables themselves)."""
        return self._managers.queries.builder

    @property
    def isSqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return self._db.isSqlite

    def close(self) -> None:
        """Release the database connections."""
        self._db.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite: waits for, never fails on, the lock)."""
        with self._db.transaction() as conn:
            yield conn

    # ------------------------------------------------------------------ units
    def insertUnits(self, unitName: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert unit (or relation) rows in bulk; identical existing rows are accepted.

        Parameters
        ----------
        unitName : `str`
            A unit (``"visit"``) or relation (``"visit_detector_region"``) name.
        rows : iterable of `dict`
            Column values: the keys (``instrument``, ``visit``), the implied units
            (``physical_filter``) and any fields.

        Returns
        -------
        count : `int`
            The number of rows given.

        Raises
        ------
        ValueError
            If a row lacks a key, has an unknown column, or contradicts an existing row;
            or if a sky box (``ra_min, ra_max, dec_min, dec_max``) is partial, NaN, out of
            range (RA in [0, 360], Dec in [-90, 90]) or has ``dec_min > dec_max``. Rows are
            checked before anything is written: a batch with a bad row inserts nothing.
        """
        return self._managers.units.insert(unitName, rows)

    def getUnitRecords(self, unitName: str, dataIds: Iterable[DataId]) -> dict[DataId, dict[str, Any]]:
        """Field values of the given units (chunked look-up by the unit's own key)."""
        return self._managers.units.records(unitName, dataIds)

    def unitKeyValues(self, unit: str, limit: int | None = None) -> list[Any]:
        """Distinct key values of a unit, sorted (for messages and the CLI)."""
        return self._managers.units.keyValues(unit, limit)

    def countUnitRows(self, element: str) -> int:
        """Rows in a unit or relation table."""
        return self._managers.units.countRows(element)

    # ------------------------------------------------------------------ dataset types
    def registerDatasetType(self, datasetType: DatasetType) -> bool:
        """Register a dataset type; returns True if it was new.

        Raises
        ------
        ValueError
            If a unit is unknown, or the name is registered with other units or storage class.
        """
        return self._managers.datasetTypes.register(datasetType)

    def getDatasetType(self, name: str) -> DatasetType:
        """The registered dataset type of this name.

        Raises
        ------
        KeyError
            If no such type is registered (the message lists the registered names).
        """
        return self._managers.datasetTypes.get(name)

    def queryDatasetTypes(self) -> list[DatasetType]:
        """All registered dataset types, by name."""
        return self._managers.datasetTypes.all()

    # ------------------------------------------------------------------ collections
    def registerRun(self, name: str, provenance: Mapping[str, Any] | None = None) -> None:
        """Register a RUN collection (idempotent) and record its provenance.

        A second registration with different provenance (a restart with another command
        line) keeps the first and appends the new one under ``"later_executions"``. The
        collection row is read with ``SELECT ... FOR UPDATE`` (PostgreSQL; SQLite's write
        transaction is exclusive anyway), so concurrent registrations of one run each
        append their record instead of overwriting each other's.

        Raises
        ------
        RunConflictError
            If the run's recorded pipeline or task configs differ from ``provenance``'s
            (see `run_provenance`): one RUN holds the outputs of one configuration.
        """
        self._managers.collections.registerRun(name, provenance)

    def getRunProvenance(self, name: str) -> dict[str, Any] | None:
        """The provenance recorded with a RUN (``None`` if none was given)."""
        return self._managers.collections.runProvenance(name)

    def setChain(self, name: str, children: Sequence[str]) -> None:
        """Define (or redefine) a CHAINED collection searching ``children`` in order.

        Raises
        ------
        KeyError
            If a child does not exist.
        RegistryError
            If the chain would contain itself, or ``name`` is a RUN.
        """
        self._managers.collections.setChain(name, children)

    def getChain(self, name: str) -> list[str]:
        """The children of a CHAINED collection, in search order."""
        return self._managers.collections.chain(name)

    def resolveCollections(self, collections: Sequence[str] | str) -> list[tuple[int, str]]:
        """Flatten collections (chains expanded) into the ordered, de-duplicated RUNs to search."""
        return self._managers.collections.resolve(collections)

    # ------------------------------------------------------------------ datasets
    def insertDatasets(
        self, datasetType: DatasetType | str, run: str, records: Iterable[Mapping[str, Any]]
    ) -> list[Dataset]:
        """Register datasets in bulk.

        Parameters
        ----------
        datasetType : `DatasetType` or `str`
            A registered dataset type.
        run : `str`
            A registered RUN collection.
        records : iterable of `dict`
            ``dataId``, ``path`` (relative to the datastore root), ``size``, ``checksum``.

        Returns
        -------
        datasets : `list` [`Dataset`]
            Resolved handles (``id`` and ``run`` set), in the order of ``records``.

        Raises
        ------
        ConflictingDatasetError
            If a (type, data ID, run) is already registered with another checksum. The same
            checksum is a no-op, which makes re-running a registration job safe.
        """
        return self._managers.datasets.insert(datasetType, run, records)

    def insertDatasetGroups(
        self,
        run: str,
        groups: Sequence[Sequence[tuple[DatasetType | str, Mapping[str, Any]]]],
        *,
        beforeCommit: Callable[[], None] | None = None,
    ) -> None:
        """Register several groups of datasets (of any types) in ONE transaction.

        The executor registers the outputs of a batch of quanta this way, one group per
        quantum: either all of them are registered or none is, so a kill at any moment
        never leaves a quantum half registered.

        Parameters
        ----------
        run : `str`
            A registered RUN collection.
        groups : sequence of sequences of ``(dataset type, record)``
            Records as for `insertDatasets`.
        beforeCommit : callable, optional
            Called inside the transaction once every row is inserted and checked, before
            the commit (the executor moves the files to their final names there). If it
            raises, nothing is registered.

        Raises
        ------
        ConflictingDatasetError
            If any dataset is registered already with another checksum (nothing is registered).
        """
        self._managers.datasets.insertGroups(run, groups, beforeCommit=beforeCommit)

    def findDataset(
        self, typeOrName: DatasetType | str, dataId: Mapping[str, Any], collections: Sequence[str] | str
    ) -> Dataset | None:
        """The first dataset of this type and data ID in the collections' search order, or None."""
        return self._managers.datasets.find(typeOrName, dataId, collections)

    def queryDatasets(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        dataIds: Iterable[Mapping[str, Any]] | None = None,
    ) -> list[Dataset]:
        """Datasets of a type in the collections (first match per data ID in search order).

        Parameters
        ----------
        where : `str`, optional
            A data-ID expression; units it names are joined in.
        dataIds : iterable of data IDs, optional
            Only these data IDs (looked up with chunked IN lists).
        """
        return self._managers.datasets.query(typeOrName, collections, where, bind, dataIds)

    def findDatasetValues(
        self,
        typeOrName: DatasetType | str,
        collections: Sequence[str] | str,
        wanted: Iterable[tuple[Any, ...]],
    ) -> dict[tuple[Any, ...], tuple[int, str]]:
        """``{values: (id, run)}`` of the datasets of a type at the given data IDs (first in search order).

        The value-tuple form of ``queryDatasets(..., dataIds=...)`` for callers that index
        by data ID anyway (a RepoGraph): no `DataId` per dataset and no sort. ``wanted``
        holds tuples of key values in the order of ``universe.expand(datasetType.units)``,
        already of the keys' types; absent data IDs are absent from the result.
        """
        return self._managers.datasets.findValues(typeOrName, collections, wanted)

    def getDatasetLocation(self, dataset: Dataset) -> tuple[str, int | None, str | None]:
        """``(path, size, checksum)`` of a registered dataset (by id, else by type, data ID and run).

        Raises
        ------
        LookupError
            If the dataset is not registered.
        """
        return self._managers.datasets.location(dataset)

    def getDatasetLocations(self, datasets: Sequence[Dataset]) -> list[str]:
        """Paths of many registered datasets, in order: one chunked ``IN`` query over their ids.

        The executor looks up every overall input of a graph before the first quantum
        starts; one query per dataset took seconds for 10^4 inputs. Datasets without an
        id are looked up one by one as in `getDatasetLocation`.

        Raises
        ------
        LookupError
            If any dataset is not registered (the message names up to five of them).
        """
        return self._managers.datasets.locations(datasets)

    def getDatasetRecords(self, datasets: Sequence[Dataset]) -> dict[int, tuple[str, int | None, str | None]]:
        """``{id: (path, size, checksum)}`` of the registered datasets among ``datasets`` (by id).

        One chunked ``IN`` query; datasets without an id, or no longer registered, are
        absent from the result. Batch preparation records sizes and checksums for the
        jobs, which verify their inputs without a registry.
        """
        return self._managers.datasets.records(datasets)

    def getDatasetRecordsById(self, ids: Iterable[int]) -> dict[int, tuple[str, int | None, str | None]]:
        """``{id: (path, size, checksum)}`` of the registered datasets among ``ids``.

        `getDatasetRecords` for a caller that holds registry ids rather than `Dataset`
        objects (a streamed `bps prepare` keeps only the ids of a graph's overall inputs):
        range scans of dense runs of ids, ``IN`` lists of the others; ids no longer registered
        are absent from the result.
        """
        return self._managers.datasets.recordsById(ids)

    def removeDatasets(self, datasets: Iterable[Dataset]) -> int:
        """Unregister resolved datasets (files are the datastore's business); returns the count."""
        return self._managers.datasets.remove(datasets)

    def countDatasets(self, typeOrName: DatasetType | str | None = None) -> int:
        """How many datasets are registered (of one type, or all)."""
        return self._managers.datasets.count(typeOrName)

    def countDatasetsIn(self, typeOrName: DatasetType | str, collections: Sequence[str] | str) -> int:
        """How many datasets of a type the collections hold (duplicates across runs counted once)."""
        return self._managers.datasets.countIn(typeOrName, collections)

    # ------------------------------------------------------------------ data-ID queries
    def queryDataIds(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        restrict: Mapping[str, Iterable[Any]] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> list[DataId]:
        """Distinct data IDs over ``units`` (plus required keys), from one joined SELECT.

        Parameters
        ----------
        units : iterable of `str`
            The units wanted; the data IDs carry these and the units they require.
        where : `str`, optional
            A data-ID expression (may name units beyond ``units``: they are joined in).
        bind : `dict`, optional
            Values of ``:name`` parameters in ``where``.
        restrict : `dict` [`str`, collection], optional
            ``{unit: key values}``: only rows whose unit key is among the values
            (chunked IN lists; the biggest set is split into chunks).
        datasets : sequence of dataset types, optional
            Keep only rows for which a dataset of each type exists in ``collections``.

        Returns
        -------
        dataIds : `list` [`DataId`]
            Sorted by key columns.
        """
        return self._managers.queries.dataIds(
            units, where, bind, restrict, datasets=datasets, collections=collections
        )

    def queryDataIdValues(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        restrict: Mapping[str, Iterable[Any]] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
        ordered: bool = True,
        max_rows: int | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """`queryDataIds` as value tuples: ``(keys, rows)``, rows distinct and sorted.

        The same query and order as `queryDataIds`, without a `DataId` per row: a
        planning query of a million rows is kept as tuples plus one key order, and
        callers build data IDs only for the distinct projections they need.
        ``ordered=False`` skips the final sort (rows in no particular order) for callers
        that index or re-sort the rows anyway: about 3 s per 10^6 rows.

        ``max_rows`` guards against a badly constrained query: rows are streamed, and
        `RowLimitError` is raised as soon as more than ``max_rows`` have arrived, so a
        runaway query costs neither its whole fetch nor a separate COUNT beforehand.
        """
        return self._managers.queries.values(
            units,
            where,
            bind,
            restrict,
            datasets=datasets,
            collections=collections,
            ordered=ordered,
            max_rows=max_rows,
        )

    def queryDataIdValuesWithDatasets(
        self,
        units: Iterable[str],
        where: str | None = None,
        bind: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
        max_rows: int | None = None,
    ) -> tuple[tuple[str, ...], list[tuple[Any, ...]], dict[str, FoundDatasets]]:
        """`queryDataIdValues` and the datasets it required: ``(keys, rows, found)``.

        The same rows, sorted; ``found[type name]`` holds what `findDatasetValues` of
        that type at the rows' data IDs returns (the first dataset in the search order
        of ``collections``; `FoundDatasets.asDict` gives it in that form), read by the
        query itself: the statement selects each
        row's dataset instead of testing that one exists, so preflight makes no second
        pass over every dataset of its input types. Only dataset types whose keys are
        all among ``units`` are found so; others are absent from ``found`` (and still
        required), and the caller looks them up with `findDatasetValues`. On PostgreSQL,
        which runs such a subquery once per row, every type is tested by ``EXISTS`` and
        ``found`` is empty.
        """
        return self._managers.queries.valuesWithDatasets(
            units, where, bind, datasets=datasets, collections=collections, max_rows=max_rows
        )

    def queryRelatedDataIdValues(
        self,
        fromKeys: Sequence[str],
        toKeys: Sequence[str],
        restrict: Mapping[str, Iterable[Any]] | None = None,
    ) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
        """Which values over ``toKeys`` the repository relates to each combination over ``fromKeys``.

        ``{from values: [to values, ...]}``: the rows of `queryDataIdValues` over both
        key sets, grouped by their ``fromKeys`` values (tuples in the order of the
        keys given). Each list holds distinct tuples, in no particular order; a
        combination related to nothing is absent. ``restrict`` limits ``fromKeys``
        values only. Where it can (integer and string keys), the database does the
        grouping and sends one row per group: a patch's warps gather every visit
        and detector overlapping it, and a Python tuple per overlap was most of a
        campaign's look-up.

        Raises
        ------
        KeyError
            If ``restrict`` names a key outside ``fromKeys``.
        """
        return self._managers.queries.related(fromKeys, toKeys, restrict)

    def countDataIds(
        self,
        units: Iterable[str],
        where: str | ParsedWhere | None = None,
        bind: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[DatasetType | str] = (),
        collections: Sequence[str] | str | None = None,
    ) -> int:
        """The number of rows `queryDataIds` would return (a COUNT, so operators can check size first)."""
        return self._managers.queries.count(units, where, bind, datasets=datasets, collections=collections)


__all__ = [
    "BOX_FIELDS",
    "COPY_THRESHOLD",
    "INSERT_CHUNK",
    "ConflictingDatasetError",
    "IncompatibleSchemaError",
    "MissingCollectionError",
    "OutputExistsError",
    "ReadOnlyError",
    "Registry",
    "RegistryError",
    "RowLimitError",
    "RunConflictError",
    "data_id_key",
]
