"""The pipeline YAML file format: reading (with imports) and writing (fully resolved).

A pipeline file::

    description: Single-frame processing for the tutorial.
    inputs: [raw]                      # dataset types read from the repository
    imports:                           # other pipeline files, relative to this one
      - location: pipeline_isr.yaml
        exclude: [someLabel]
    tasks:
      calibrate:
        class: tutorial_tasks.CalibrateTask
        configFiles: [calibrate_overrides.py]   # applied first, in order
        config:                                 # then these (nested or dotted paths)
          detection.threshold: 4.0
        instrumentOverrides:                    # applied by Pipeline.forInstrument
          DemoCam: {photoCalib: 2.0}
    subsets:
      step1: [isr, calibrate]
    steps:                            # optional: the order a DRP is run in, step by step
      - subset: step1
        units: [visit]                # the units the step is sharded over
    instrument: DemoCam               # optional: specialise on load

Steps are not imported: a file that imports a stepped pipeline declares its own.

`dump_pipeline` writes every task's *complete* config and no imports or config files,
so a batch job can rebuild exactly the same tasks from the text alone, without the
files the pipeline was assembled from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import FieldValidationError
from ..config.errors import suggest
from ..config.overrides import apply_file
from .errors import PipelineError, where
from .steps import Step, check_step_units

if TYPE_CHECKING:  # the class to fill is passed in: `core` uses this module, never the reverse
    from .core import Pipeline

__all__ = ["load_pipeline_file", "load_pipeline_text", "load_pipeline_json", "pipeline_json", "dump_pipeline"]

TOP_KEYS = ("description", "instrument", "inputs", "imports", "tasks", "subsets", "steps")
STEP_KEYS = ("subset", "units")
TASK_KEYS = ("class", "config", "configFiles", "instrumentOverrides")
IMPORT_KEYS = ("location", "exclude")
HEADER = "# supertask pipeline, fully resolved: every task's complete config is listed.\n"


def _loader() -> type[Any]:
    """A SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one).

    Built on libyaml's parser (``CParser``) when PyYAML has it: the same documents and
    errors, parsed several times faster than by the pure-Python parser. Assembled from
    PyYAML's own safe constructor and resolver (as ``yaml.CSafeLoader`` is), not derived
    from ``CSafeLoader``: other libraries change that class for the whole process (Pegasus
    makes it read dates as strings), and a pipeline must read the same everywhere.
    """
    import yaml
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    if getattr(yaml, "CParser", None) is None:  # PyYAML without libyaml

        class StrictLoader(yaml.SafeLoader):
            pass

    else:
        from yaml._yaml import CParser

        # the second definition of the one name the function returns
        class StrictLoader(CParser, SafeConstructor, Resolver):  # type: ignore[no-redef]
            def __init__(self, stream: Any) -> None:
                CParser.__init__(self, stream)
                SafeConstructor.__init__(self)
                Resolver.__init__(self)

    def construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def _parse(text: str, source: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        from ..yaml_errors import yaml_error_parts

        line, problem = yaml_error_parts(err)
        raise PipelineError(
            f"{source}{line}: malformed pipeline YAML: {problem}. Fix the syntax "
            "there (indentation, a missing ':' or an unclosed bracket are the usual causes)."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PipelineError(
            f"{source}: a pipeline file must be a YAML mapping with keys {', '.join(TOP_KEYS)}; "
            f"got a {type(data).__name__}"
        )
    return dict(data)


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], what: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            raise PipelineError(
                f"{source}: unknown key {key!r} in {what}.{suggest(str(key), allowed)} "
                f"Allowed keys: {', '.join(allowed)}."
            )


def _str_list(value: Any, what: str, source: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PipelineError(f"{source}: {what} must be a list of strings, not {value!r}")
    return list(value)


def load_pipeline_file(
    path: Path, *, pipeline_class: type[Pipeline], validate: bool = True, _stack: tuple[Path, ...] = ()
) -> Pipeline:
    """Read a pipeline file into a new ``pipeline_class``; imports and config files are relative to its directory."""
    resolved = path.resolve()
    if resolved in _stack:
        chain = " -> ".join(str(p) for p in (*_stack, resolved))
        raise PipelineError(f"{path}: pipeline imports form a cycle: {chain}; remove one of the imports")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PipelineError(f"cannot read pipeline file {path}: {err.strerror}; check the path") from None
    except UnicodeDecodeError as err:
        raise PipelineError(
            f"{path} is not a pipeline YAML file: byte {err.start} is not UTF-8 text; "
            "give the path of a pipeline .yaml file"
        ) from None
    pipeline = _build(pipeline_class, text, str(path), path.parent, (*_stack, resolved))
    if not _stack:
        _check_has_tasks(pipeline, str(path))
    if validate:
        pipeline.validate()
        check_step_units(pipeline)
    return pipeline


def load_pipeline_text(
    text: str, *, pipeline_class: type[Pipeline], source: str | None = None, validate: bool = True
) -> Pipeline:
    """Read a pipeline from YAML text into a new ``pipeline_class``; relative paths resolve from the current directory."""
    pipeline = _build(pipeline_class, text, source or "<pipeline YAML>", Path.cwd(), ())
    _check_has_tasks(pipeline, source or "<pipeline YAML>")
    if validate:
        pipeline.validate()
    return pipeline


def _check_has_tasks(pipeline: Pipeline, source: str) -> None:
    """A pipeline without tasks (an empty file, a file of comments) is a mistake, not an empty plan."""
    if len(pipeline) == 0:
        raise PipelineError(
            f"{source}: the pipeline has no tasks; add a 'tasks:' mapping of label -> task "
            "(or import a pipeline that has some)"
        )


def load_pipeline_json(
    text: str, *, pipeline_class: type[Pipeline], source: str | None = None, validate: bool = True
) -> Pipeline:
    """Read a pipeline from the JSON form `pipeline_json` made of its YAML text, into a new ``pipeline_class``.

    The same pipeline as `load_pipeline_text` of that YAML, read with the standard
    library's JSON parser: a batch job builds its tasks this way without importing a
    YAML parser (whose import compiles dozens of regular expressions).
    """
    import json

    name = source or "<pipeline JSON>"
    try:
        data = json.loads(text)
    except ValueError as err:
        raise PipelineError(f"{name}: malformed pipeline JSON ({err}); plan the graph again") from None
    if not isinstance(data, Mapping):
        raise PipelineError(f"{name}: the pipeline JSON must be an object, got a {type(data).__name__}")
    pipeline = _build_data(pipeline_class, dict(data), name, Path.cwd(), ())
    _check_has_tasks(pipeline, name)
    if validate:
        pipeline.validate()
    return pipeline


def pipeline_json(text: str) -> str | None:
    """The parsed YAML ``text`` as JSON text, if JSON keeps it exactly; else None.

    Exactly means parsing the JSON gives back equal data in the same order (a YAML
    mapping with integer keys, a date or a NaN does not survive JSON, and is then left
    to the YAML form). Used when a graph is saved, so its jobs can use
    `load_pipeline_json`.
    """
    import json

    try:
        data = _parse(text, "<pipeline YAML>")
        encoded = json.dumps(data, ensure_ascii=False, allow_nan=False)
    except (PipelineError, TypeError, ValueError):
        return None
    decoded = json.loads(encoded)
    if decoded != data or _key_order(decoded) != _key_order(data):
        return None
    return encoded


def _key_order(value: Any) -> Any:
    """Every mapping's keys in order, nested: equal data may differ in order, which matters here."""
    if isinstance(value, Mapping):
        return [(k, _key_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_key_order(v) for v in value]
    return None


def _build(
    pipeline_class: type[Pipeline], text: str, source: str, base: Path, stack: tuple[Path, ...]
) -> Pipeline:
    return _build_data(pipeline_class, _parse(text, source), source, base, stack)


def _build_data(
    pipeline_class: type[Pipeline], data: dict[str, Any], source: str, base: Path, stack: tuple[Path, ...]
) -> Pipeline:
    _check_keys(data, TOP_KEYS, "the pipeline", source)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise PipelineError(f"{source}: 'description' must be a string")
    pipeline = pipeline_class(description, source=source)
    for entry in data.get("imports") or []:
        _import(pipeline, entry, source, base, stack)
    for name in _str_list(data.get("inputs") or [], "'inputs'", source):
        if name not in pipeline.inputs:
            pipeline.inputs.append(name)
    tasks = data.get("tasks") or {}
    if not isinstance(tasks, Mapping):
        raise PipelineError(f"{source}: 'tasks' must be a mapping of label -> task entry")
    for label, entry in tasks.items():
        _add_task(pipeline, str(label), entry, source, base)
    subsets = data.get("subsets") or {}
    if not isinstance(subsets, Mapping):
        raise PipelineError(f"{source}: 'subsets' must be a mapping of subset name -> list of labels")
    for name, labels in subsets.items():
        labels = _str_list(labels, f"subset {name!r}", source)
        for label in labels:
            if label not in pipeline:
                raise PipelineError(
                    f"{source}: subset {name!r} names unknown task {label!r}.{suggest(label, pipeline)} "
                    "Fix the label or add the task."
                )
        pipeline.subsets[str(name)] = labels
    pipeline.steps = _steps(data.get("steps"), source)
    instrument = data.get("instrument")
    if instrument is not None:
        if not isinstance(instrument, str):
            raise PipelineError(f"{source}: 'instrument' must be an instrument name")
        pipeline = pipeline.forInstrument(instrument)
    return pipeline


def _steps(value: Any, source: str) -> list[Step]:
    """The ``steps:`` list; what each step names is checked by `Pipeline.validate`."""
    if value is None:
        return []
    example = "steps: [{subset: singleFrame, units: [visit]}, {subset: coadd, units: [tract]}]"
    if not isinstance(value, list):
        raise PipelineError(f"{source}: 'steps' must be a list of steps in run order, e.g. {example}")
    steps = []
    for number, entry in enumerate(value, 1):
        if not isinstance(entry, Mapping) or "subset" not in entry:
            raise PipelineError(
                f"{source}: step {number} must be a mapping with 'subset' and 'units', not {entry!r}; e.g. {example}"
            )
        _check_keys(entry, STEP_KEYS, f"step {number}", source)
        subset = entry["subset"]
        if not isinstance(subset, str):
            raise PipelineError(
                f"{source}: step {number}: 'subset' must be the name of a subset, not {subset!r}"
            )
        units = _str_list(entry.get("units") or [], f"step {subset!r} 'units'", source)
        steps.append(Step(subset, tuple(units)))
    return steps


def _import(pipeline: Pipeline, entry: Any, source: str, base: Path, stack: tuple[Path, ...]) -> None:
    if isinstance(entry, str):
        entry = {"location": entry}
    if not isinstance(entry, Mapping) or "location" not in entry:
        raise PipelineError(
            f"{source}: each import must be a file name or a mapping with 'location' (and 'exclude')"
        )
    _check_keys(entry, IMPORT_KEYS, "an import", source)
    location = base / os.path.expandvars(str(entry["location"]))
    if not location.exists():
        raise PipelineError(f"{source}: imported pipeline {location} does not exist; fix its 'location'")
    imported = load_pipeline_file(location, pipeline_class=type(pipeline), validate=False, _stack=stack)
    exclude = _str_list(entry.get("exclude") or [], "'exclude'", source)
    for label in exclude:
        if label not in imported:
            raise PipelineError(
                f"{source}: import of {location} excludes {label!r}, which it does not define."
                f"{suggest(label, imported)} Labels there: {', '.join(imported)}."
            )
    for label, taskDef in imported.items():
        if label in exclude:
            continue
        if label in pipeline:
            raise PipelineError(
                f"{source}: task {label!r} is defined by more than one import (again in {location}); "
                "exclude it from one of them"
            )
        pipeline._tasks[label] = taskDef
    for name in imported.inputs:
        if name not in pipeline.inputs:
            pipeline.inputs.append(name)
    for name, labels in imported.subsets.items():
        kept = [label for label in labels if label not in exclude]
        if kept:
            pipeline.subsets[name] = pipeline.subsets.get(name, []) + [
                label for label in kept if label not in pipeline.subsets.get(name, [])
            ]


def _add_task(pipeline: Pipeline, label: str, entry: Any, source: str, base: Path) -> None:
    if isinstance(entry, str):
        entry = {"class": entry}
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise PipelineError(
            f"{where(source, label)}task entry must be a class path or a mapping with 'class'"
        )
    _check_keys(entry, TASK_KEYS, f"task {label!r}", source)
    path = entry.get("class")
    if label in pipeline:
        taskDef = pipeline[label]
        if path is not None and path != taskDef.classPath:
            raise PipelineError(
                f"{where(source, label)}already defined by an import as {taskDef.classPath}; remove 'class' "
                "to override its config here, or exclude the label from the import to replace the task"
            )
    elif path is None:
        raise PipelineError(
            f"{where(source, label)}no 'class'; give the task's class path, e.g. class: package.module.MyTask"
        )
    else:
        if not isinstance(path, str):
            raise PipelineError(f"{where(source, label)}'class' must be a dotted class path string")
        taskDef = pipeline.addTask(path, label)
    for file in _str_list(entry.get("configFiles") or [], f"task {label!r} 'configFiles'", source):
        try:
            apply_file(taskDef.config, base / os.path.expandvars(file))
        except FieldValidationError as err:
            raise PipelineError(f"{where(source, label)}{err}") from None
    config = entry.get("config") or {}
    if not isinstance(config, Mapping):
        raise PipelineError(f"{where(source, label)}'config' must be a mapping of field paths to values")
    try:
        taskDef.config.update(config)
    except FieldValidationError as err:
        raise PipelineError(f"{where(source, label)}{err} (under tasks.{label}.config)") from None
    overrides = entry.get("instrumentOverrides") or {}
    if not isinstance(overrides, Mapping):
        raise PipelineError(
            f"{where(source, label)}'instrumentOverrides' must map instrument names to overrides"
        )
    for instrument, values in overrides.items():
        pipeline._checkOverrides(taskDef, str(instrument), values or {})
        taskDef.instrumentOverrides.setdefault(str(instrument), {}).update(values or {})


def dump_pipeline(pipeline: Pipeline) -> str:
    """The fully resolved YAML text of a pipeline (deterministic: same pipeline, same bytes)."""
    import yaml

    data: dict[str, Any] = {}
    if pipeline.description:
        data["description"] = pipeline.description
    if pipeline.instrument:
        data["instrument"] = pipeline.instrument
    if pipeline.inputs:
        data["inputs"] = list(pipeline.inputs)
    tasks: dict[str, Any] = {}
    for label, taskDef in pipeline.items():
        if "<locals>" in taskDef.classPath:
            raise PipelineError(
                f"{where(pipeline.source, label)}task class {taskDef.classPath} is defined inside a function; "
                "batch jobs could not import it. Define it at module level."
            )
        entry: dict[str, Any] = {"class": taskDef.classPath, "config": taskDef.config.toDict()}
        if taskDef.instrumentOverrides:
            entry["instrumentOverrides"] = {k: dict(v) for k, v in taskDef.instrumentOverrides.items()}
        tasks[label] = entry
    data["tasks"] = tasks
    if pipeline.subsets:
        data["subsets"] = {name: list(labels) for name, labels in pipeline.subsets.items()}
    if pipeline.steps:
        data["steps"] = [step.toDict() for step in pipeline.steps]
    return HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
