"""A toy FITS camera for the ingest tests: a reader of its headers and a storage class for its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supertask.repo.formatters import register_formatter
from supertask.repo.metadata import FitsHeaderReader

INSTRUMENT = "FitsCam"


def write_fits(path: Path, cards: dict[str, Any], data: bytes = b"") -> Path:
    """A minimal FITS file: a primary header of these cards (then END), padded to 2880 bytes, and data."""
    lines = ["SIMPLE  =                    T"]
    for key, value in cards.items():
        if isinstance(value, str):
            text = "'" + value.replace("'", "''") + "'"
        elif isinstance(value, bool):
            text = "T" if value else "F"
        else:
            text = str(value)
        lines.append(f"{key:<8}= {text:>20} / test card")
    lines.append("END")
    header = "".join(line.ljust(80) for line in lines).encode("ascii")
    header += b" " * (-len(header) % 2880)
    path.write_bytes(header + data + b"\0" * (-len(data) % 2880))
    return path


class FitsCamReader(FitsHeaderReader):
    """FitsCam writes the exposure number in EXPNUM and the detector in CCDNUM."""

    instrument = INSTRUMENT
    keywords = {"exposure": "EXPNUM", "detector": "CCDNUM"}


class FitsBytesFormatter:
    """Storage class ``FitsBytes``: a FITS file read back as its bytes."""

    storageClass = "FitsBytes"
    extension = ".fits"

    def write(self, obj: Any, path: str | Path) -> None:
        Path(path).write_bytes(obj)

    def read(self, path: str | Path) -> Any:
        return Path(path).read_bytes()


register_formatter(FitsBytesFormatter())
