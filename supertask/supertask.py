"""`SuperTask`: a `Task` that declares its datasets and its units of work (DMTN-055 section 4)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .config import Config, DatasetConfig, DatasetField
from .quantum import Quantum
from .schemas import DatasetSchema, SchemaError
from .task import Struct, Task, TaskError

if TYPE_CHECKING:
    from .repo.dataid import DataId
    from .repo.dataset import Dataset, DatasetType

__all__ = ["SuperTask", "Quantum", "Struct", "iter_dataset_fields", "dataset_classes"]


def iter_dataset_fields(config: Config) -> Iterator[tuple[str, DatasetField, DatasetConfig]]:
    """``(field name, field, value)`` for each `DatasetField` of a config, in declaration order."""
    for name, field in type(config)._fields.items():
        if isinstance(field, DatasetField):
            yield name, field, config._values[name]


def dataset_classes(config: Config) -> dict[str, dict[str, DatasetType]]:
    """``{"inputs": {field: DatasetType}, "outputs": {...}}`` from a config's DatasetFields.

    A function of the config alone, so that a `~supertask.pipeline.Pipeline` can
    inspect dataset flow without constructing (and freezing) its tasks.
    """
    result: dict[str, dict[str, DatasetType]] = {"inputs": {}, "outputs": {}}
    for name, field, value in iter_dataset_fields(config):
        result["inputs" if field.role == "input" else "outputs"][name] = value.datasetType
    return result


class SuperTask(Task):
    """Base class of pipeline tasks.

    Subclasses set ``ConfigClass`` (with `~supertask.config.DatasetField` entries for
    every dataset read or written), ``_DefaultName``, ``quantumUnits`` (the units of
    one unit of work, e.g. ``("instrument", "visit", "detector")``) and ``run``.

    Parameters
    ----------
    butler : optional
        Where the schemas of the inputs named in ``schemaInputs`` are read from: anything
        with ``getSchema(datasetTypeName)`` (a `~supertask.schemas.SchemaSource` from
        preflight or from a saved graph, or a `~supertask.repo.butler.Butler`). Only
        those schemas are read, so a task that needs none costs nothing more to make.
    inputSchemas : mapping, optional
        ``{dataset type name: DatasetSchema}``: the schemas given directly, for a task
        constructed without a butler (used as a plain `Task`); they win over ``butler``.
    **kwargs
        Forwarded to `Task` (``config``, ``name``, ``parentTask``, ``log``).

    Raises
    ------
    SchemaError
        A schema named by ``schemaInputs`` is neither given nor found through ``butler``.
    """

    quantumUnits: ClassVar[tuple[str, ...]] = ()
    #: input config fields whose schemas the constructor needs (`inputSchema` returns them)
    schemaInputs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, butler: Any = None, *, inputSchemas: Mapping[str, DatasetSchema] | None = None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self._inputSchemas: dict[str, DatasetSchema] = {}
        if self.schemaInputs:
            self._readInputSchemas(butler, inputSchemas or {})

    def _readInputSchemas(self, butler: Any, given: Mapping[str, DatasetSchema]) -> None:
        inputs = dataset_classes(self.config)["inputs"]
        for field_name in self.schemaInputs:
            if field_name not in inputs:
                raise TaskError(
                    f"{type(self).__name__}.schemaInputs names {field_name!r}, which is not an input "
                    f"DatasetField of {self.ConfigClass.__name__} (inputs: {sorted(inputs)})"
                )
            name = inputs[field_name].name
            schema = given.get(name)
            if schema is None:
                getter = getattr(butler, "getSchema", None)
                if getter is None:
                    raise SchemaError(
                        f"task {self.getName()!r} needs the schema of its input {name!r} (field "
                        f"{field_name!r}): pass inputSchemas={{{name!r}: schema}} or a butler that has it"
                    )
                schema = getter(name)
            self._inputSchemas[field_name] = schema

    def inputSchema(self, field_name: str) -> DatasetSchema:
        """The schema of the input ``field_name`` (one of ``schemaInputs``), read at construction."""
        try:
            return self._inputSchemas[field_name]
        except KeyError:
            raise TaskError(
                f"{type(self).__name__} has no schema of input {field_name!r}: add it to schemaInputs"
            ) from None

    @property
    def label(self) -> str:
        """The pipeline label (the task's name)."""
        return self.getName()

    def getDatasetClasses(self) -> dict[str, dict[str, DatasetType]]:
        """The input and output dataset types, by config field name."""
        return dataset_classes(self.config)

    def getDatasetSchemas(self) -> dict[str, DatasetSchema]:
        """Schemas of table-like outputs, by (configured) dataset type name; none by default.

        Preflight records them in the graph and the run writes each once to the output
        RUN (``<dataset type>_schema``) before any quantum; tasks after this one read
        them in their constructors (``schemaInputs``). May depend on the input schemas
        (`inputSchema`): it is called after construction.
        """
        return {}

    def defineQuanta(self, repoGraph: Any) -> list[Quantum]:
        """Split the work into quanta, one per data ID of ``quantumUnits`` (the default rule)."""
        from .graph.quanta import define_quanta_by_units

        return define_quanta_by_units(self, repoGraph)

    def _isSingle(self, datasetType: DatasetType, quantum: Quantum) -> bool:
        units = set(self.quantumUnits) or set(quantum.dataId)
        return set(datasetType.units) <= units

    def runQuantum(self, quantum: Quantum, butler: Any) -> Struct:
        """Read the inputs with ``butler.get``, call `run`, write outputs with ``butler.put``.

        An input whose units are a subset of the quantum units is passed to ``run`` as
        one object; any other (a *gathering* input, e.g. all detectors of a visit for a
        per-visit task) as ``dict[DataId, object]``. Outputs map back the same way from
        the attributes of the returned `Struct`, named after the config fields.

        Returns
        -------
        result : `Struct`
            What ``run`` returned.
        """
        classes = self.getDatasetClasses()
        kwargs: dict[str, Any] = {}
        for field_name, datasetType in classes["inputs"].items():
            datasets = quantum.inputs.get(datasetType.name, [])
            if self._isSingle(datasetType, quantum):
                kwargs[field_name] = butler.get(self._single(quantum, field_name, datasetType, datasets))
            else:
                kwargs[field_name] = {dataset.dataId: butler.get(dataset) for dataset in datasets}
        result = self.run(**kwargs)
        if not isinstance(result, Struct):
            raise TaskError(f"{type(self).__name__}.run must return a Struct, not {type(result).__name__}")
        for field_name, datasetType in classes["outputs"].items():
            datasets = quantum.outputs.get(datasetType.name, [])
            if not datasets:
                continue
            if not hasattr(result, field_name):
                raise TaskError(
                    f"{type(self).__name__}.run returned no {field_name!r} for output dataset type "
                    f"{datasetType.name!r}; return Struct({field_name}=...)"
                )
            value = getattr(result, field_name)
            if self._isSingle(datasetType, quantum):
                butler.put(value, self._single(quantum, field_name, datasetType, datasets))
            else:
                self._putMany(value, field_name, datasets, butler)
        return result

    def _single(
        self, quantum: Quantum, field_name: str, datasetType: DatasetType, datasets: list[Dataset]
    ) -> Dataset:
        if len(datasets) != 1:
            raise TaskError(
                f"quantum {quantum.dataId!r} of {self.label!r} has {len(datasets)} datasets of "
                f"{datasetType.name!r} (field {field_name!r}) but its units {datasetType.units} are within "
                f"the quantum units {self.quantumUnits}, so exactly one was expected"
            )
        return datasets[0]

    def _putMany(self, value: Any, field_name: str, datasets: list[Dataset], butler: Any) -> None:
        if not isinstance(value, Mapping):
            raise TaskError(
                f"{type(self).__name__}.run must return {field_name!r} as a dict keyed by data ID "
                f"(its units are finer than the quantum's), not {type(value).__name__}"
            )
        by_id: Mapping[DataId, Any] = value
        missing = [d.dataId for d in datasets if d.dataId not in by_id]
        if missing:
            raise TaskError(
                f"{type(self).__name__}.run returned no {field_name!r} for data IDs {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}"
            )
        for dataset in datasets:
            butler.put(by_id[dataset.dataId], dataset)
