"""Two toy tasks with table outputs and schemas, for the schema tests (jobs import this module).

``catalog`` (per detector) turns a ``seed`` into a ``cat`` table whose columns it declares
(`getDatasetSchemas`; with ``SCHEMA_TOY_EXTRA_COLUMN`` set in the environment it adds one,
as a new version of the task's code would, with the same config);
``summary`` (per instrument) gathers every ``cat`` and reads the schema of ``cat`` in its
constructor (``schemaInputs``): its output lists the columns it was given, so a test sees
which schema reached the task wherever it ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from supertask.config import Config, DatasetField
from supertask.schemas import DatasetSchema
from supertask.supertask import SuperTask
from supertask.task import Struct

TASK_MODULE = __name__
TASKS_PYTHONPATH = str(Path(__file__).resolve().parents[TASK_MODULE.count(".")])
DETECTOR_UNITS = ("instrument", "detector")
EXTRA_COLUMN_VARIABLE = "SCHEMA_TOY_EXTRA_COLUMN"
BASE_COLUMNS = [("id", "<i8"), ("flux", "<f8")]


class CatalogConfig(Config):
    seed = DatasetField(doc="in", units=DETECTOR_UNITS, storageClass="StructuredDataDict", name="seed")
    cat = DatasetField(doc="out", units=DETECTOR_UNITS, storageClass="Table", name="cat", role="output")


class CatalogTask(SuperTask):
    """Per detector: a table of ``seed value`` rows with the declared columns."""

    ConfigClass = CatalogConfig
    _DefaultName = "catalog"
    quantumUnits = DETECTOR_UNITS

    def _dtype(self) -> np.dtype:
        extra = [("extra", "<f4")] if os.environ.get(EXTRA_COLUMN_VARIABLE) else []
        return np.dtype(BASE_COLUMNS + extra)

    def getDatasetSchemas(self) -> dict[str, DatasetSchema]:
        return {self.config.cat.name: DatasetSchema.from_dtype(self._dtype())}

    def run(self, seed: Any) -> Struct:
        table = np.zeros(int(seed["value"]) % 5 + 1, dtype=self._dtype())
        table["id"] = np.arange(len(table))
        table["flux"] = seed["value"]
        return Struct(cat=table)


class SummaryConfig(Config):
    cat = DatasetField(doc="in", units=DETECTOR_UNITS, storageClass="Table", name="cat")
    summary = DatasetField(
        doc="out", units=("instrument",), storageClass="StructuredDataDict", name="summary", role="output"
    )


class SummaryTask(SuperTask):
    """Per instrument: the rows of every ``cat`` and the columns its constructor was given."""

    ConfigClass = SummaryConfig
    _DefaultName = "summary"
    quantumUnits = ("instrument",)
    schemaInputs = ("cat",)

    def __init__(self, butler: Any = None, **kwargs: Any):
        super().__init__(butler, **kwargs)
        self.columns = list(self.inputSchema("cat").names)

    def run(self, cat: dict[Any, Any]) -> Struct:
        rows = sum(len(table) for table in cat.values())
        return Struct(summary={"rows": rows, "columns": self.columns})


def pipeline_yaml(labels: tuple[str, ...] = ("catalog", "summary")) -> str:
    """``catalog`` then ``summary`` (or only the labels asked for)."""
    tasks = {
        "catalog": {"class": f"{TASK_MODULE}.CatalogTask"},
        "summary": {"class": f"{TASK_MODULE}.SummaryTask"},
    }
    inputs = ["seed"] if "catalog" in labels else ["cat"]
    return yaml.safe_dump({"inputs": inputs, "tasks": {label: tasks[label] for label in labels}})
