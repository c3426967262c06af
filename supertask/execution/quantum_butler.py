"""A Butler for running quanta that never touches the registry.

Workers (and batch jobs) read and write files through the datastore only; the
locations of every dataset in a quantum are fully determined at preflight (DMTN-055
section 8), so no database connection is needed to run a quantum. The files a
quantum writes are remembered, and registered later by a single writer: the
executor's main process, or the final job of a batch workflow (many writers at once lock SQLite and strain even
PostgreSQL).

With a datastore that can write under temporary names (`Datastore.write_temporary`),
outputs are never written under their final names here: the registry's single writer
renames them inside the transaction that registers them, after the insert found no
registered dataset in the way. A worker therefore cannot replace a registered file,
whatever the plan says.
"""

# Annotations here are evaluated at import (no ``from __future__ import annotations``): with
# string annotations, ``typing.NamedTuple`` makes a ``ForwardRef`` of each field, whose
# ``compile`` call costs a batch job Python's one-time compiler set-up (about 2.5 ms CPU).

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..repo.dataid import DataId
from ..repo.dataset import Dataset, DatasetType


class WrittenDataset(NamedTuple):
    """A file a quantum wrote: what to register (or stage out), and what to verify first."""

    datasetType: DatasetType
    dataId: DataId
    path: str
    size: int
    checksum: str
    #: where the file is until it is published to ``path`` (None: written at ``path`` already)
    tmp_path: str | None = None


class QuantumButler:
    """``get`` / ``put`` over a datastore for the datasets of a few quanta.

    Parameters
    ----------
    datastore : `supertask.repo.datastore.Datastore`
        Where files live.
    run : `str`
        The RUN collection outputs are written to, and the run of any input that
        was not resolved to another run at preflight (an intermediate).
    locations : `dict`, optional
        ``{(dataset type name, data ID): path}`` overriding the template path of an
        input (e.g. files ingested in place, or staged into a scratch directory).
    fsync : `bool`
        Flush each output to disk before its rename (default). The local executor's
        workers pass `False` because the main process syncs the datastore once before
        each registration batch; batch jobs keep the default.
    """

    def __init__(
        self,
        datastore: Any,
        run: str,
        locations: Mapping[tuple[str, DataId], str | Path] | None = None,
        *,
        fsync: bool = True,
    ):
        self.datastore = datastore
        self.fsync = fsync
        self.run = run
        self.locations: Mapping[tuple[str, DataId], str | Path] = locations if locations is not None else {}
        #: this butler's own outputs, where they are now (a temporary name until published);
        #: kept apart from ``locations``, which a worker shares between quanta
        self.own: dict[tuple[str, DataId], str] = {}
        self.written: list[WrittenDataset] = []
        #: keys of the outputs of the running quantum (set by `run_quantum`); None: any
        self.expected: set[tuple[str, DataId]] | None = None

    def _path(self, dataset: Dataset) -> str | Path:
        path = self.own.get(dataset.key) or self.locations.get(dataset.key)
        if path is not None:
            return path
        found: str = self.datastore.path(dataset.datasetType, dataset.dataId, dataset.run or self.run)
        return found

    def get(self, dataset: Dataset) -> Any:
        """Read one dataset."""
        return self.datastore.read(self._path(dataset), dataset.datasetType.storageClass)

    def put(self, obj: Any, dataset: Dataset) -> Dataset:
        """Write one output (under a temporary name when the datastore can) and remember it.

        Raises
        ------
        LookupError
            If ``dataset`` is not an output of the running quantum.
        """
        if self.expected is not None and dataset.key not in self.expected:
            raise LookupError(
                f"{dataset.datasetType.name} {dataset.dataId!r} is not an output of the running quantum"
            )
        kwargs = {} if self.fsync else {"fsync": False}
        write_temporary = getattr(self.datastore, "write_temporary", None)
        if write_temporary is not None:
            path, tmp, size, checksum = write_temporary(
                obj, dataset.datasetType, dataset.dataId, self.run, **kwargs
            )
        else:  # a datastore without temporary names (test stand-ins) writes in place
            path, size, checksum = self.datastore.write(
                obj, dataset.datasetType, dataset.dataId, self.run, **kwargs
            )
            tmp = None
        self.written.append(WrittenDataset(dataset.datasetType, dataset.dataId, path, size, checksum, tmp))
        self.own[dataset.key] = tmp or path  # later steps of this quantum read it where it is
        return dataset
