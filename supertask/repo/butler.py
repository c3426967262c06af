"""The Butler: the whole I/O interface a task sees (``get`` and ``put``), plus ingest.

A Butler joins a `Registry` (what exists, where, in which collection) and a `Datastore`
(the files). Writes go into one RUN collection (``butler.run``); reads search an ordered
list of collections (``butler.collections``). A ``put`` writes the file atomically first
and registers it second, so a crash can leave an unregistered file (harmless, overwritten
by a retry) but never a registered dataset that is missing or half-written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dataid import DataId
from .dataset import Dataset, DatasetType
from .datastore import Datastore, DatastoreError
from .registry import SCHEMA_VERSION, ConflictingDatasetError, IncompatibleSchemaError, Registry
from .repo_config import read_repo_config, write_repo_config
from .units import Universe

SQLITE_NAME = "registry.sqlite3"
INGEST_MODES = ("copy", "hardlink", "symlink", "move")


@dataclass(frozen=True)
class IngestItem:
    """One existing file to ingest: where it is, what it is."""

    path: str | Path
    datasetType: DatasetType
    dataId: Mapping[str, Any]


class Butler:
    """Open a data repository.

    Parameters
    ----------
    root : `str` or `~pathlib.Path`
        The repository directory (holds ``butler.yaml``).
    collections : sequence of `str`, optional
        Collections to search on reads, in order. Defaults to ``[run]`` when only
        ``run`` is given.
    run : `str`, optional
        The RUN collection writes go to (registered if new).
    writeable : `bool`, optional
        `False` opens an SQLite registry read-only (for callers that only read: queries,
        planning, ``get``); `True` read-write. By default it is read-only exactly when
        this process may not write it (a shared release area), so such a repository can
        still be queried; a write then raises `ReadOnlyError` naming the repository.

    Raises
    ------
    supertask.repo.repo_config.RepoConfigError
        If ``root`` is not a repository.
    IncompatibleSchemaError
        If the repository was written with another major schema version.
    """

    def __init__(
        self,
        root: str | Path,
        collections: Sequence[str] | str | None = None,
        run: str | None = None,
        *,
        writeable: bool | None = None,
    ):
        if writeable is False and run is not None:
            raise ValueError(f"a read-only Butler cannot write to run {run!r}; drop run= or writeable=False")
        self.root = Path(root)
        config = read_repo_config(self.root)
        self.config = config
        version = str(config["registry"].get("schema_version", "?"))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise IncompatibleSchemaError(
                f"repository {root} has schema version {version}; this software reads "
                f"{SCHEMA_VERSION.split('.')[0]}.x. Use a matching supertask release."
            )
        self.registry = Registry(self.dbUrl, readOnly=None if writeable is None else not writeable)
        self.datastore = Datastore(self.root, config.get("datastore"))
        self.run = run
        if run is not None:
            self.registry.registerRun(run)
        if isinstance(collections, str):
            collections = [collections]
        self.collections: list[str] = list(collections) if collections else ([run] if run else [])

    @property
    def dbUrl(self) -> str:
        """The registry URL (the SQLite file is found relative to the root, so repositories can move)."""
        url = self.config["registry"].get("db_url")
        return url or f"sqlite:///{(self.root / SQLITE_NAME).resolve()}"

    @property
    def universe(self) -> Universe:
        """The repository's units."""
        return self.registry.universe

    @classmethod
    def create(
        cls,
        root: str | Path,
        db_url: str | None = None,
        *,
        templates: Mapping[str, str] | None = None,
        universe: Universe | None = None,
    ) -> Butler:
        """Create a repository and return a Butler on it.

        Parameters
        ----------
        root : `str` or `~pathlib.Path`
            Directory to create (may exist if empty of a repository).
        db_url : `str`, optional
            Registry database; ``None`` = SQLite file ``root/registry.sqlite3``.
        templates : `dict`, optional
            Datastore path templates by dataset type name (``"default"`` for all others).
        universe : `Universe`, optional
            Units to use instead of the packaged ``universe.yaml``.

        Raises
        ------
        FileExistsError
            If ``root`` already holds a repository.
        """
        root = Path(root)
        if (root / "butler.yaml").exists():
            raise FileExistsError(
                f"{root} already holds a repository (butler.yaml); open it with Butler({str(root)!r})"
            )
        root.mkdir(parents=True, exist_ok=True)
        url = db_url or f"sqlite:///{(root / SQLITE_NAME).resolve()}"
        if db_url and _has_password(db_url):
            warnings.warn(
                "the registry URL contains a password, which butler.yaml will store in clear text in a "
                "shared directory; put it in ~/.pgpass (or PGPASSFILE) and leave it out of the URL",
                stacklevel=2,
            )
        Datastore(root, {"templates": dict(templates or {})})  # validate templates before creating anything
        registry = Registry.create(url, universe)
        registry.close()
        write_repo_config(
            root,
            {
                "registry": {"db_url": db_url, "schema_version": SCHEMA_VERSION},
                "datastore": {"templates": dict(templates or {})},
            },
        )
        return cls(root)

    # ------------------------------------------------------------------ I/O
    def _resolveInput(self, dataset: Dataset) -> Dataset:
        if dataset.id is not None or dataset.run is not None:
            return dataset
        if not self.collections:
            raise LookupError(f"cannot find {dataset}: this Butler has no collections to search")
        found = self.registry.findDataset(dataset.datasetType, dataset.dataId, self.collections)
        if found is None:
            raise LookupError(f"{dataset} not found in collections {self.collections}")
        return found

    def get(self, dataset: Dataset, *, verify: bool = False) -> Any:
        """Read a dataset, after checking its file against what was registered.

        The file's size is always compared with the registered size (one ``stat``: it
        catches truncated, replaced and half-copied files before a formatter fails on
        them with an unrelated error); ``verify=True`` compares the full checksum too,
        which reads the file once more.

        Parameters
        ----------
        dataset : `Dataset`
            Resolved (``id`` or ``run`` set), or looked up in ``butler.collections``.
        verify : `bool`
            Also compare the file's checksum with the registered one.

        Raises
        ------
        LookupError
            If it is not in the collections.
        DatastoreError
            If the file is missing or differs from what was registered; the message
            names the dataset and what to do.
        """
        resolved = self._resolveInput(dataset)
        path, size, checksum = self.registry.getDatasetLocation(resolved)
        try:
            self.datastore.verify(path, size, checksum if verify else None)
        except DatastoreError as err:
            raise DatastoreError(
                f"{resolved.datasetType.name} {dict(resolved.dataId)} in run {resolved.run!r}: {err}. "
                "The file changed after it was registered (corrupted, truncated or replaced): restore it "
                "from a copy, or remove the dataset and rerun the task that made it"
            ) from None
        return self.datastore.read(path, resolved.datasetType.storageClass)

    def getSchema(self, name: str, collections: Sequence[str] | None = None) -> Any:
        """The schema of dataset type ``name`` recorded in ``collections`` (default: the search
        collections) as the dataset ``<name>_schema``.

        What a task's constructor reads for an input that no earlier task of its pipeline
        makes (`supertask.schemas`).

        Raises
        ------
        SchemaError
            If no collection searched records it.
        """
        from ..schemas import SCHEMA_SUFFIX, DatasetSchema, SchemaError, schema_dataset_type

        datasetType = schema_dataset_type(name)
        search = list(collections if collections is not None else self.collections or [])
        found = None
        if search:
            try:
                found = self.registry.findDataset(datasetType, DataId({}), search)
            except LookupError:  # the schema's dataset type is not registered at all
                found = None
        if found is None:
            raise SchemaError(
                f"no schema of {name!r}: no {name}{SCHEMA_SUFFIX} dataset in collections {search}; "
                "add the RUN that made it to the input collections"
            )
        return DatasetSchema.from_json(self.get(found))

    def datasetExists(self, dataset: Dataset) -> bool:
        """True if the dataset is registered in the search collections and its file is present."""
        try:
            resolved = self._resolveInput(dataset)
            path, _, _ = self.registry.getDatasetLocation(resolved)
        except LookupError:
            return False
        return self.datastore.exists(path)

    def put(
        self, obj: Any, datasetOrType: Dataset | DatasetType, dataId: Mapping[str, Any] | None = None
    ) -> Dataset:
        """Write ``obj`` as a dataset in ``butler.run``; return the resolved handle.

        Raises
        ------
        ValueError
            If the Butler has no run, or no data ID is given with a dataset type.
        ConflictingDatasetError
            If the dataset already exists in the run (outputs are write-once).
        """
        if self.run is None:
            raise ValueError("this Butler has no output run; open it with Butler(root, run='...') to put")
        if isinstance(datasetOrType, Dataset):
            datasetType, dataId = datasetOrType.datasetType, datasetOrType.dataId
        else:
            if dataId is None:
                raise ValueError(f"put of {datasetOrType.name} needs a dataId")
            datasetType = datasetOrType
        self.registry.registerDatasetType(datasetType)
        dataId = self.universe.checkDataId(datasetType.units, dataId)
        if self.registry.findDataset(datasetType, dataId, [self.run]) is not None:
            raise ConflictingDatasetError(
                f"{datasetType.name} {dict(dataId)} already exists in run {self.run!r}; outputs are write-once: "
                "write to a new run, or remove the dataset first"
            )
        # Written under a temporary name and renamed inside the registration transaction:
        # a concurrent put of the same dataset that registers first makes this one fail
        # before its rename, so a registered file is never replaced.
        path, tmp, size, checksum = self.datastore.write_temporary(obj, datasetType, dataId, self.run)
        record = {"dataId": dataId, "path": path, "size": size, "checksum": checksum}
        try:
            self.registry.insertDatasetGroups(
                self.run, [[(datasetType, record)]], beforeCommit=lambda: self.datastore.publish(tmp, path)
            )
        except BaseException:
            self.datastore.discard(tmp)
            raise
        found = self.registry.findDataset(datasetType, dataId, [self.run])
        assert found is not None
        return found

    def ingest(self, items: Iterable[IngestItem | tuple[Any, ...]], mode: str = "copy") -> list[Dataset]:
        """Bring existing files into ``butler.run`` in bulk.

        Parameters
        ----------
        items : iterable of `IngestItem` or ``(path, datasetType, dataId)``
            The files.
        mode : `str`
            ``copy``, ``hardlink``, ``symlink`` or ``move``.

        Returns
        -------
        datasets : `list` [`Dataset`]
            Registered handles, in input order.

        Notes
        -----
        All files are transferred before any is registered (one bulk insert per dataset
        type), so an interrupted ingest leaves only unregistered files behind and can be re-run.
        """
        if mode not in INGEST_MODES:
            raise ValueError(f"unknown ingest mode {mode!r}; use one of {INGEST_MODES}")
        if self.run is None:
            raise ValueError("ingest needs an output run: Butler(root, run='...')")
        byType: dict[str, tuple[DatasetType, list[dict[str, Any]]]] = {}
        order: list[tuple[str, DataId]] = []
        for item in items:
            if not isinstance(item, IngestItem):
                item = IngestItem(*item)
            dt = item.datasetType
            dataId = self.universe.checkDataId(dt.units, item.dataId)
            rel = self.datastore.path(dt, dataId, self.run)
            try:
                size, checksum = self.datastore.transfer(item.path, rel, mode)
            except OSError as err:
                raise DatastoreError(f"cannot {mode} {item.path} into the repository: {err}") from err
            byType.setdefault(dt.name, (dt, []))[1].append(
                {"dataId": dataId, "path": rel, "size": size, "checksum": checksum}
            )
            order.append((dt.name, dataId))
        found: dict[tuple[str, DataId], Dataset] = {}
        for dt, records in byType.values():
            self.registry.registerDatasetType(dt)
            for ds in self.registry.insertDatasets(dt, self.run, records):
                found[(dt.name, ds.dataId)] = ds
        return [found[key] for key in order]

    def close(self) -> None:
        """Release database connections."""
        self.registry.close()

    def __repr__(self) -> str:
        return f"Butler({str(self.root)!r}, collections={self.collections}, run={self.run!r})"


def _has_password(url: str) -> bool:
    """True if a database URL carries a password (checked without importing SQLAlchemy's URL rules)."""
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False
