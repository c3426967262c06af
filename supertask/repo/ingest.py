"""Bulk ingest of raw files: what ``supertask ingest`` does.

Each file's data ID comes from a `MetadataReader` (sidecar, index, FITS header); the
file is checked, put into the datastore (copied, hard-linked, symlinked or moved) and
registered in bulk, ``chunk`` files per registry transaction. A file that cannot be
ingested is skipped with the reason and the others go on; the `IngestReport` lists
what was skipped, by reason.

Checks, in order, each a reason of its own:

- ``wrong file type``: the file's name does not end with the extension of the dataset
  type's storage class (a reader of that class could not read it);
- ``no metadata`` / ``invalid metadata``: the reader found none, or values that are not
  the dataset type's units with values of the right type;
- ``duplicate``: another file of this ingest has the same data ID (the first one wins);
- ``already ingested``: the run holds a dataset of this type and data ID;
- ``unknown units``: a unit value is not registered (``supertask register-units`` first);
- ``transfer failed``: the file could not be read or placed in the datastore.

Nothing is lost on failure. A file is placed in the datastore before it is registered
(an interruption leaves an unregistered file, replaced by the next ingest). ``move``
links the file into the datastore (or copies it across file systems), registers it,
and only then removes the original: a failed registration removes what it placed and
leaves every original where it was.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any

from .dataid import DataId
from .dataset import DatasetType
from .datastore import checksum_file
from .formatters import get_formatter
from .metadata import SIDECAR_SUFFIXES, MetadataError, MetadataReader

__all__ = ["IngestReport", "Skipped", "find_files", "ingest_files", "TRANSFER_MODES"]

_LOG = logging.getLogger("supertask.ingest")

TRANSFER_MODES = ("copy", "hardlink", "symlink", "move")

#: the reasons a file is skipped, in the order they are checked (and reported)
REASONS = (
    "wrong file type",
    "no metadata",
    "invalid metadata",
    "duplicate",
    "already ingested",
    "unknown units",
    "transfer failed",
)


@dataclass(frozen=True)
class Skipped:
    """A file that was not ingested, and why."""

    path: str
    reason: str
    """One of `REASONS`."""
    detail: str


@dataclass
class IngestReport:
    """What an ingest did."""

    run: str
    mode: str
    ingested: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    leftovers: list[str] = field(default_factory=list)
    """Originals that ``move`` registered but could not remove (both copies are intact)."""

    @property
    def ok(self) -> bool:
        """True if every file was ingested."""
        return not self.skipped

    def lines(self, examples: int = 3) -> list[str]:
        """A summary: what was ingested, then what was skipped by reason, with a few examples each."""
        rate = f" ({self.ingested / self.seconds:,.0f} files/s)" if self.seconds > 0 and self.ingested else ""
        out = [
            f"ingested {self.ingested} files into {self.run!r} ({self.mode}) in {self.seconds:.1f} s{rate}"
        ]
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} files:")
            for reason in REASONS:
                items = sorted((s for s in self.skipped if s.reason == reason), key=lambda s: s.path)
                if not items:
                    continue
                out.append(f"  {reason}: {len(items)}")
                for item in items[:examples]:
                    out.append(f"    {item.path}: {item.detail}")
                if len(items) > examples:
                    out.append(f"    ... and {len(items) - examples} more (--list-skipped lists them all)")
        for path in self.leftovers[:examples]:
            out.append(f"note: {path} was ingested but could not be removed; delete it by hand")
        return out


def find_files(
    paths: Iterable[str | Path], pattern: str = "*", file_list: str | Path | None = None
) -> list[Path]:
    """The files to ingest: files given, files under directories given (recursively), files in a list.

    Under a directory, files whose name matches ``pattern`` are taken, except hidden ones
    and sidecars (``X.yaml`` beside an ``X``). A file list has one path per line, relative
    to the list's directory; blank lines and ``#`` comments are ignored.

    Raises
    ------
    FileNotFoundError
        If a path given (or in the list) does not exist.
    """
    found: list[Path] = []
    named: list[Path] = [Path(p) for p in paths]
    if file_list is not None:
        file_list = Path(file_list)
        base = file_list.parent
        for line in file_list.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                named.append(base / line)
    for path in named:
        if path.is_dir():
            found.extend(_walk(path, pattern))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist; check the path")
    return found


def _walk(root: Path, pattern: str) -> list[Path]:
    files: list[Path] = []
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        names = {e.name for e in listing}
        for entry in listing:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry.path)
            elif _is_sidecar(entry.name, names) or not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            else:
                files.append(Path(entry.path))
    return files


def _is_sidecar(name: str, names: set[str]) -> bool:
    return any(name.endswith(s) and name[: -len(s)] in names for s in SIDECAR_SUFFIXES)


def ingest_files(
    butler: Any,
    datasetType: DatasetType,
    files: Sequence[str | Path],
    reader: MetadataReader,
    *,
    run: str,
    mode: str = "copy",
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest ``files`` as datasets of ``datasetType`` into ``run``; see the module docstring.

    Parameters
    ----------
    butler : `Butler`
        A writeable Butler on the repository.
    datasetType : `DatasetType`
        Registered if new; one registered with other units or storage class is refused.
    files : sequence of path-like
        The files (`find_files`).
    reader : `MetadataReader`
        Gives each file's unit values.
    run : `str`
        The RUN collection (registered if new).
    mode : `str`
        ``copy``, ``hardlink``, ``symlink`` or ``move``.
    chunk : `int`
        Files registered per transaction.
    progress : callable, optional
        Called with the number of files just dealt with (ingested or skipped).

    Returns
    -------
    report : `IngestReport`

    Raises
    ------
    ValueError
        For an unknown mode, or a dataset type that conflicts with a registered one.
    """
    if mode not in TRANSFER_MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; use one of {', '.join(TRANSFER_MODES)}")
    start = time.perf_counter()
    registry = butler.registry
    datastore = butler.datastore
    report = IngestReport(run=run, mode=mode)
    tick = progress or (lambda n: None)
    registry.registerDatasetType(datasetType)
    registry.registerRun(run)

    # 1. metadata -> valid data IDs; duplicates within this ingest
    convert = registry.universe.checkDataId
    units = datasetType.units
    extension = get_formatter(datasetType.storageClass).extension
    accepted: dict[DataId, Path] = {}
    for raw in files:
        path = Path(raw)
        if not path.name.endswith(extension):
            report.skipped.append(
                Skipped(
                    str(path),
                    "wrong file type",
                    f"storage class {datasetType.storageClass} reads {extension} files: ingest it as a dataset "
                    "type whose storage class reads this format, or leave it out (--pattern)",
                )
            )
            tick(1)
            continue
        try:
            values = reader.read(path)
        except MetadataError as err:
            reason = "no metadata" if str(err).startswith("no metadata") else "invalid metadata"
            report.skipped.append(Skipped(str(path), reason, str(err)))
            tick(1)
            continue
        except Exception as err:  # noqa: BLE001 - a third-party reader's bug must not stop the others
            report.skipped.append(
                Skipped(
                    str(path), "invalid metadata", f"the metadata reader failed: {type(err).__name__}: {err}"
                )
            )
            tick(1)
            continue
        try:
            dataId = convert(units, values)
        except (ValueError, TypeError) as err:
            report.skipped.append(Skipped(str(path), "invalid metadata", str(err)))
            tick(1)
            continue
        first = accepted.get(dataId)
        if first is not None:
            report.skipped.append(
                Skipped(
                    str(path),
                    "duplicate",
                    f"same data ID {dict(dataId)} as {first}; only the first file of a data ID is taken",
                )
            )
            tick(1)
            continue
        accepted[dataId] = path

    # 2. already in the run; 3. units not registered
    if accepted:
        for dataset in registry.queryDatasets(datasetType, [run], dataIds=list(accepted)):
            path = accepted.pop(dataset.dataId)
            report.skipped.append(
                Skipped(
                    str(path),
                    "already ingested",
                    f"{datasetType.name} {dict(dataset.dataId)} is in {run!r} already",
                )
            )
            tick(1)
    if accepted:
        for unit, missing in _unregistered_units(registry, units, list(accepted)).items():
            for dataId in missing:
                path = accepted.pop(dataId)
                key = dict(dataId.subset(registry.universe.requiredKeys(unit)))
                report.skipped.append(
                    Skipped(
                        str(path),
                        "unknown units",
                        f"{unit} {key} is not registered; register it first (supertask register-units)",
                    )
                )
                tick(1)

    # 4. place and register, chunk by chunk
    items = sorted(accepted.items(), key=lambda item: str(item[1]))
    made: set[str] = set()
    root = str(datastore.root)
    for begin in range(0, len(items), chunk):
        part = items[begin : begin + chunk]
        placed: list[tuple[Path, str, dict[str, Any]]] = []
        for dataId, path in part:
            rel = datastore.path(datasetType, dataId, run)
            target = os.path.join(root, rel)
            try:
                size, checksum = _place(path, target, mode, made)
            except OSError as err:
                report.skipped.append(Skipped(str(path), "transfer failed", f"cannot {mode} it: {err}"))
                continue
            placed.append((path, target, {"dataId": dataId, "path": rel, "size": size, "checksum": checksum}))
        try:
            registry.insertDatasets(datasetType, run, [record for _, _, record in placed])
        except BaseException:
            for _, target, _ in placed:  # unregistered: what was placed goes, every original stays
                _remove(target)
            report.seconds = time.perf_counter() - start
            raise
        report.ingested += len(placed)
        if mode == "move":
            for source, _, _ in placed:
                try:
                    source.unlink()
                except OSError as err:
                    _LOG.warning("ingested %s, but could not remove it: %s", source, err)
                    report.leftovers.append(str(source))
        tick(len(part))
    report.seconds = time.perf_counter() - start
    return report


