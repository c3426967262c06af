"""The seed's ``Quantum``: one independently runnable unit of work (DMTN-055 4.2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .repo.dataid import DataId
from .repo.dataset import Dataset

if TYPE_CHECKING:
    from .supertask import SuperTask


class Quantum:
    """The inputs and outputs of one run of one task.

    Parameters
    ----------
    taskLabel : `str`
        The pipeline label of the task that runs this quantum.
    dataId : `DataId`
        The values of the task's quantum units (e.g. visit and detector).
    inputs, outputs : `dict` [`str`, `list` [`Dataset`]]
        Datasets by dataset type name. Lists keep a deterministic order, which
        makes graphs and their files reproducible.
    id : `int`, optional
        Index in the `QuantumGraph` (assigned by the graph, in dependency order);
        batch jobs name their quanta by it.

    Notes
    -----
    ``task`` is the instantiated `SuperTask` during preflight and execution; it is
    not pickled: a batch job rebuilds tasks from the pipeline stored in the graph file.
    """

    __slots__ = ("id", "taskLabel", "dataId", "inputs", "outputs", "task")

    def __init__(
        self,
        taskLabel: str,
        dataId: DataId,
        inputs: dict[str, list[Dataset]] | None = None,
        outputs: dict[str, list[Dataset]] | None = None,
        *,
        id: int | None = None,
        task: SuperTask | None = None,
    ):
        self.taskLabel = taskLabel
        self.dataId = dataId
        self.inputs: dict[str, list[Dataset]] = inputs if inputs is not None else {}
        self.outputs: dict[str, list[Dataset]] = outputs if outputs is not None else {}
        self.id = id
        self.task = task

    @classmethod
    def _many(
        cls,
        taskLabel: str,
        dataIds: Iterable[DataId],
        inputs: Iterable[dict[str, list[Dataset]] | None],
        task: SuperTask | None = None,
        *,
        outputs: Iterable[dict[str, list[Dataset]]] | None = None,
    ) -> list[Quantum]:
        """One quantum per data ID whose inputs are not `None`, in order (internal fast path).

        The bulk form of the constructor for preflight's million quanta of one task:
        ``inputs`` is aligned with ``dataIds`` (`None` for a data ID that gets no
        quantum). ``outputs``, when given, is aligned with them too and each quantum
        gets its dict as it is (taken, not copied); otherwise each quantum starts with
        no outputs. About half the cost of one constructor call per quantum.
        """
        if outputs is None:  # (a task without outputs: an empty dict of its own per quantum)
            inputs = list(inputs)
            outputs = [{} for _ in inputs]
        new = object.__new__
        out: list[Quantum] = []
        append = out.append
        for dataId, quantumInputs, quantumOutputs in zip(dataIds, inputs, outputs, strict=True):
            if quantumInputs is not None:
                self = new(cls)
                self.taskLabel = taskLabel
                self.dataId = dataId
                self.inputs = quantumInputs
                self.outputs = quantumOutputs
                self.id = None
                self.task = task
                append(self)
        return out

    def addInput(self, dataset: Dataset) -> None:
        """Add an input dataset under its type name."""
        self.inputs.setdefault(dataset.datasetType.name, []).append(dataset)

    def addOutput(self, dataset: Dataset) -> None:
        """Add an output dataset under its type name."""
        self.outputs.setdefault(dataset.datasetType.name, []).append(dataset)

    def iterInputs(self) -> Iterator[Dataset]:
        """All input datasets, flattened."""
        for datasets in self.inputs.values():
            yield from datasets

    def iterOutputs(self) -> Iterator[Dataset]:
        """All output datasets, flattened."""
        for datasets in self.outputs.values():
            yield from datasets

    def __repr__(self) -> str:
        return f"Quantum(id={self.id}, {self.taskLabel}, {self.dataId!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_quantum, (self.taskLabel, self.dataId, self.inputs, self.outputs, self.id))


def _restore_quantum(
    taskLabel: str,
    dataId: DataId,
    inputs: dict[str, list[Dataset]],
    outputs: dict[str, list[Dataset]],
    id: int | None,
) -> Quantum:
    return Quantum(taskLabel, dataId, inputs, outputs, id=id)
