"""The schemas a run records in its output RUN: one ``<dataset type>_schema`` dataset each.

Written once per RUN, before any quantum runs (the executor of ``supertask run``, the
final job of a batch run), by whoever writes the registry; checked against what the
RUN already records by planning, the executor and ``bps prepare``. A RUN never mixes
schemas: one that differs is refused, naming the columns that differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..schemas import (
    SCHEMA_STORAGE_CLASS,
    DatasetSchema,
    SchemaConflictError,
    schema_dataset_type,
    schemas_from_json,
)

__all__ = ["graph_schemas", "recorded_schemas", "check_schemas", "write_schemas"]


def graph_schemas(metadata: Mapping[str, Any] | None) -> tuple[dict[str, DatasetSchema], set[str]]:
    """``(every schema the graph's tasks use, the names its run writes)`` from a graph's metadata."""
    record = (metadata or {}).get("schemas") or {}
    schemas = schemas_from_json(record.get("inputs"))
    outputs = schemas_from_json(record.get("outputs"))
    schemas.update(outputs)
    return schemas, set(outputs)


def recorded_schemas(butler: Any, run: str, names: Iterable[str]) -> dict[str, DatasetSchema]:
    """The schemas of ``names`` already recorded in ``run`` (absent ones are left out)."""
    registry = butler.registry
    found: dict[str, DatasetSchema] = {}
    for name in names:
        try:
            dataset = registry.findDataset(schema_dataset_type(name), {}, [run])
        except LookupError:  # a new RUN, or the schema's dataset type was never registered
            continue
        if dataset is None:
            continue
        path, _, _ = registry.getDatasetLocation(dataset)
        found[name] = DatasetSchema.from_json(butler.datastore.read(path, SCHEMA_STORAGE_CLASS))
    return found


def check_schemas(butler: Any, run: str, schemas: Mapping[str, DatasetSchema]) -> dict[str, DatasetSchema]:
    """Refuse schemas that differ from those ``run`` records; return the recorded ones.

    Raises
    ------
    SchemaConflictError
        Naming each dataset type and how its schema differs.
    """
    recorded = recorded_schemas(butler, run, sorted(schemas))
    problems = [
        f"{name}: {schemas[name].difference(stored)}"
        for name, stored in recorded.items()
        if schemas[name] != stored
    ]
    if problems:
        raise SchemaConflictError(
            f"RUN {run!r} records other schemas than this pipeline writes ("
            + "; ".join(problems)
            + "); a RUN cannot mix schemas: write to a new output RUN, or restore the task's output columns"
        )
    return recorded


def write_schemas(butler: Any, run: str, schemas: Mapping[str, DatasetSchema]) -> list[str]:
    """Record in ``run`` each schema it does not hold yet; return the names written.

    Idempotent (a rerun or a restarted batch run writes nothing more); the RUN must be
    registered already.

    Raises
    ------
    SchemaConflictError
        As `check_schemas`, before anything is written.
    """
    recorded = check_schemas(butler, run, schemas)
    registry = butler.registry
    datastore = butler.datastore
    written = []
    for name in sorted(set(schemas) - set(recorded)):
        datasetType = schema_dataset_type(name)
        registry.registerDatasetType(datasetType)
        content = {"datasetType": name, "fields": schemas[name].to_json()}
        path, tmp, size, checksum = datastore.write_temporary(content, datasetType, {}, run)
        record = {"dataId": {}, "path": path, "size": size, "checksum": checksum}

        def publish(tmp: Any = tmp, path: str = path) -> None:
            datastore.publish(tmp, path)

        try:
            registry.insertDatasetGroups(run, [[(datasetType, record)]], beforeCommit=publish)
        except BaseException:
            datastore.discard(tmp)
            raise
        written.append(name)
    return written