def _unregistered_units(
    registry: Any, units: Sequence[str], dataIds: list[DataId]
) -> dict[str, list[DataId]]:
    """For each unit of the data IDs, the data IDs whose value of it is not registered.

    One chunked look-up per unit, of its distinct values only (a few hundred exposures and
    detectors for 10^5 raws).
    """
    universe = registry.universe
    missing: dict[str, list[DataId]] = {}
    pending = set(dataIds)
    for unit in universe.expand(units):
        keys = universe.requiredKeys(unit)
        by_value: dict[tuple[Any, ...], list[DataId]] = {}
        for d in pending:
            by_value.setdefault(tuple(d[k] for k in keys), []).append(d)
        known = registry.getUnitRecords(unit, [DataId(dict(zip(keys, v, strict=True))) for v in by_value])
        known_values = {tuple(k[key] for key in keys) for k in known}
        absent = [d for v, ds in by_value.items() if v not in known_values for d in ds]
        if absent:
            missing[unit] = sorted(absent, key=str)
            pending.difference_update(absent)
    return missing


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _place(source: Path, target: str, mode: str, made: set[str] | None = None) -> tuple[int, str]:
    """Put ``source`` at ``target``; return ``(size, checksum)``. ``move`` keeps the source (see module).

    ``made`` caches the directories known to exist (one ``mkdir`` per directory, not per file).
    """
    parent = os.path.dirname(target)
    if made is None or parent not in made:
        os.makedirs(parent, exist_ok=True)
        if made is not None:
            made.add(parent)
    # Anything at the target is an unregistered leftover of an interrupted ingest (the run's
    # registry was checked first, and the path is the dataset's own): it is replaced, never
    # written through (it may be a link to another ingest's original).
    if mode == "symlink":
        checksum, size = checksum_file(source), os.stat(source).st_size
        _replace_with(lambda: os.symlink(source.resolve(), target), target)
        return size, checksum
    if mode in ("hardlink", "move"):
        checksum, size = checksum_file(source), os.stat(source).st_size
        try:
            _replace_with(lambda: os.link(source, target), target)
            return size, checksum
        except OSError as err:
            if mode == "hardlink" or err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
    return _copy_hashing(source, target)


