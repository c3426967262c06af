"""Where the unit values of a raw file come from: `MetadataReader` and its implementations.

``supertask ingest`` must know each file's data ID (instrument, exposure, detector) before
it can name and register it. Files that carry no metadata (the demo's ``.npz``) take it
from a *sidecar* next to each file (`SidecarReader`) or from one index file listing many
(`IndexReader`); a real camera's raws carry it in their headers, read by a per-instrument
subclass of `FitsHeaderReader` that names the header keyword of each unit (or overrides
`FitsHeaderReader.translate`). Any other format: subclass `MetadataReader` and pass it
with ``supertask ingest --reader package.module:Class``.

A reader raises `MetadataError` for a file whose metadata is missing or invalid; ingest
skips that file with the message and goes on with the others.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "FitsHeaderReader",
    "IndexReader",
    "MetadataError",
    "MetadataReader",
    "SIDECAR_SUFFIXES",
    "SidecarReader",
    "read_fits_header",
]

SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")
"""A sidecar is the data file's name plus one of these: ``raw_12_3.npz.yaml``."""


class MetadataError(ValueError):
    """A file's unit values are missing or invalid; the message says which and how to fix it."""


class MetadataReader:
    """Reads the unit values of one file (its data ID, before validation against the universe).

    Subclasses implement `read`. The instance is created once per ingest (no arguments
    for a class given on the command line) and called once per file, so per-file work
    belongs in `read` and set-up in ``__init__``.
    """

    def read(self, path: Path) -> Mapping[str, Any]:
        """The unit values of the file at ``path`` (e.g. ``{"instrument": "Cam", "exposure": 12, "detector": 3}``).

        Raises
        ------
        MetadataError
            If the metadata is missing or cannot be read.
        """
        raise NotImplementedError


