"""`Pipeline`: an ordered mapping of label -> (SuperTask class, config) (DMTN-055 section 5)."""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, FieldValidationError, class_path, import_class
from ..config.errors import suggest
from ..config.overrides import apply_file, apply_string, parse_label_override
from ..supertask import SuperTask, dataset_classes
from .errors import PipelineError, UnknownLabelError, where
from .steps import Step, check_steps
from .yaml_io import dump_pipeline, load_pipeline_file, load_pipeline_text

if TYPE_CHECKING:
    from ..repo.dataset import DatasetType

__all__ = ["Pipeline", "TaskDef", "PipelineDatasetTypes"]


class TaskDef:
    """One entry of a pipeline.

    Attributes
    ----------
    label : `str`
        Unique name of the task in the pipeline (also its logger and task name).
    taskClass : `type` [`SuperTask`]
        The task class.
    config : `Config`
        Its configuration (mutable until `Pipeline.makeTasks` copies and freezes it).
    instrumentOverrides : `dict` [`str`, `dict`]
        Overrides applied by `Pipeline.forInstrument`, by instrument name.
    """

    # Plain classes here, not dataclasses: batch jobs import this module, and ``dataclasses``
    # (with the ``inspect`` it imports) would be a good part of a job's start-up.
    def __init__(
        self,
        label: str,
        taskClass: type[SuperTask],
        config: Config,
        instrumentOverrides: dict[str, dict[str, Any]] | None = None,
    ):
        self.label = label
        self.taskClass = taskClass
        self.config = config
        self.instrumentOverrides: dict[str, dict[str, Any]] = (
            instrumentOverrides if instrumentOverrides is not None else {}
        )

    def __repr__(self) -> str:
        return (
            f"TaskDef(label={self.label!r}, taskClass={self.taskClass!r}, config={self.config!r}, "
            f"instrumentOverrides={self.instrumentOverrides!r})"
        )

    @property
    def classPath(self) -> str:
        """The importable dotted path of the task class."""
        return class_path(self.taskClass)

    def datasetClasses(self) -> dict[str, dict[str, DatasetType]]:
        """``{"inputs": {field: DatasetType}, "outputs": {...}}`` from the current config."""
        return dataset_classes(self.config)

    def copy(self) -> TaskDef:
        """A deep copy (config and overrides)."""
        overrides = {name: dict(values) for name, values in self.instrumentOverrides.items()}
        return TaskDef(self.label, self.taskClass, self.config.copy(), overrides)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskDef):
            return NotImplemented
        return (
            self.label == other.label
            and self.taskClass is other.taskClass
            and self.config == other.config
            and self.instrumentOverrides == other.instrumentOverrides
        )


class PipelineDatasetTypes:
    """How dataset types flow through a pipeline.

    Attributes
    ----------
    inputs : `dict` [`str`, `DatasetType`]
        Read by some task, written by none: must exist in the repository.
    intermediates : `dict` [`str`, `DatasetType`]
        Written by one task and read by another.
    outputs : `dict` [`str`, `DatasetType`]
        Written and not read by any task of the pipeline: the final products.
    producers : `dict` [`str`, `str`]
        Dataset type name -> label of the task that writes it.
    consumers : `dict` [`str`, `list` [`str`]]
        Dataset type name -> labels of the tasks that read it (pipeline order).
    """

    __slots__ = ("inputs", "intermediates", "outputs", "producers", "consumers")

    def __init__(
        self,
        inputs: dict[str, DatasetType],
        intermediates: dict[str, DatasetType],
        outputs: dict[str, DatasetType],
        producers: dict[str, str],
        consumers: dict[str, list[str]],
    ):
        self.inputs = inputs
        self.intermediates = intermediates
        self.outputs = outputs
        self.producers = producers
        self.consumers = consumers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PipelineDatasetTypes):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "PipelineDatasetTypes(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def produced(self) -> dict[str, DatasetType]:
        """Every dataset type the pipeline writes (intermediates and outputs)."""
        return dict(sorted({**self.intermediates, **self.outputs}.items()))

    @property
    def all(self) -> dict[str, DatasetType]:
        """Every dataset type the pipeline reads or writes."""
        return dict(sorted({**self.inputs, **self.intermediates, **self.outputs}.items()))


