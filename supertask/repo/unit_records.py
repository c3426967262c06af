"""Unit records (instrument, detectors, exposures, visits, ...) from YAML or CSV files.

What ``supertask register-units`` reads. Operators describe a camera and its
observations in files rather than Python; a YAML file holds any number of units and
relations, in any order::

    instrument:
      - {instrument: DemoCam, class_name: demo.camera, detector_max: 4, visit_max: 1000000}
    band: [{band: g}, {band: r}]
    physical_filter:
      - {instrument: DemoCam, physical_filter: DemoCam-g, band: g}
    detector:
      - {instrument: DemoCam, detector: 0, full_name: S00, raft: R00, purpose: SCIENCE}
    exposure:
      - {instrument: DemoCam, exposure: 1, physical_filter: DemoCam-g, day_obs: 20230225, ...}

A CSV file holds one unit or relation (named by ``element``, or by the file's name:
``exposure.csv``), one row per line under a header of column names; values are
converted to the column types of the repository's universe (an empty cell is no value).

Rows are inserted in dependency order (units before the units that require or imply
them, relations last), each element in one bulk call: identical rows already there are
accepted, so registering a file again is harmless, and a row that contradicts a
registered one is refused naming both.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config.errors import suggest
from ..yaml_errors import yaml_error_parts
from .units import Universe

__all__ = ["UnitRecordsError", "read_unit_records", "register_unit_records", "element_order"]


class UnitRecordsError(ValueError):
    """A unit records file is wrong; the message names the file, the row and the fix."""


def element_order(universe: Universe) -> list[str]:
    """Units in dependency order (required and implied units first), then relations."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order or name in stack:
            return
        spec = universe.units[name]
        for other in (*spec.requires, *spec.implies):
            visit(other, (*stack, name))
        order.append(name)

    for name in universe.units:
        visit(name, ())
    return order + list(universe.relations)


def _columns(universe: Universe, element: str) -> dict[str, type]:
    """Column name -> Python type of a unit or relation table."""
    keys = universe.elementKeys(element)
    columns: dict[str, type] = {k: universe.units[k].keyType for k in keys}
    if element in universe.units:
        for implied in universe.units[element].implies:
            columns[implied] = universe.units[implied].keyType
    columns.update(universe.elementFields(element))
    return columns


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _convert(value: Any, kind: type, where: str, column: str) -> Any:
    """``value`` (from YAML, or a CSV cell's text) as ``kind``; an empty cell is no value."""
    if value is None:
        return None
    if isinstance(value, str) and kind is not str:
        value = value.strip()
        if not value:
            return None
    if kind is str:
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
    elif not isinstance(value, bool):
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int | str) or (kind is float and isinstance(value, float)):
            try:
                return kind(value)
            except ValueError:
                pass
    raise UnitRecordsError(f"{where}: {column} = {value!r} is not a valid {kind.__name__}; fix the value")


def _check_element(name: Any, universe: Universe, source: str) -> str:
    elements = [*universe.units, *universe.relations]
    if name not in elements:
        computed = {o.relation for o in universe.spatialOverlaps}
        if name in computed:
            raise UnitRecordsError(
                f"{source}: {name!r} is computed by the registry from the sky boxes; leave it out"
            )
        raise UnitRecordsError(
            f"{source}: unknown unit or relation {name!r}.{suggest(str(name), elements)} "
            f"Known: {', '.join(elements)}."
        )
    if name in {o.relation for o in universe.spatialOverlaps}:
        raise UnitRecordsError(
            f"{source}: {name!r} is computed by the registry from the sky boxes; leave it out"
        )
    return name


def _clean_rows(
    element: str, rows: Any, universe: Universe, source: str, first_line: int = 1
) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise UnitRecordsError(f"{source}: {element!r} must be a list of rows (mappings of column -> value)")
    columns = _columns(universe, element)
    required = set(universe.elementKeys(element))
    if element in universe.units:
        required |= set(universe.units[element].implies)
    clean = []
    for number, row in enumerate(rows, first_line):
        where = f"{source}: {element} row {number}"
        if not isinstance(row, Mapping):
            raise UnitRecordsError(f"{where} must be a mapping of column -> value, not {row!r}")
        unknown = [c for c in row if c not in columns]
        if unknown:
            raise UnitRecordsError(
                f"{where} has unknown column {unknown[0]!r}.{suggest(str(unknown[0]), columns)} "
                f"Columns of {element}: {', '.join(columns)}."
            )
        values = {c: _convert(v, columns[c], where, c) for c, v in row.items()}
        missing = sorted(c for c in required if values.get(c) is None)
        if missing:
            raise UnitRecordsError(
                f"{where} lacks {', '.join(missing)}; every row needs {', '.join(sorted(required))}"
            )
        clean.append(values)
    return clean


def read_unit_records(
    path: str | Path, universe: Universe, element: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read a YAML or CSV file of unit records: ``{element: [row, ...]}``, values converted.

    Parameters
    ----------
    path : path-like
        ``.yaml``/``.yml`` (elements as keys) or ``.csv`` (one element).
    universe : `Universe`
        The repository's units (column names and types).
    element : `str`, optional
        For a CSV file: the unit or relation it holds (default: the file's stem).

    Raises
    ------
    UnitRecordsError
        Naming the file, the element, the row and what is wrong with it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UnitRecordsError(f"cannot read unit records file {path}: {err.strerror}") from None
    if suffix == ".csv":
        name = _check_element(element or path.stem, universe, str(path))
        reader = csv.DictReader(text.splitlines())
        rows = []
        for row in reader:
            if None in row:
                raise UnitRecordsError(
                    f"{path}: line {reader.line_num} has more cells than the header has columns"
                )
            rows.append({k.strip(): v for k, v in row.items() if k is not None})
        return {name: _clean_rows(name, rows, universe, str(path), first_line=2)}
    if suffix not in (".yaml", ".yml"):
        raise UnitRecordsError(
            f"{path}: unit records must be a .yaml or .csv file, not {suffix or 'no suffix'}"
        )
    if element is not None:
        raise UnitRecordsError(f"{path}: --element is for CSV files; a YAML file names its elements as keys")
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        line, problem = yaml_error_parts(err)
        raise UnitRecordsError(f"{path}{line}: malformed YAML: {problem}") from None
    if not isinstance(data, Mapping):
        raise UnitRecordsError(
            f"{path}: a unit records file is a mapping of unit or relation name -> list of rows "
            "(e.g. detector: [{instrument: Cam, detector: 0}])"
        )
    return {
        _check_element(name, universe, str(path)): _clean_rows(name, rows, universe, str(path))
        for name, rows in data.items()
    }


def register_unit_records(registry: Any, records: Mapping[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Insert the records in dependency order; returns rows given per element.

    Raises
    ------
    ValueError
        From `Registry.insertUnits`: a row contradicting a registered one, or a bad sky box.
    """
    counts = {}
    for name in element_order(registry.universe):
        rows = records.get(name)
        if rows:
            counts[name] = registry.insertUnits(name, rows)
    return counts
