"""Storage classes: how an in-memory object becomes a file and back.

Each storage class has one formatter with a fixed file extension, so a batch job can
compute a dataset's path from its type and data ID alone. Formatters write to the path
they are given; atomicity (temporary file, then rename) is the datastore's job.

Storage classes:

- ``NumpyArray``: one `numpy.ndarray` → ``.npy`` (no pickles).
- ``ArrayDict``: ``dict[str, ndarray]`` plus an optional JSON-able ``"metadata"`` dict
  (an image with variance and mask planes) → ``.npz``.
- ``Table``: a numpy structured array → ``.npy``.
- ``ParquetTable``: a ``pyarrow.Table`` → ``.parquet`` (needs pyarrow).
- ``StructuredDataDict``: a JSON-able dict → ``.json``; ``StructuredDataDictYaml`` → ``.yaml``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol


class FormatterError(TypeError):
    """An object cannot be written with its storage class (the message says what is expected)."""


class Formatter(Protocol):
    """What the datastore needs from a storage class."""

    storageClass: str
    extension: str

    def write(self, obj: Any, path: str | Path) -> None:
        """Write ``obj`` to ``path`` (any existing file is replaced)."""

    def read(self, path: str | Path) -> Any:
        """Read the object back."""


def _np() -> ModuleType:
    import numpy

    return numpy


class NumpyArrayFormatter:
    """``.npy`` files, read without pickles so a file cannot run code."""

    storageClass = "NumpyArray"
    extension = ".npy"

    def write(self, obj: Any, path: str | Path) -> None:
        np = _np()
        if not isinstance(obj, np.ndarray):
            raise FormatterError(
                f"storage class {self.storageClass} needs a numpy.ndarray, got {type(obj).__name__}"
            )
        if obj.dtype == object:
            raise FormatterError(
                f"storage class {self.storageClass} cannot store object arrays (they need pickle)"
            )
        with open(path, "wb") as fh:
            np.save(fh, obj, allow_pickle=False)

    def read(self, path: str | Path) -> Any:
        return _np().load(path, allow_pickle=False)


class TableFormatter(NumpyArrayFormatter):
    """A table as a numpy structured array (``.npy``)."""

    storageClass = "Table"

    def write(self, obj: Any, path: str | Path) -> None:
        np = _np()
        if not isinstance(obj, np.ndarray) or obj.dtype.names is None:
            raise FormatterError(
                "storage class Table needs a numpy structured array (dtype with named fields); "
                f"got {type(obj).__name__}. Use ParquetTable for pyarrow tables."
            )
        super().write(obj, path)


class ArrayDictFormatter:
    """A dict of arrays plus JSON-able metadata (``.npz``, uncompressed: fast to read)."""

    storageClass = "ArrayDict"
    extension = ".npz"
    _META = "__metadata_json__"

    def write(self, obj: Any, path: str | Path) -> None:
        np = _np()
        if not isinstance(obj, dict):
            raise FormatterError(f"storage class ArrayDict needs a dict of arrays, got {type(obj).__name__}")
        arrays = {}
        for key, value in obj.items():
            if key == "metadata":
                try:
                    arrays[self._META] = np.array(json.dumps(value))
                except TypeError as err:
                    raise FormatterError(f"ArrayDict 'metadata' must be JSON-serializable: {err}") from None
            elif isinstance(value, np.ndarray) and value.dtype != object:
                arrays[key] = value
            else:
                raise FormatterError(
                    f"ArrayDict entry {key!r} must be a numpy array (or the key 'metadata' a JSON-able dict), "
                    f"got {type(value).__name__}"
                )
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    def read(self, path: str | Path) -> Any:
        out: dict[str, Any] = {}
        with _np().load(path, allow_pickle=False) as data:
            for key in data.files:
                if key == self._META:
                    out["metadata"] = json.loads(str(data[key]))
                else:
                    out[key] = data[key]
        return out


def _jsonable(obj: Any) -> Any:
    np = _np()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


class JsonFormatter:
    """A JSON-able dict (numpy scalars and arrays are converted to Python values)."""

    storageClass = "StructuredDataDict"
    extension = ".json"

    def write(self, obj: Any, path: str | Path) -> None:
        if not isinstance(obj, dict):
            raise FormatterError(f"storage class {self.storageClass} needs a dict, got {type(obj).__name__}")
        try:
            text = json.dumps(obj, default=_jsonable, indent=1, sort_keys=True)
        except TypeError as err:
            raise FormatterError(f"{self.storageClass} value is not JSON-serializable: {err}") from None
        Path(path).write_text(text)

    def read(self, path: str | Path) -> Any:
        return json.loads(Path(path).read_text())


class YamlFormatter(JsonFormatter):
    """A dict as YAML (for small human-edited inputs)."""

    storageClass = "StructuredDataDictYaml"
    extension = ".yaml"

    def write(self, obj: Any, path: str | Path) -> None:
        import yaml

        if not isinstance(obj, dict):
            raise FormatterError(f"storage class {self.storageClass} needs a dict, got {type(obj).__name__}")
        plain = json.loads(json.dumps(obj, default=_jsonable))
        Path(path).write_text(yaml.safe_dump(plain, sort_keys=True))

    def read(self, path: str | Path) -> Any:
        import yaml

        return yaml.safe_load(Path(path).read_text())


class ParquetFormatter:
    """A ``pyarrow.Table`` as Parquet; only usable where pyarrow is installed."""

    storageClass = "ParquetTable"
    extension = ".parquet"

    def _pq(self) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise FormatterError(
                "storage class ParquetTable needs pyarrow: `pip install pyarrow`, or use storage class Table"
            ) from None
        return pq

    def write(self, obj: Any, path: str | Path) -> None:
        pq = self._pq()
        buf = io.BytesIO()
        pq.write_table(obj, buf)
        Path(path).write_bytes(buf.getvalue())

    def read(self, path: str | Path) -> Any:
        return self._pq().read_table(path)


_FORMATTERS: dict[str, Formatter] = {
    f.storageClass: f
    for f in (
        NumpyArrayFormatter(),
        TableFormatter(),
        ArrayDictFormatter(),
        JsonFormatter(),
        YamlFormatter(),
        ParquetFormatter(),
    )
}


def get_formatter(storageClass: str) -> Formatter:
    """The formatter of a storage class.

    Raises
    ------
    KeyError
        If the storage class is unknown (the message lists the known ones).
    """
    try:
        return _FORMATTERS[storageClass]
    except KeyError:
        raise KeyError(
            f"unknown storage class {storageClass!r}; known: {sorted(_FORMATTERS)} "
            "(or register one with supertask.repo.formatters.register_formatter)"
        ) from None


def register_formatter(formatter: Formatter) -> None:
    """Add a storage class (e.g. a camera-specific image format)."""
    _FORMATTERS[formatter.storageClass] = formatter


def storage_classes() -> list[str]:
    """Names of all known storage classes."""
    return sorted(_FORMATTERS)