class Pipeline(Mapping[str, TaskDef]):
    """An ordered mapping of label -> `TaskDef`.

    Parameters
    ----------
    description : `str`, optional
        What the pipeline is for.
    inputs : iterable of `str`, optional
        Names of the dataset types that the pipeline reads from the repository
        (checked by `validate`: any other dataset type read must be written by a task).
    instrument : `str`, optional
        Set by `forInstrument`: the instrument this pipeline is specialised for.
    source : `str`, optional
        The file it was read from (named in error messages).

    Notes
    -----
    As in the seed, the order is only checked on request (`checkOrder`, `sortOrder`),
    so tasks can be added and removed in any order while editing.
    """

    def __init__(
        self,
        description: str = "",
        *,
        inputs: Iterable[str] = (),
        instrument: str | None = None,
        source: str | None = None,
    ):
        self.description = description
        self.inputs: list[str] = list(inputs)
        self.instrument = instrument
        self.source = source
        self.subsets: dict[str, list[str]] = {}
        self.steps: list[Step] = []
        """The ordered steps (named subsets with their sharding units); see `supertask.pipeline.steps`."""
        self._tasks: dict[str, TaskDef] = {}

    # -- mapping ---------------------------------------------------------------------------
    def __getitem__(self, label: str) -> TaskDef:
        try:
            return self._tasks[label]
        except KeyError:
            raise self._unknownLabel(label) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, label: object) -> bool:
        return label in self._tasks

    def __delitem__(self, label: str) -> None:
        self.removeTask(label)

    def _unknownLabel(self, label: str) -> UnknownLabelError:
        return UnknownLabelError(
            f"{where(self.source)}no task labelled {label!r}.{suggest(label, self._tasks)} "
            f"Labels are: {', '.join(self._tasks) or '(none)'}."
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pipeline):
            return NotImplemented
        return (
            self.description == other.description
            and self.inputs == other.inputs
            and self.instrument == other.instrument
            and self.subsets == other.subsets
            and self.steps == other.steps
            and list(self._tasks.values()) == list(other._tasks.values())
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable: a pipeline is mutable and has ==

    def __repr__(self) -> str:
        return f"Pipeline({list(self._tasks)!r}{', instrument=' + repr(self.instrument) if self.instrument else ''})"

    # -- editing -----------------------------------------------------------------------------
    def addTask(
        self,
        taskClass: type[SuperTask] | str,
        label: str | None = None,
        config: Config | None = None,
        *,
        instrumentOverrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> TaskDef:
        """Append a task.

        Parameters
        ----------
        taskClass : `type` or `str`
            A `SuperTask` subclass or its dotted class path.
        label : `str`, optional
            Defaults to the class's ``_DefaultName``.
        config : `Config`, optional
            Defaults to ``taskClass.ConfigClass()``; the pipeline keeps its own copy.
        instrumentOverrides : mapping, optional
            ``{instrument: {field path: value}}`` for `forInstrument`.
        """
        if isinstance(taskClass, str):
            taskClass = self._importTask(taskClass, label)
        if not (isinstance(taskClass, type) and issubclass(taskClass, SuperTask)):
            raise PipelineError(f"{where(self.source, label)}{taskClass!r} is not a SuperTask subclass")
        label = label or taskClass._DefaultName
        if not label or not label.isidentifier():
            raise PipelineError(
                f"{where(self.source)}task label {label!r} of {taskClass.__name__} must be a Python identifier "
                "(letters, digits, '_')"
            )
        if label in self._tasks:
            raise PipelineError(
                f"{where(self.source, label)}label already used by {self._tasks[label].taskClass.__name__}; "
                "choose another label"
            )
        if config is None:
            config = taskClass.ConfigClass()
        elif type(config) is not taskClass.ConfigClass:
            raise PipelineError(
                f"{where(self.source, label)}{taskClass.__name__} needs a {taskClass.ConfigClass.__name__}, "
                f"not a {type(config).__name__}"
            )
        else:
            config = config.copy()
        taskDef = TaskDef(label, taskClass, config)
        for instrument, overrides in (instrumentOverrides or {}).items():
            self._checkOverrides(taskDef, instrument, overrides)
            taskDef.instrumentOverrides[instrument] = dict(overrides)
        self._tasks[label] = taskDef
        return taskDef

    def _importTask(self, path: str, label: str | None) -> type[SuperTask]:
        try:
            cls = import_class(path, what="task class")
        except ImportError as err:
            raise PipelineError(f"{where(self.source, label)}{err}") from None
        return cls

    def _checkOverrides(self, taskDef: TaskDef, instrument: str, overrides: Mapping[str, Any]) -> None:
        """Apply overrides to a scratch copy so that mistakes surface now, not at forInstrument."""
        if not isinstance(overrides, Mapping):
            raise PipelineError(
                f"{where(self.source, taskDef.label)}instrumentOverrides.{instrument} must be a mapping of "
                f"field paths to values, not {type(overrides).__name__}"
            )
        try:
            taskDef.config.copy().update(overrides)
        except FieldValidationError as err:
            raise PipelineError(
                f"{where(self.source, taskDef.label)}instrumentOverrides.{instrument}: {err}"
            ) from None

    def removeTask(self, label: str) -> TaskDef:
        """Remove a task (and drop it from subsets); returns its `TaskDef`."""
        taskDef = self[label]
        del self._tasks[label]
        for labels in self.subsets.values():
            if label in labels:
                labels.remove(label)
        return taskDef

    def copy(self) -> Pipeline:
        """A deep copy (configs included)."""
        new = Pipeline(self.description, inputs=self.inputs, instrument=self.instrument, source=self.source)
        new.subsets = {name: list(labels) for name, labels in self.subsets.items()}
        new.steps = list(self.steps)
        new._tasks = {label: taskDef.copy() for label, taskDef in self._tasks.items()}
        return new

    # -- configuration -----------------------------------------------------------------------
    def applyConfigOverrides(self, overrides: Mapping[str, Any]) -> None:
        """Apply overrides by label.

        Parameters
        ----------
        overrides : mapping
            ``{label: value}`` where each value is a mapping of (nested or dotted)
            field paths to values, a ``"field.sub=value"`` string, the path of a
            ``.py`` / ``.yaml`` override file, a `Config` of the right class, or a
            list of those applied in order.
        """
        for label, value in overrides.items():
            taskDef = self[label]
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                self._applyOne(taskDef, item)

    def _applyOne(self, taskDef: TaskDef, item: Any) -> None:
        try:
            if isinstance(item, Config):
                if type(item) is not type(taskDef.config):
                    raise PipelineError(
                        f"{where(self.source, taskDef.label)}needs a {type(taskDef.config).__name__}, not a "
                        f"{type(item).__name__}"
                    )
                taskDef.config = item.copy()
            elif isinstance(item, Mapping):
                taskDef.config.update(item)
            elif isinstance(item, str | Path):
                text = str(item)
                if isinstance(item, Path) or (
                    "=" not in text and Path(text).suffix in (".py", ".yaml", ".yml")
                ):
                    apply_file(taskDef.config, text)
                else:
                    apply_string(taskDef.config, text)
            else:
                raise PipelineError(
                    f"{where(self.source, taskDef.label)}cannot apply config override {item!r}: give a mapping, "
                    "a 'field=value' string or a file path"
                )
        except FieldValidationError as err:
            raise PipelineError(f"{where(self.source, taskDef.label)}{err}") from err

    def applyConfigStrings(self, overrides: Iterable[str]) -> None:
        """Apply command-line overrides ``"label:field.sub=value"`` in order."""
        for text in overrides:
            try:
                label, assignment = parse_label_override(text)
            except FieldValidationError as err:
                raise PipelineError(str(err)) from None
            self.applyConfigOverrides({label: assignment})

    def knownInstruments(self) -> list[str]:
        """Instrument names that some task has overrides for."""
        return sorted({name for taskDef in self._tasks.values() for name in taskDef.instrumentOverrides})

    def forInstrument(self, name: str) -> Pipeline:
        """A copy specialised for an instrument: its overrides applied, the others dropped.

        Raises
        ------
        PipelineError
            If the pipeline is already specialised for another instrument, or no task
            knows ``name`` while some know others (probably a typo).
        """
        if self.instrument is not None and self.instrument != name:
            raise PipelineError(
                f"{where(self.source)}pipeline is already specialised for instrument {self.instrument!r}; "
                f"specialise the generic pipeline for {name!r} instead"
            )
        known = self.knownInstruments()
        if known and name not in known:
            raise PipelineError(
                f"{where(self.source)}no task has instrumentOverrides for {name!r}.{suggest(name, known)} "
                f"Known instruments: {', '.join(known)}. If {name!r} needs no overrides, declare it with an "
                f"empty entry (instrumentOverrides: {{{name}: {{}}}}) on any task."
            )
        new = self.copy()
        new.instrument = name
        for taskDef in new._tasks.values():
            overrides = taskDef.instrumentOverrides.get(name)
            taskDef.instrumentOverrides = {}
            if overrides:
                new._applyOne(taskDef, overrides)
        return new

    # -- dataset flow and order ------------------------------------------------------------
    def datasetTypes(self) -> PipelineDatasetTypes:
        """Classify the dataset types the tasks read and write.

        Raises
        ------
        PipelineError
            If two tasks declare the same dataset type name with different units or
            storage classes, or two tasks write the same dataset type.
        """
        types: dict[str, tuple[DatasetType, str]] = {}
        producers: dict[str, str] = {}
        consumers: dict[str, list[str]] = {}
        for label, taskDef in self._tasks.items():
            classes = taskDef.datasetClasses()
            for role, mapping in classes.items():
                for field_name, datasetType in mapping.items():
                    seen = types.setdefault(datasetType.name, (datasetType, f"{label}.{field_name}"))
                    if seen[0] != datasetType:
                        raise PipelineError(
                            f"{where(self.source, label)}dataset type {datasetType.name!r} of field {field_name!r} "
                            f"has units {datasetType.units} and storage class {datasetType.storageClass!r}, "
                            f"but {seen[1]} declares units {seen[0].units} and storage class "
                            f"{seen[0].storageClass!r}; rename one of them in its config"
                        )
                    if role == "outputs":
                        other = producers.setdefault(datasetType.name, label)
                        if other != label:
                            raise PipelineError(
                                f"{where(self.source, label)}writes dataset type {datasetType.name!r}, which task "
                                f"{other!r} also writes; rename the output of one of them (e.g. "
                                f"{label}:{field_name}.name=...) or remove one task"
                            )
                    else:
                        consumers.setdefault(datasetType.name, []).append(label)
        inputs, intermediates, outputs = {}, {}, {}
        for name in sorted(types):
            datasetType = types[name][0]
            if name not in producers:
                inputs[name] = datasetType
            elif name in consumers:
                intermediates[name] = datasetType
            else:
                outputs[name] = datasetType
        return PipelineDatasetTypes(inputs, intermediates, outputs, producers, consumers)

    def _dependencies(self) -> dict[str, set[str]]:
        """label -> labels of the tasks it depends on."""
        flow = self.datasetTypes()
        deps: dict[str, set[str]] = {label: set() for label in self._tasks}
        for name, readers in flow.consumers.items():
            producer = flow.producers.get(name)
            if producer is not None:
                for reader in readers:
                    deps[reader].add(producer)
        return deps

    def checkOrder(self) -> bool:
        """False if a task writes a dataset type that an earlier task has already read."""
        read: set[str] = set()
        for taskDef in self._tasks.values():
            classes = taskDef.datasetClasses()
            if any(d.name in read for d in classes["outputs"].values()):
                return False
            read.update(d.name for d in classes["inputs"].values())
        return True

    def _sortedLabels(self) -> list[str]:
        deps = self._dependencies()
        sorter = graphlib.TopologicalSorter(deps)
        try:
            sorter.prepare()
        except graphlib.CycleError as err:
            cycle = err.args[1]
            raise PipelineError(
                f"{where(self.source)}tasks form a cycle: {' -> '.join(reversed(cycle))} (each reads what the "
                "next writes); rename a dataset type or remove a task to break it"
            ) from None
        # Kahn's algorithm, preferring the current order among ready tasks: a stable sort.
        index = {label: i for i, label in enumerate(self._tasks)}
        remaining = {label: len(d) for label, d in deps.items()}
        dependents: dict[str, list[str]] = {label: [] for label in deps}
        for label, d in deps.items():
            for producer in d:
                dependents[producer].append(label)
        ready = [(index[label], label) for label, n in remaining.items() if n == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, label = heapq.heappop(ready)
            order.append(label)
            for dependent in dependents[label]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    heapq.heappush(ready, (index[dependent], dependent))
        return order

    def sortOrder(self) -> None:
        """Reorder the tasks so that `checkOrder` is True (stable: keeps the order where it can).

        Raises
        ------
        PipelineError
            If the tasks form a cycle; the message names it.
        """
        self._tasks = {label: self._tasks[label] for label in self._sortedLabels()}

    # -- checks and construction -----------------------------------------------------------
    def validate(self) -> None:
        """Check the pipeline is runnable: configs valid, dataset flow consistent, no cycle.

        Raises
        ------
        PipelineError
            Naming the file, the task label and the fix.
        """
        for label, taskDef in self._tasks.items():
            try:
                taskDef.config.validate()
            except FieldValidationError as err:
                raise PipelineError(f"{where(self.source, label)}{err}") from None
        flow = self.datasetTypes()
        declared = set(self.inputs)
        for name in self.inputs:
            if name in flow.producers:
                raise PipelineError(
                    f"{where(self.source, flow.producers[name])}writes {name!r}, which the pipeline also "
                    "declares as an overall input; remove it from the top-level 'inputs:' list"
                )
        for name, readers in flow.consumers.items():
            if name not in flow.producers and name not in declared:
                hint = suggest(name, flow.producers)
                raise PipelineError(
                    f"{where(self.source, readers[0])}reads dataset type {name!r}, which no task writes and "
                    f"which is not an overall input.{hint} Fix: if it comes from the repository add it to the "
                    "top-level 'inputs:' list; otherwise add the task that writes it or rename the input "
                    f"(e.g. {readers[0]}:<field>.name=...)."
                )
        for subset, labels in self.subsets.items():
            for label in labels:
                if label not in self._tasks:
                    raise PipelineError(
                        f"{where(self.source)}subset {subset!r} names unknown task {label!r}."
                        f"{suggest(label, self._tasks)} Remove it from the subset or add the task."
                    )
        self._sortedLabels()
        check_steps(self, self.steps)  # their sharding units: check_step_units, when a file is read

    def subset(self, name: str) -> Pipeline:
        """A new pipeline with only the tasks of a named subset (or step).

        Dataset types the subset reads that tasks outside it write become overall inputs.
        """
        if name not in self.subsets:
            raise PipelineError(
                f"{where(self.source)}no subset named {name!r}.{suggest(name, self.subsets)} "
                f"Subsets are: {', '.join(self.subsets) or '(none)'}."
            )
        return self.subsetOf(self.subsets[name])

    def subsetOf(self, labels: Iterable[str]) -> Pipeline:
        """A new pipeline with only the tasks ``labels`` (in pipeline order).

        Dataset types they read that other tasks write become overall inputs, so the
        part plans against a repository where an earlier part's outputs are registered.
        The result declares no steps: it is one part of a stepped pipeline.
        """
        keep = set(labels)
        for label in keep:
            if label not in self._tasks:
                raise self._unknownLabel(label)
        new = self.copy()
        flow = self.datasetTypes()
        extra = [
            dt
            for dt, readers in flow.consumers.items()
            if any(r in keep for r in readers) and flow.producers.get(dt) not in (None, *keep)
        ]
        for label in list(new._tasks):
            if label not in keep:
                new.removeTask(label)
        new.inputs = sorted(set(self.inputs) | set(extra))
        new.subsets = {n: labels for n, labels in new.subsets.items() if labels}
        new.steps = []
        return new

    def makeTasks(self, butler: Any = None, *, schemas: Mapping[str, Any] | None = None) -> list[SuperTask]:
        """Construct every task (configs copied and frozen), in dependency order.

        Each task's constructor gets, as its ``butler``, a `~supertask.schemas.SchemaSource`
        holding ``schemas`` (e.g. a saved graph's) and the schemas the tasks before it
        declare (`SuperTask.getDatasetSchemas`), falling back to ``butler`` (schemas of
        the pipeline's overall inputs recorded in the repository). Earlier tasks'
        schemas are only asked for when a later task reads input schemas
        (``schemaInputs``), so a pipeline without any costs nothing more to construct.
        Pass a `SchemaSource` as ``butler`` to see which schemas were read (``used``).
        """
        from ..schemas import SchemaError, SchemaSource

        source = butler if isinstance(butler, SchemaSource) else SchemaSource(schemas, fallback=butler)
        labels = self._sortedLabels()
        readers = [
            i for i, label in enumerate(labels) if getattr(self._tasks[label].taskClass, "schemaInputs", ())
        ]
        last_reader = readers[-1] if readers else -1
        tasks = []
        for index, label in enumerate(labels):
            taskDef = self._tasks[label]
            try:
                task = taskDef.taskClass(butler=source, config=taskDef.config.copy(), name=label)
            except (FieldValidationError, SchemaError) as err:
                raise PipelineError(f"{where(self.source, label)}{err}") from None
            if index < last_reader:
                source.add(
                    {k: v for k, v in (task.getDatasetSchemas() or {}).items() if k not in source.known}
                )
            tasks.append(task)
        return tasks

    # -- files (the format is supertask.pipeline.yaml_io's; it fills the class it is given) ----------
    @classmethod
    def fromYaml(cls, text: str, *, source: str | None = None, validate: bool = True) -> Pipeline:
        """Read a pipeline from YAML text (relative paths resolve from the current directory)."""
        return load_pipeline_text(text, pipeline_class=cls, source=source, validate=validate)

    @classmethod
    def fromFile(cls, path: str | Path, *, validate: bool = True) -> Pipeline:
        """Read a pipeline file (imports and config files resolve relative to it)."""
        return load_pipeline_file(Path(path), pipeline_class=cls, validate=validate)

    def toYaml(self) -> str:
        """The fully resolved, deterministic YAML form; ``fromYaml(p.toYaml()) == p``."""
        return dump_pipeline(self)

    def write(self, path: str | Path) -> None:
        """Write `toYaml` to ``path`` atomically."""
        from ..atomic_write import atomic_write_text

        atomic_write_text(path, self.toYaml())
