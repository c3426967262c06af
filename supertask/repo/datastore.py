"""The POSIX datastore: path templates, atomic writes, checksums.

Usable without a registry: a batch job computes a dataset's path from the template
(deterministic from dataset type, data ID and run), writes it atomically and reports
``(path, size, checksum)`` for a later registration job. This module imports neither
SQLAlchemy nor the registry, so job start-up stays cheap.
"""

from __future__ import annotations

import itertools
import os
import re
import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # the built-in module behind hashlib.blake2b; importing it alone skips loading OpenSSL
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import blake2b

from ..template_rows import escape_literal, plain_rows
from .dataset import DatasetType
from .formatters import get_formatter

DEFAULT_TEMPLATE = "{run}/{datasetType}/{datasetType}_{dataId}"
"""Used for dataset types without their own template. ``{dataId}`` expands to
``instrument-Cam_visit-12_detector-3`` style text (sorted by unit name)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-=]")
CHECKSUM_ALGORITHM = "blake2b-128"
#: distinct data-ID values whose cleaned text a `Datastore.path_formatter` keeps
_CLEAN_CACHE = 1 << 16
#: formatters `Datastore.path` keeps (one per dataset type and key set in practice)
_FORMATTER_CACHE = 1024


class DatastoreError(RuntimeError):
    """A datastore operation failed; the message names the file and the fix."""


def checksum_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """blake2b (128-bit) of a file's bytes, hex: fast, and collision-safe for our purpose."""
    h = blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _clean(value: Any) -> str:
    return _UNSAFE.sub("_", str(value))


