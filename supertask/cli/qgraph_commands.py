"""``supertask qgraph``: plan a QuantumGraph and save it, or inspect a saved one.

``supertask qgraph REPO -p PIPELINE ... --save FILE`` builds; ``supertask qgraph show FILE``
prints the summary of a saved graph, one quantum, or a Graphviz picture of a subgraph.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .request_options import handle_errors, plan_options, plan_request, request_options


class _DefaultToBuild(click.Group):
    """A group whose first argument is a subcommand name or, failing that, the build command's REPO."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToBuild)
def qgraph() -> None:
    """Plan a QuantumGraph (``qgraph REPO ...``) or inspect a saved one (``qgraph show FILE``)."""


def print_summary(graph: Any, console: Any) -> None:
    """A table of quanta per task label and datasets per type."""
    from rich.table import Table

    table = Table(title=f"QuantumGraph: {len(graph)} quanta")
    table.add_column("task label")
    table.add_column("quanta", justify="right")
    for label, quanta in graph.quantaByLabel().items():
        table.add_row(label, str(len(quanta)))
    console.print(table)
    datasets = Table(title="datasets")
    datasets.add_column("dataset type")
    datasets.add_column("count", justify="right")
    datasets.add_column("role")
    initial = {d.key for d in graph.initialInputs()}
    for name, items in sorted(graph.datasets.items()):
        role = "input" if any(d.key in initial for d in items) else "produced"
        datasets.add_row(name, str(len(items)), role)
    console.print(datasets)


@qgraph.command("build")
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@request_options
@click.option(
    "--save",
    "save_file",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the graph (.qgraph).",
)
@click.option(
    "--dot",
    "dot_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a Graphviz picture of the graph.",
)
@handle_errors
def build(
    repo: str,
    pipeline_file: str | None,
    inputs: tuple[str, ...],
    output_run: str | None,
    save_file: str,
    dot_file: str | None,
    **request: Any,
) -> None:
    """Build the QuantumGraph for a pipeline over REPO and save it."""
    from rich.console import Console

    if not pipeline_file:
        raise click.UsageError("a pipeline is required: -p PIPELINE.yaml")
    plan = plan_options(output_run, inputs, request)
    console = Console(stderr=True)
    start = time.perf_counter()
    _, graph = plan_request(
        repo, plan, request, pipeline_file=pipeline_file, console=console, writeable=False
    )
    Path(save_file).parent.mkdir(parents=True, exist_ok=True)
    graph.save(save_file)
    if dot_file:
        Path(dot_file).write_text(graph.toDot())
    print_summary(graph, Console())
    console.print(f"saved {len(graph)} quanta to {save_file} in {time.perf_counter() - start:.1f} s")


@qgraph.command("show")
@click.argument("graph_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--quantum", "quantum_id", type=int, default=None, help="Print one quantum's inputs and outputs."
)
@click.option(
    "--dot",
    "dot_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a Graphviz picture (of the quantum's neighbourhood with --quantum).",
)
@click.option("--depth", type=int, default=1, help="With --quantum and --dot: how many steps around it.")
@handle_errors
def show(graph_file: str, quantum_id: int | None, dot_file: str | None, depth: int) -> None:
    """Print the summary of a saved graph, or one of its quanta."""
    from rich.console import Console

    from ..graph.quantum_graph import QuantumGraph

    console = Console()
    if quantum_id is not None and dot_file is None:
        quantum = QuantumGraph.loadQuantum(graph_file, quantum_id)
        console.print(f"quantum {quantum.id}: [bold]{quantum.taskLabel}[/bold] {quantum.dataId!r}")
        for title, items in (("inputs", quantum.inputs), ("outputs", quantum.outputs)):
            console.print(f"  {title}:")
            for name, datasets in items.items():
                for dataset in datasets:
                    console.print(f"    {name} {dataset.dataId!r}")
        return
    graph = QuantumGraph.load(graph_file)
    header = graph.metadata
    console.print(
        f"{graph_file}: output run {header.get('output_run', '?')!r}, where {header.get('where', '')!r}"
    )
    print_summary(graph, console)
    if dot_file:
        ids = [quantum_id] if quantum_id is not None else None
        Path(dot_file).write_text(graph.toDot(ids=ids, depth=depth) if ids else graph.toDot())
        console.print(f"wrote {dot_file}")
