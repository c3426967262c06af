"""``supertask run``: plan (or load) a QuantumGraph and run it on this machine."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import click

from .request_options import (
    command_line,
    handle_errors,
    plan_options,
    plan_request,
    planning_options_given,
    request_options,
    run_options,
    split_collections,
)

#: exit codes of `supertask run`
EXIT_OK, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 130


class _Progress:
    """A rich progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, interactive: bool):
        self.total = total
        self.interactive = interactive
        self.start = time.monotonic()
        self.last_line = 0.0
        self.last_detail = ""
        self._bar = None
        if interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]quanta"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("run", total=total, detail="")

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, tally: dict[str, int]) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = tally["done"] / elapsed
        detail = (
            f"done {tally['done']} failed {tally['failed']} running {tally['running']} "
            f"remaining {tally['remaining']} ({rate:.1f}/s)"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=tally["done"] + tally["failed"], detail=detail)
        elif detail.split(" (")[0] != self.last_detail and (
            time.monotonic() - self.last_line > 5 or tally["remaining"] + tally["running"] == 0
        ):
            self.last_line = time.monotonic()
            self.last_detail = detail.split(" (")[0]
            click.echo(f"[{elapsed:7.1f} s] {detail}", err=True)


def print_result(result: Any, console: Any) -> None:
    """Summary table per label, then each failure with the tail of its log."""
    from rich.table import Table

    from ..execution.executor import STATES

    table = Table(title=f"output run {result.output_run}: {result.seconds:.1f} s")
    table.add_column("task label")
    for state in STATES:
        table.add_column(state.replace("_", " "), justify="right")
    for label, counts in result.counts.items():
        table.add_row(label, *(str(counts[s]) if counts[s] else "" for s in STATES))
    console.print(table)
    direct = [f for f in result.failures if not f.reason.startswith("not run: upstream")]
    for failure in direct[:20]:
        console.print(
            f"[red]FAILED[/red] {failure.label} {failure.dataId!r} (quantum {failure.quantum_id}): "
            f"{failure.reason}"
        )
        if failure.log_file:
            console.print(f"  log: {failure.log_file}")
        if failure.log_tail:
            console.print("  " + failure.log_tail.replace("\n", "\n  "), markup=False, highlight=False)
    if len(direct) > 20:
        console.print(f"... and {len(direct) - 20} more failures")
    skipped = len(result.failures) - len(direct)
    if skipped:
        console.print(f"{skipped} quanta not run because an upstream quantum failed")


@click.command("run")
@click.argument("repo", type=click.Path(exists=True, file_okay=False))
@request_options
@click.option(
    "-g",
    "--qgraph",
    "graph_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Run a saved graph instead of planning one; with -o RUN, into RUN instead of the graph's own "
    "(the saved graph retargeted; the file is left as it is).",
)
@click.option(
    "--quantum",
    "quantum_id",
    type=int,
    default=None,
    metavar="ID",
    help="With --qgraph: run this one quantum alone (for debugging a failure), its inputs read from "
    "the registry; the quanta that make them must have run.",
)
@click.option("-j", "--processes", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--timeout", type=float, default=None, help="Seconds a quantum may run before it is killed.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first failure.")
@click.option(
    "--save-qgraph",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also save the planned graph to this file.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a self-contained HTML run report (timeline, memory, failures) to this file.",
)
@handle_errors
def run(
    repo: str,
    pipeline_file: str | None,
    inputs: tuple[str, ...],
    output_run: str | None,
    graph_file: str | None,
    processes: int,
    timeout: float | None,
    fail_fast: bool,
    save_qgraph: str | None,
    html_file: str | None,
    quantum_id: int | None,
    **request: Any,
) -> None:
    """Run a pipeline (or a saved graph) over REPO with N processes.

    A saved graph (--qgraph FILE) runs into the RUN it was planned for, or into another
    one given with -o RUN (retargeted: the same quanta, outputs written to RUN);
    --quantum ID runs one of its quanta alone.
    """
    from rich.console import Console

    from ..execution import run_graph
    from ..graph.quantum_graph import QuantumGraph
    from ..repo.butler import Butler

    console = Console(stderr=True)
    if html_file:
        from ..report.html import check_writable

        problem = check_writable(html_file)
        if problem:
            raise click.BadParameter(problem, param_hint="--html")
    # checked before anything is planned or loaded: a bad -j or --timeout fails at once
    options = run_options(request, processes=processes, timeout=timeout, fail_fast=fail_fast)
    if graph_file:
        if pipeline_file:
            raise click.UsageError("give either --qgraph FILE or -p PIPELINE, not both")
        planning = planning_options_given(request)
        if planning:
            raise click.UsageError(
                f"{', '.join(planning)} select what to plan; a saved graph is planned already: "
                "plan again with supertask qgraph -p FILE[#NAME] and these options, or drop them"
            )
        graph = QuantumGraph.load(graph_file)
        if output_run:
            from ..graph.retarget import retarget

            retarget(graph, output_run)
        output_run = graph.metadata.get("output_run")
        collections = split_collections(inputs) or list(graph.metadata.get("input_collections", []))
        butler = Butler(repo, collections=collections or None)
        if quantum_id is not None:
            from ..graph.one_quantum import QuantumSelectionError, one_quantum_graph

            try:
                graph = one_quantum_graph(graph, quantum_id, butler.registry, output_run, collections)
            except QuantumSelectionError as err:
                raise click.ClickException(str(err)) from None
            quantum = graph.quanta[0]
            console.print(f"quantum {quantum_id} of {graph_file}: {quantum.taskLabel} {quantum.dataId!r}")
    else:
        if quantum_id is not None:
            raise click.UsageError("--quantum ID runs one quantum of a saved graph: give --qgraph FILE too")
        if not pipeline_file:
            raise click.UsageError("give a pipeline (-p PIPELINE.yaml) or a saved graph (--qgraph FILE)")
        plan = plan_options(output_run, inputs, request)
        butler, graph = plan_request(repo, plan, request, pipeline_file=pipeline_file, console=console)
        if save_qgraph:
            graph.save(save_qgraph)
    console.print(f"running {len(graph)} quanta with {processes} process(es) into {output_run!r}")
    with _Progress(len(graph), interactive=sys.stderr.isatty()) as progress:
        result = run_graph(butler, graph, output_run, dataclasses.replace(options, progress=progress))
    # A batch log or a pipe gets the full table rather than one squeezed to 80 columns.
    print_result(result, Console(width=None if sys.stdout.isatty() else 130))
    if html_file:
        from ..report import write_html
        from ..report.execution import summary_from_execution

        summary = summary_from_execution(
            result, graph, repo=repo, processes=processes, command_line=command_line()
        )
        console.print(f"run report: {write_html(summary, html_file)}")
    if result.interrupted:
        console.print("interrupted: rerun with --skip-existing to finish")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_OK if result.ok else EXIT_FAILURES)
