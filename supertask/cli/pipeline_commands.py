"""``supertask pipeline show``: the expanded pipeline, each task's full config, the dataset flow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

__all__ = ["pipeline", "load_for_cli", "flatten_config"]


def load_for_cli(
    file: str, overrides: tuple[str, ...] = (), instrument: str | None = None, subset: str | None = None
) -> Any:
    """Load, specialise, override and validate a pipeline; errors become one-line click errors.

    The order is the one documented for pipelines: instrument overrides first, then
    command-line ``--config`` values, so that the command line has the last word.
    """
    from ..config import FieldValidationError
    from ..pipeline import Pipeline, PipelineError

    try:
        loaded = Pipeline.fromFile(file, validate=False)
        if instrument:
            loaded = loaded.forInstrument(instrument)
        loaded.applyConfigStrings(overrides)
        if subset:
            loaded = loaded.subset(subset)
        loaded.validate()
    except (PipelineError, FieldValidationError) as err:
        raise click.ClickException(str(err)) from None
    return loaded


def flatten_config(config: Any, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """``(dotted field path, value, doc)`` for every leaf field of a config, in declaration order."""
    from ..config import Config, ConfigurableValue

    for name, field in type(config)._fields.items():
        value = config._values[name]
        path = f"{prefix}{name}"
        if isinstance(value, ConfigurableValue):
            if value.target is not field.target:
                yield (
                    f"{path}._target",
                    f"{value.target.__module__}.{value.target.__qualname__}",
                    "retargeted",
                )
            yield from flatten_config(value.value, f"{path}.")
        elif isinstance(value, Config):
            yield from flatten_config(value, f"{path}.")
        else:
            yield path, value, field.doc


@click.group()
def pipeline() -> None:
    """Inspect pipeline files."""


@pipeline.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "-c",
    "overrides",
    multiple=True,
    metavar="LABEL:FIELD=VALUE",
    help="Config override, e.g. -c calibrate:detection.threshold=4 (repeatable; applied in order).",
)
@click.option("--instrument", "-i", help="Specialise the pipeline for this instrument first.")
@click.option("--subset", help="Show only the tasks of this named subset.")
@click.option(
    "--dot",
    "dot_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the task/dataset-type graph as Graphviz text to this file.",
)
@click.option(
    "--yaml", "as_yaml", is_flag=True, help="Print the fully resolved pipeline YAML instead of tables."
)
def show(
    file: str,
    overrides: tuple[str, ...],
    instrument: str | None,
    subset: str | None,
    dot_file: str | None,
    as_yaml: bool,
) -> None:
    """Show the expanded pipeline in FILE: tasks, full configs, and the dataset types between tasks."""
    loaded = load_for_cli(file, overrides, instrument, subset)
    if dot_file:
        from ..atomic_write import atomic_write_text
        from ..pipeline.dot import pipeline_to_dot

        atomic_write_text(dot_file, pipeline_to_dot(loaded))
    if as_yaml:
        click.echo(loaded.toYaml(), nl=False)
    else:
        _print_tables(loaded)
    if dot_file:
        click.echo(f"wrote {dot_file} (render with: dot -Tsvg {dot_file} -o pipeline.svg)", err=True)


def _print_tables(loaded: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    flow = loaded.datasetTypes()
    title = f"Pipeline {loaded.source}"
    if loaded.instrument:
        title += f" for {loaded.instrument}"
    if loaded.description:
        console.print(f"[bold]{title}[/bold]: {loaded.description}")
    else:
        console.print(f"[bold]{title}[/bold]")

    tasks = Table(title="Tasks (in execution order)")
    for column in ("label", "class", "quantum units", "reads", "writes"):
        tasks.add_column(column)
    for task_label in loaded._sortedLabels():
        taskDef = loaded[task_label]
        classes = taskDef.datasetClasses()
        tasks.add_row(
            task_label,
            taskDef.classPath,
            ", ".join(taskDef.taskClass.quantumUnits),
            ", ".join(d.name for d in classes["inputs"].values()),
            ", ".join(d.name for d in classes["outputs"].values()),
        )
    console.print(tasks)

    datasets = Table(title="Dataset types")
    for column in ("name", "kind", "units", "storage class", "written by", "read by"):
        datasets.add_column(column)
    for name, datasetType in flow.all.items():
        kind = "input" if name in flow.inputs else "intermediate" if name in flow.intermediates else "output"
        datasets.add_row(
            name,
            kind,
            ", ".join(datasetType.units),
            datasetType.storageClass,
            flow.producers.get(name, "(repository)"),
            ", ".join(flow.consumers.get(name, [])),
        )
    console.print(datasets)

    for task_label, taskDef in loaded.items():
        config = Table(title=f"Config of {task_label} ({taskDef.taskClass.__name__})", title_justify="left")
        config.add_column("field")
        config.add_column("value")
        config.add_column("doc", style="dim")
        for path, value, doc in flatten_config(taskDef.config):
            config.add_row(path, repr(value), doc)
        console.print(config)
        if taskDef.instrumentOverrides:
            console.print(f"  instrument overrides for: {', '.join(sorted(taskDef.instrumentOverrides))}")
    if loaded.subsets:
        console.print("Subsets: " + "; ".join(f"{n}: {', '.join(ls)}" for n, ls in loaded.subsets.items()))
