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
    instrument: DemoCam               # optional: specialise on load

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

if TYPE_CHECKING:  # the class to fill is passed in: `core` uses this module, never the reverse
    from .core import Pipeline

__all__ = ["load_pipeline_file", "load_pipeline_text", "dump_pipeline"]

TOP_KEYS = ("description", "instrument", "inputs", "imports", "tasks", "subsets")
TASK_KEYS = ("class", "config", "configFiles", "instrumentOverrides")
IMPORT_KEYS = ("location", "exclude")
HEADER = "# supertask pipeline, fully resolved: every task's complete config is listed.\n"


def _loader():
    """A SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
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
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise PipelineError(
            f"{source}{line}: malformed pipeline YAML: {getattr(err, 'problem', None) or err}. Fix the syntax "
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


def _build(
    pipeline_class: type[Pipeline], text: str, source: str, base: Path, stack: tuple[Path, ...]
) -> Pipeline:
    data = _parse(text, source)
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
    instrument = data.get("instrument")
    if instrument is not None:
        if not isinstance(instrument, str):
            raise PipelineError(f"{source}: 'instrument' must be an instrument name")
        pipeline = pipeline.forInstrument(instrument)
    return pipeline


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
    return HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