def _replace_with(make: Callable[[], None], target: str) -> None:
    """``make()`` a new file at ``target``, removing a leftover there first if there is one."""
    try:
        make()
    except FileExistsError:
        os.unlink(target)
        make()


def _copy_hashing(source: Path, target: str, block: int = 1 << 20) -> tuple[int, str]:
    """Copy ``source`` to a new file ``target`` and checksum it in the same pass: ``(size, checksum)``.

    The copy is written in place, not renamed: until it is registered nobody reads it, and
    an interrupted copy is a leftover the next ingest replaces.
    """
    h = blake2b(digest_size=16)
    size = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        os.unlink(target)
        fd = os.open(target, flags, 0o644)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb", closefd=True) as dst:
            while data := src.read(block):
                h.update(data)
                dst.write(data)
                size += len(data)
    except BaseException:
        _remove(target)
        raise
    return size, h.hexdigest()


def reader_from_spec(spec: str) -> MetadataReader:
    """A reader from ``package.module:Class`` (or ``package.module.Class``), constructed without arguments.

    Raises
    ------
    ValueError
        If it cannot be imported or is not a `MetadataReader`.
    """
    from ..config import import_class

    path = spec.replace(":", ".")
    try:
        cls = import_class(path, what="metadata reader")
    except ImportError as err:
        raise ValueError(str(err)) from None
    if not (isinstance(cls, type) and issubclass(cls, MetadataReader)):
        raise ValueError(
            f"{spec} is not a MetadataReader subclass; subclass supertask.repo.metadata.MetadataReader "
            "(or FitsHeaderReader) and implement read(path)"
        )
    return cls()