class Datastore:
    """Files under a root directory, named by per-dataset-type templates.

    Parameters
    ----------
    root : `str` or `~pathlib.Path`
        The repository root (dataset paths are relative to it).
    config : `dict`, optional
        ``{"templates": {"default": ..., "<datasetType>": ...}}``. Templates are
        `str.format` patterns over ``run``, ``datasetType``, ``dataId`` and each unit name.
    """

    def __init__(self, root: str | Path, config: Mapping[str, Any] | None = None):
        self.root = Path(root)
        config = dict(config or {})
        self.templates: dict[str, str] = {"default": DEFAULT_TEMPLATE, **dict(config.get("templates") or {})}
        for name, template in self.templates.items():
            _check_template(name, template)
        #: `path_formatter`s by (type name, storage class, keys, template), for `path`
        self._formatters: dict[
            tuple[str, str, tuple[str, ...], str], Callable[[tuple[Any, ...], str], str]
        ] = {}

    def __getstate__(self) -> dict[str, Any]:
        # the formatters are closures (not picklable) and cheap to make again
        return {**self.__dict__, "_formatters": {}}

    @classmethod
    def fromRepo(cls, root: str | Path) -> Datastore:
        """Open the datastore of a repository by reading only its ``butler.yaml``."""
        from .repo_config import read_repo_config

        return cls(root, read_repo_config(root).get("datastore"))

    def path(self, datasetType: DatasetType, dataId: Mapping[str, Any], run: str) -> str:
        """The relative path of a dataset (with its storage class's extension).

        Raises
        ------
        DatastoreError
            If the template names a unit the data ID does not have.
        """
        keys = tuple(dataId)
        template = self.templates.get(datasetType.name, self.templates["default"])
        cached = (datasetType.name, datasetType.storageClass, keys, template)
        format = self._formatters.get(cached)
        if format is None:
            if len(self._formatters) >= _FORMATTER_CACHE:
                self._formatters.clear()
            format = self._formatters[cached] = self.path_formatter(datasetType, keys)
        return format(tuple(dataId.values()), run)

    def _template_and_extension(self, datasetType: DatasetType) -> tuple[str, str | None]:
        """The path template of ``datasetType`` and its storage class's file extension (None for
        an unknown storage class: refused when formatting, after the template, as `path` always did)."""
        template = self.templates.get(datasetType.name, self.templates["default"])
        try:
            return template, get_formatter(datasetType.storageClass).extension
        except KeyError:
            return template, None

    def path_formatter(
        self, datasetType: DatasetType, keys: tuple[str, ...]
    ) -> Callable[[tuple[Any, ...], str], str]:
        """``format(values, run)``: the `path` of a dataset of ``datasetType`` whose data ID
        has ``keys`` and ``values`` (in that order), in ``run``.

        The rule of `path`, with what depends only on the dataset type and the keys (the
        template, the sorted order of the ``{dataId}`` text, the storage class's extension)
        looked up once: `bps prepare` names millions of dataset files of a few types, and
        the per-dataset work is then only the values'.

        Raises
        ------
        DatastoreError
            When called, if the template names a unit that ``keys`` lacks.
        """
        name = datasetType.name
        template, extension = self._template_and_extension(datasetType)
        keys = tuple(keys)
        # (key, position) in key order: the {dataId} text is sorted by unit name
        by_name = sorted((k, i) for i, k in enumerate(keys))
        fields = [(f"{k}-", i) for k, i in by_name]
        cleaned: dict[str, str] = {}  # str values recur (instrument, band, skymap...)

        def clean(value: Any) -> str:
            if type(value) is not str:
                return _clean(value)
            text = cleaned.get(value)
            if text is None:
                text = _clean(value)
                if len(cleaned) < _CLEAN_CACHE:
                    cleaned[value] = text
            return text

        def format(values: tuple[Any, ...], run: str) -> str:
            # the text of an int is clean already
            texts = [str(v) if type(v) is int else clean(v) for v in values]
            mapping = dict(zip(keys, texts, strict=True))
            mapping["dataId"] = "_".join([prefix + texts[i] for prefix, i in fields]) or "global"
            mapping["datasetType"] = name
            mapping["run"] = run
            try:
                rel = template.format(**mapping)
            except KeyError as err:
                raise DatastoreError(
                    f"template {template!r} for {name} needs {err.args[0]!r}, which data ID "
                    f"{dict(zip(keys, values, strict=True))!r} lacks; fix the template in butler.yaml"
                ) from None
            return rel + (
                extension if extension is not None else get_formatter(datasetType.storageClass).extension
            )

        if extension is None:
            return format
        positional = _positional(template, name, keys, extension)
        if positional is None:  # a field the keys lack, or one too intricate to rewrite
            return format
        width = len(keys)

        def format_positional(values: tuple[Any, ...], run: str) -> str:
            if len(values) != width:
                return format(values, run)  # refuses the values as the mapping does
            texts = [str(v) if type(v) is int else clean(v) for v in values]
            did = "_".join([prefix + texts[i] for prefix, i in fields]) or "global"
            return positional.format(run, did, *texts)

        return format_positional

    def paths_formatter(
        self, datasetType: DatasetType, keys: tuple[str, ...]
    ) -> Callable[[Sequence[tuple[Any, ...]], Sequence[str]], list[str]]:
        """``format(rows, runs)``: the `path` of many datasets of ``datasetType`` whose data IDs
        have ``keys``, ``rows[i]`` the values of the one in ``runs[i]``.

        What `path_formatter` gives one by one, each path formatted by one `str.format` run
        in C (`itertools.starmap`) when the template takes the units' texts as they are
        (no format spec or conversion on them, nor on ``{dataId}``) and every value is an int
        or a str the path keeps as it is: a per-path Python call is most of the cost of
        naming a million dataset files. Other rows are formatted one by one.

        Raises
        ------
        DatastoreError
            When called, as `path_formatter`'s ``format``.
        """
        one = self.path_formatter(datasetType, keys)
        keys = tuple(keys)
        template, extension = self._template_and_extension(datasetType)
        positional = None if extension is None else _positional(template, datasetType.name, keys, extension)
        pieces = None if positional is None else _values_template(positional, keys)
        width = len(keys)
        by_run: dict[str, str] = {}  # RUN -> the template with its text in place

        def format(rows: Sequence[tuple[Any, ...]], runs: Sequence[str]) -> list[str]:
            if pieces is None or len(rows) != len(runs) or not plain_rows(rows, width, _kept_as_is):
                return list(map(one, rows, runs))
            if len(set(runs)) == 1:  # the common case: no column of RUNs to zip with the values
                run = runs[0]
                fixed = by_run.get(run)
                if fixed is None:
                    fixed = by_run[run] = _with_run(pieces, run)
                return list(itertools.starmap(fixed.format, rows))
            return [_with_run(pieces, run).format(*values) for values, run in zip(rows, runs, strict=True)]

        return format

    def write(
        self, obj: Any, datasetType: DatasetType, dataId: Mapping[str, Any], run: str, *, fsync: bool = True
    ) -> tuple[str, int, str]:
        """Write a dataset atomically; return ``(relative path, size, checksum)``.

        The object is written to a temporary file in the target directory, flushed to
        disk and renamed over the final name, so a reader (or a crash) never sees a
        half-written file under the dataset's name. The caller must know that no
        registered dataset lives at that name (`Butler.put` registers first); writers
        that cannot know use `write_temporary` and leave the rename to `publish`.

        Parameters
        ----------
        fsync : `bool`
            Flush the file to disk before the rename (the default). Only a caller that
            flushes the whole datastore itself before registering anything written
            (`sync`, as the local executor's main process does once per registration
            batch) may pass `False`: one ``fsync`` costs about as much as a whole
            trivial quantum, and a registered dataset's file must be on disk.
        """
        rel, tmp_rel, size, checksum = self.write_temporary(obj, datasetType, dataId, run, fsync=fsync)
        try:
            os.replace(self.root / tmp_rel, self.root / rel)
        except BaseException:
            (self.root / tmp_rel).unlink(missing_ok=True)
            raise
        return rel, size, checksum

    def write_temporary(
        self, obj: Any, datasetType: DatasetType, dataId: Mapping[str, Any], run: str, *, fsync: bool = True
    ) -> tuple[str, str, int, str]:
        """Write a dataset under a temporary name next to its final one.

        Returns ``(relative path, relative temporary path, size, checksum)``. Nothing
        appears under the dataset's name: `publish` renames the file there, and only
        the registry's single writer (the executor's main process) calls it, inside the
        transaction that registers the dataset. So a worker can never replace a file
        that the registry knows, whatever it writes.
        """
        rel = self.path(datasetType, dataId, run)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        formatter = get_formatter(datasetType.storageClass)
        tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp{formatter.extension}")
        try:
            formatter.write(obj, tmp)
            if fsync:
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            size = tmp.stat().st_size
            checksum = checksum_file(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rel, str(tmp.relative_to(self.root)), size, checksum

    def publish(self, tmp_rel: str | Path, rel: str | Path) -> None:
        """Rename a file written by `write_temporary` to its final name (atomic).

        The caller guarantees that ``rel`` is not a registered dataset's file (the
        executor calls this inside the registration transaction, after the insert
        found no registered dataset there). A file already at ``rel`` is a leftover
        that was never registered (a run killed between its rename and its commit).
        """
        os.replace(self.root / tmp_rel, self.root / rel)

    def discard(self, tmp_rel: str | Path) -> None:
        """Delete a temporary file that will not be published."""
        (self.root / tmp_rel).unlink(missing_ok=True)

    def sync(self) -> None:
        """Flush every file written under the root to disk (``syncfs`` of its filesystem).

        One call replaces the per-file ``fsync`` of writes made with ``fsync=False``; it
        also makes their renames durable. Falls back to ``os.sync`` where ``syncfs`` is
        not available.
        """
        _syncfs(self.root)

    def read(self, path: str | Path, storageClass: str) -> Any:
        """Read a dataset file (``path`` relative to the root, or absolute).

        Raises
        ------
        DatastoreError
            If the file does not exist.
        """
        full = self.root / path
        if not full.exists():
            raise DatastoreError(
                f"dataset file {full} does not exist; it was removed after registration or the "
                "repository root is wrong"
            )
        return get_formatter(storageClass).read(full)

    def exists(self, path: str | Path) -> bool:
        """True if the file is there."""
        return (self.root / path).exists()

    def verify(self, path: str | Path, size: int | None, checksum: str | None) -> None:
        """Check a file against its recorded size and checksum.

        Raises
        ------
        DatastoreError
            If the file is missing or differs.
        """
        full = self.root / path
        if not full.exists():
            raise DatastoreError(f"dataset file {full} is missing")
        if size is not None and full.stat().st_size != size:
            raise DatastoreError(f"dataset file {full} has size {full.stat().st_size}, registered {size}")
        if checksum is not None and checksum_file(full) != checksum:
            raise DatastoreError(f"dataset file {full} does not match its registered checksum")

    def transfer(self, source: str | Path, rel: str, mode: str) -> tuple[int, str]:
        """Bring an existing file into the store at ``rel``; return ``(size, checksum)``.

        Parameters
        ----------
        mode : `str`
            ``copy``, ``hardlink``, ``symlink`` or ``move``. Copies go through a temporary
            file and a rename, like writes.
        """
        source = Path(source).resolve()
        if not source.is_file():
            raise DatastoreError(f"cannot ingest {source}: not a file")
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        checksum = checksum_file(source)
        import shutil  # ingest only: batch jobs, which import this module, never need it

        if mode == "copy":
            tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        elif mode == "hardlink":
            target.unlink(missing_ok=True)
            os.link(source, target)
        elif mode == "symlink":
            target.unlink(missing_ok=True)
            os.symlink(source, target)
        elif mode == "move":
            shutil.move(source, target)
        else:
            raise ValueError(f"unknown ingest mode {mode!r}; use copy, hardlink, symlink or move")
        return size, checksum

    def remove(self, path: str | Path) -> None:
        """Delete a dataset file if present."""
        (self.root / path).unlink(missing_ok=True)


def _syncfs(root: str | Path) -> None:
    """``syncfs(2)`` on the filesystem holding ``root`` (Linux), else ``os.sync()``."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        os.sync()
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:  # pragma: no cover - syncfs failing on an open directory
            os.sync()
    finally:
        os.close(fd)


def _positional(template: str, type_name: str, keys: tuple[str, ...], extension: str) -> str | None:
    """``template`` + ``extension`` rewritten for ``format(run, dataId, *key_texts)``, or None.

    What `Datastore.path` formats by name becomes positional, with the dataset type's name
    and the extension as literal text: formatting then builds no mapping per dataset.
    Conversions, format specs, attribute and index lookups are kept as written. None when
    a field is not one of ``run``, ``dataId``, ``datasetType`` and ``keys`` (the mapping
    refuses it, naming the field), is positional, or nests fields in its format spec.
    """
    position = {k: 2 + i for i, k in enumerate(keys)}
    position.update(run=0, dataId=1)
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    for literal, field, spec, conversion in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        head = re.match(r"[^.\[]*", field)
        arg = head.group(0) if head else ""
        rest = field[len(arg) :]
        if (spec and "{" in spec) or (arg == "datasetType" and rest) or not arg:
            return None
        if arg == "datasetType" and not spec and not conversion:
            out.append(type_name.replace("{", "{{").replace("}", "}}"))
            continue
        if arg == "datasetType":
            return None
        if arg not in position:
            return None
        out.append(
            "{"
            + str(position[arg])
            + rest
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
    out.append(extension.replace("{", "{{").replace("}", "}}"))
    return "".join(out)


def _values_template(positional: str, keys: tuple[str, ...]) -> list[str | tuple[str]] | None:
    """A `_positional` template rewritten for ``format(*values)``, the ``{dataId}`` text spelled
    out with the values' fields, as pieces: text of the template, and ``(field,)`` where the
    RUN goes (formatted by ``field``, `_with_run`). None if a unit's or ``{dataId}``'s field
    has a format spec, a conversion or an index (it would then format a value, not its text)."""
    out: list[str | tuple[str]] = []
    by_name = sorted((k, i) for i, k in enumerate(keys))
    data_id = "_".join(f"{escape_literal(k)}-{{{i}}}" for k, i in by_name) or "global"
    for literal, field, spec, conversion in string.Formatter().parse(positional):
        out.append(escape_literal(literal))
        if field is None:
            continue
        if field == "0":  # the run, formatted as the one-by-one rule does
            out.append(
                ("{0" + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}",)
            )
            continue
        if spec or conversion or not field.isdigit():
            return None
        out.append(data_id if field == "1" else f"{{{int(field) - 2}}}")
    return out


def _with_run(pieces: list[str | tuple[str]], run: str) -> str:
    """The template of `_values_template`'s ``pieces`` for datasets of ``run``."""
    return "".join(
        piece if isinstance(piece, str) else escape_literal(piece[0].format(run)) for piece in pieces
    )


def _kept_as_is(value: str) -> bool:
    """Whether `_clean` keeps ``value``'s text as it is."""
    return not _UNSAFE.search(value)


def _check_template(name: str, template: str) -> None:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if "run" not in fields:
        raise DatastoreError(
            f"datastore template {name!r} = {template!r} lacks '{{run}}': datasets of different runs "
            "would overwrite each other"
        )
    if template.startswith("/") or ".." in template.split("/"):
        raise DatastoreError(
            f"datastore template {name!r} = {template!r} must be a relative path without '..'"
        )