def _yaml_load(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster: ingest is bulk
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


class SidecarReader(MetadataReader):
    """Unit values from a sidecar beside each file: ``FILE.yaml`` (or ``.yml``, ``.json``).

    The sidecar is a mapping of unit name to value: ``{instrument: DemoCam, exposure: 3, detector: 1}``.
    """

    def read(self, path: Path) -> Mapping[str, Any]:
        for suffix in SIDECAR_SUFFIXES:
            sidecar = path.with_name(path.name + suffix)
            try:
                text = sidecar.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as err:
                raise MetadataError(f"cannot read its sidecar {sidecar.name}: {err}") from None
            try:
                data = json.loads(text) if suffix == ".json" else _yaml_load(text)
            except Exception as err:  # noqa: BLE001 - any parse error: the sidecar is invalid
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise MetadataError(
                    f"sidecar {sidecar.name} is not valid {suffix[1:].upper()}: {first}"
                ) from None
            if not isinstance(data, Mapping):
                raise MetadataError(
                    f"sidecar {sidecar.name} must be a mapping of unit -> value "
                    f"(e.g. {{instrument: Cam, exposure: 1, detector: 0}}), not {type(data).__name__}"
                )
            return data
        raise MetadataError(
            f"no metadata: no sidecar {path.name}.yaml (or .json) beside it; write one with its unit values, "
            "or give an index (--index FILE) or a metadata reader (--reader)"
        )


class IndexReader(MetadataReader):
    """Unit values of many files from one index: CSV (a ``file`` column and one per unit) or YAML.

    The YAML form maps each file to its unit values (``raw_1_0.npz: {exposure: 1, detector: 0}``),
    or is a list of rows with a ``file`` key, like the CSV's. File names are relative to the
    index's directory. Values of unit columns stay text here (CSV); ingest converts them to
    the unit's key type, so ``exposure`` ``"12"`` becomes ``12``.

    Raises
    ------
    MetadataError
        If the index cannot be read or has no ``file`` column.
    """

    def __init__(self, index: str | Path):
        self.index = Path(index)
        base = self.index.parent
        try:
            text = self.index.read_text(encoding="utf-8")
        except OSError as err:
            raise MetadataError(f"cannot read index {self.index}: {err.strerror}") from None
        rows: list[Mapping[str, Any]]
        if self.index.suffix.lower() == ".csv":
            reader = csv.DictReader(text.splitlines())
            if "file" not in (reader.fieldnames or []):
                raise MetadataError(
                    f"index {self.index} has no 'file' column; its header must name 'file' and the units "
                    "(e.g. file,instrument,exposure,detector)"
                )
            rows = [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
        else:
            try:
                data = _yaml_load(text)
            except Exception as err:  # noqa: BLE001
                raise MetadataError(f"index {self.index} is not valid YAML: {err}") from None
            if isinstance(data, Mapping):
                rows = [{"file": name, **(values or {})} for name, values in data.items()]
            elif isinstance(data, list) and all(isinstance(r, Mapping) and "file" in r for r in data):
                rows = data
            else:
                raise MetadataError(
                    f"index {self.index} must map each file to its unit values, or list rows with a 'file' key"
                )
        self.values: dict[str, dict[str, Any]] = {}
        for row in rows:
            values = dict(row)
            name = str(values.pop("file"))
            self.values[os.path.normpath(os.path.join(base, name))] = values

    def read(self, path: Path) -> Mapping[str, Any]:
        found = self.values.get(os.path.normpath(os.path.abspath(path)))
        if found is None:
            found = self.values.get(os.path.normpath(str(path)))
        if found is None:
            raise MetadataError(f"no metadata: {path.name} is not listed in index {self.index}")
        return found


# ------------------------------------------------------------------------------------------- FITS

_BLOCK = 2880
_CARD = 80


def read_fits_header(path: str | Path, max_blocks: int = 200) -> dict[str, Any]:
    """The primary header of a FITS file as ``{KEYWORD: value}`` (standard library only).

    Reads 2880-byte blocks of 80-character cards up to ``END``; values are `str` (quoted),
    `bool` (``T``/``F``), `int` or `float`. Enough for the keywords that identify a raw,
    without a FITS library on the ingest path.

    Raises
    ------
    MetadataError
        If the file is not FITS or its header has no ``END`` within ``max_blocks`` blocks.
    """
    header: dict[str, Any] = {}
    with open(path, "rb") as f:
        for block_number in range(max_blocks):
            block = f.read(_BLOCK)
            if block_number == 0 and not block.startswith(b"SIMPLE  ="):
                raise MetadataError("invalid metadata: not a FITS file (it does not start with SIMPLE =)")
            if len(block) < _BLOCK:
                break
            for start in range(0, _BLOCK, _CARD):
                card = block[start : start + _CARD].decode("ascii", errors="replace")
                keyword = card[:8].strip()
                if keyword == "END":
                    return header
                if card[8:10] != "= " or not keyword:
                    continue  # COMMENT, HISTORY, blank
                header[keyword] = _fits_value(card[10:])
    raise MetadataError("invalid metadata: not a complete FITS header (no END card)")


def _fits_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        end = 1
        while True:
            end = text.find("'", end)
            if end == -1:
                return text[1:].rstrip()
            if text[end + 1 : end + 2] == "'":  # an escaped quote
                end += 2
                continue
            return text[1:end].replace("''", "'").rstrip()
    value = text.split("/", 1)[0].strip()
    if value == "T":
        return True
    if value == "F":
        return False
    for convert in (int, float):
        try:
            return convert(value.replace("D", "E") if convert is float else value)
        except ValueError:
            continue
    return value


class FitsHeaderReader(MetadataReader):
    """Base of a camera's reader of FITS raws: unit values from primary header keywords.

    A subclass names its instrument and the keyword of each unit::

        class MyCamReader(FitsHeaderReader):
            instrument = "MyCam"
            keywords = {"exposure": "EXPNUM", "detector": "CCDNUM"}

    and overrides `translate` where a value needs more than a look-up (a detector
    number computed from a name, an exposure id from date and sequence number).
    """

    instrument: ClassVar[str] = ""
    keywords: ClassVar[Mapping[str, str]] = {}

    def read(self, path: Path) -> Mapping[str, Any]:
        try:
            header = read_fits_header(path)
        except OSError as err:
            raise MetadataError(f"cannot read its FITS header: {err.strerror}") from None
        return self.translate(header)

    def translate(self, header: Mapping[str, Any]) -> dict[str, Any]:
        """Unit values from a header (the instrument, then each unit's keyword)."""
        values: dict[str, Any] = {"instrument": self.instrument} if self.instrument else {}
        for unit, keyword in self.keywords.items():
            if keyword not in header:
                raise MetadataError(f"invalid metadata: its FITS header has no {keyword} (the {unit})")
            values[unit] = header[keyword]
        return values
