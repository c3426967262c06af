"""supertask: configurable SuperTasks, pipelines, a SQL data repository, preflight
into a QuantumGraph, and execution on one node (DMTN-055).

The public API is re-exported here. Names are resolved lazily (PEP 562) so that
``import supertask`` stays cheap: every batch job imports it, and start-up time is
a hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Config": "supertask.config",
    "Field": "supertask.config",
    "ListField": "supertask.config",
    "DictField": "supertask.config",
    "ConfigField": "supertask.config",
    "ConfigurableField": "supertask.config",
    "DatasetField": "supertask.config",
    "FieldValidationError": "supertask.config",
    "Task": "supertask.task",
    "Struct": "supertask.task",
    "NoWorkFound": "supertask.task",
    "SuperTask": "supertask.supertask",
    "Quantum": "supertask.quantum",
    "Pipeline": "supertask.pipeline",
    "DataId": "supertask.repo.dataid",
    "Dataset": "supertask.repo.dataset",
    "DatasetType": "supertask.repo.dataset",
    "Unit": "supertask.repo.units",
    "Butler": "supertask.repo.butler",
    "RepoGraph": "supertask.repo.repograph",
    "makeRepoGraph": "supertask.repo.repograph",
    "QuantumGraph": "supertask.graph.quantum_graph",
    "QuantumGraphBuilder": "supertask.graph.builder",
    "run_pipeline": "supertask.execution",
    "PlanRequest": "supertask.options",
    "RunOptions": "supertask.options",
}

# Spelled out so that tools see the public names; tests check it matches _EXPORTS.
__all__ = [
    "Butler",
    "Config",
    "ConfigField",
    "ConfigurableField",
    "DataId",
    "Dataset",
    "DatasetField",
    "DatasetType",
    "DictField",
    "Field",
    "FieldValidationError",
    "ListField",
    "NoWorkFound",
    "Pipeline",
    "PlanRequest",
    "Quantum",
    "QuantumGraph",
    "QuantumGraphBuilder",
    "RepoGraph",
    "RunOptions",
    "Struct",
    "SuperTask",
    "Task",
    "Unit",
    "makeRepoGraph",
    "run_pipeline",
]

#: the package's ``__getattr__`` and ``__dir__`` from `supertask.lazy_exports`, made on first use:
#: a batch job imports submodules only, and so not even that module
_lazy: tuple[Callable[[str], Any], Callable[[], list[str]]] | None = None


def _lazy_exports() -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    global _lazy
    if _lazy is None:
        from .lazy_exports import lazy_exports

        _lazy = lazy_exports(__name__, _EXPORTS)
    return _lazy


def __getattr__(name: str) -> Any:
    return _lazy_exports()[0](name)


def __dir__() -> list[str]:
    return _lazy_exports()[1]()


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from collections.abc import Callable

    from .config import (
        Config,
        ConfigField,
        ConfigurableField,
        DatasetField,
        DictField,
        Field,
        FieldValidationError,
        ListField,
    )
    from .execution import run_pipeline
    from .graph.builder import QuantumGraphBuilder
    from .graph.quantum_graph import QuantumGraph
    from .options import PlanRequest, RunOptions
    from .pipeline import Pipeline
    from .quantum import Quantum
    from .repo.butler import Butler
    from .repo.dataid import DataId
    from .repo.dataset import Dataset, DatasetType
    from .repo.repograph import RepoGraph, makeRepoGraph
    from .repo.units import Unit
    from .supertask import SuperTask
    from .task import NoWorkFound, Struct, Task
