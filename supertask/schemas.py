"""Dataset schemas: what a table-like dataset's columns are (DMTN-055 sections 4 and 7).

A task declares the schemas of its table outputs (`SuperTask.getDatasetSchemas`); a
task that needs the schema of an input to finish its construction names the input in
``SuperTask.schemaInputs`` and reads it in its constructor. Preflight passes each
task the schemas of the tasks before it (a `SchemaSource`, the dict-backed "butler"
of the design note) and records every schema in the graph; the run records each
output schema once, as a dataset ``<dataset type>_schema`` in the output RUN, before
any quantum runs; a RUN never mixes schemas: a schema that disagrees with the one
already recorded is refused (`SchemaConflictError`).

A schema is a list of ``(column name, numpy dtype string)`` pairs: JSON in the graph
header and in the RUN, and no numpy import until a task asks for a ``numpy.dtype``.
Standard library only: every batch job imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "DatasetSchema",
    "SchemaConflictError",
    "SchemaError",
    "SchemaSource",
    "SCHEMA_SUFFIX",
    "SCHEMA_STORAGE_CLASS",
    "schema_dataset_type",
    "schemas_from_json",
    "schemas_to_json",
]

#: a schema's dataset type is its table's dataset type name plus this suffix
SCHEMA_SUFFIX = "_schema"
#: schema datasets are small YAML files (readable without supertask)
SCHEMA_STORAGE_CLASS = "StructuredDataDictYaml"


class SchemaError(RuntimeError):
    """A schema is missing or malformed; the message says which and what to do."""


class SchemaConflictError(SchemaError):
    """A schema disagrees with the one already recorded in the output RUN."""


class DatasetSchema:
    """The columns of a table-like dataset: ``(name, numpy dtype string)`` pairs, in order.

    Parameters
    ----------
    fields : iterable of ``(str, str)``
        Column names and dtype strings (``"<f8"``, ``"<i8"``, ``"|b1"``, ...).
    """

    __slots__ = ("fields",)

    def __init__(self, fields: Iterable[tuple[str, str] | list[str]]):
        checked: list[tuple[str, str]] = []
        for item in fields:
            if len(item) != 2 or not all(isinstance(part, str) and part for part in item):
                raise SchemaError(f"a schema field is a (name, dtype string) pair, got {item!r}")
            checked.append((item[0], item[1]))
        names = [name for name, _ in checked]
        if len(set(names)) != len(names):
            raise SchemaError(f"schema has duplicate column names: {names}")
        self.fields: tuple[tuple[str, str], ...] = tuple(checked)

    @classmethod
    def from_dtype(cls, dtype: Any) -> DatasetSchema:
        """The schema of a numpy structured dtype (or of an array: its ``dtype``)."""
        dtype = getattr(dtype, "dtype", dtype)
        if not getattr(dtype, "names", None):
            raise SchemaError(f"a schema needs a structured dtype with named fields, got {dtype!r}")
        return cls((name, dtype.fields[name][0].str) for name in dtype.names)

    def to_dtype(self) -> Any:
        """The numpy structured dtype (imports numpy)."""
        import numpy as np

        return np.dtype(list(self.fields))

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(name for name, _ in self.fields)

    def to_json(self) -> list[list[str]]:
        """The JSON form: ``[[name, dtype], ...]``."""
        return [[name, kind] for name, kind in self.fields]

    @classmethod
    def from_json(cls, data: Any) -> DatasetSchema:
        """The schema from `to_json`'s form (or a dataset's ``{"fields": ...}`` mapping)."""
        if isinstance(data, Mapping):
            data = data.get("fields")
        if not isinstance(data, list):
            raise SchemaError(f"a schema is a list of [name, dtype] pairs, got {type(data).__name__}")
        return cls(data)

    def difference(self, other: DatasetSchema) -> str:
        """What differs from ``other``, in words ('' if nothing)."""
        if self.fields == other.fields:
            return ""
        mine, theirs = dict(self.fields), dict(other.fields)
        parts = []
        added = [n for n in mine if n not in theirs]
        removed = [n for n in theirs if n not in mine]
        changed = [f"{n} {theirs[n]} -> {mine[n]}" for n in mine if n in theirs and mine[n] != theirs[n]]
        if added:
            parts.append(f"new columns {added}")
        if removed:
            parts.append(f"missing columns {removed}")
        if changed:
            parts.append(f"changed types {changed}")
        if not parts:
            parts.append("the same columns in another order")
        return "; ".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetSchema):
            return NotImplemented
        return self.fields == other.fields

    def __hash__(self) -> int:
        return hash(self.fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return f"DatasetSchema({list(self.fields)!r})"


def schema_dataset_type(name: str) -> Any:
    """The dataset type recording the schema of dataset type ``name`` in a RUN (no units: one per RUN)."""
    from .repo.dataset import DatasetType

    return DatasetType(name + SCHEMA_SUFFIX, (), SCHEMA_STORAGE_CLASS)


def schemas_to_json(schemas: Mapping[str, DatasetSchema]) -> dict[str, list[list[str]]]:
    """``{dataset type: [[name, dtype], ...]}``, sorted by name (the graph header's form)."""
    return {name: schemas[name].to_json() for name in sorted(schemas)}


def schemas_from_json(data: Mapping[str, Any] | None) -> dict[str, DatasetSchema]:
    """The inverse of `schemas_to_json` (``None`` gives an empty mapping)."""
    return {name: DatasetSchema.from_json(value) for name, value in (data or {}).items()}


class SchemaSource:
    """The schemas a task's constructor may read: the "dict-backed butler" of DMTN-055 section 7.

    Passed as the ``butler`` argument of `SuperTask.__init__`. It answers from the schemas
    it holds (earlier tasks' outputs, or the graph's record of them) and only then asks
    ``fallback`` (a `~supertask.repo.butler.Butler`, for schemas of the pipeline's overall
    inputs recorded in the input collections). Every schema handed out is remembered in
    `used`, so preflight can record which schemas the graph needs.

    Parameters
    ----------
    known : mapping, optional
        ``{dataset type name: DatasetSchema}``.
    fallback : optional
        Anything with ``getSchema(name)``; None for none.
    """

    def __init__(self, known: Mapping[str, DatasetSchema] | None = None, fallback: Any = None):
        self.known: dict[str, DatasetSchema] = dict(known or {})
        self.fallback = fallback
        self.used: dict[str, DatasetSchema] = {}

    def getSchema(self, name: str) -> DatasetSchema:
        """The schema of dataset type ``name``.

        Raises
        ------
        SchemaError
            If neither the known schemas nor the fallback have it.
        """
        schema = self.known.get(name)
        if schema is None:
            getter = getattr(self.fallback, "getSchema", None)
            if getter is None:
                raise SchemaError(
                    f"no schema of {name!r}: no earlier task of the pipeline declares it in getDatasetSchemas() "
                    f"and no repository was given to find a {name}{SCHEMA_SUFFIX} dataset in"
                )
            schema = getter(name)
            self.known[name] = schema
        self.used[name] = schema
        return schema

    def add(self, schemas: Mapping[str, DatasetSchema]) -> None:
        """Make more schemas known (a task's outputs, once it is constructed)."""
        self.known.update(schemas)
