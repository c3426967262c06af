"""Single-node execution: the multiprocessing executor and the one-call API for notebooks.

``run_pipeline`` is the seed's notebook entry point (DMTN-055 section 9.4): plan and run
a pipeline on this machine in one call and get a result object back::

    from supertask import run_pipeline
    result = run_pipeline("examples/demo_pipeline.yaml", "demo_run/repo",
                          where="tract = 0", input_collections=["DemoCam/defaults"],
                          output_run="u/me/coadds", processes=2)
    result.counts["assembleCoadd"]["succeeded"]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executor import ExecutionResult, MultiprocessExecutor, QuantumFailure, default_process_count

#: names re-exported lazily from `executor` (PEP 562): a batch job imports `single_quantum`
#: through this package and must not pay for the executor's multiprocessing imports
_FROM_EXECUTOR = ("ExecutionResult", "MultiprocessExecutor", "QuantumFailure", "default_process_count")


def __getattr__(name: str) -> Any:
    if name in _FROM_EXECUTOR:
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ExecutionResult",
    "MultiprocessExecutor",
    "QuantumFailure",
    "default_process_count",
    "run_pipeline",
    "run_graph",
]


def run_graph(
    butler: Any,
    graph: Any,
    output_run: str | None = None,
    *,
    processes: int = 1,
    timeout: float | None = None,
    fail_fast: bool = False,
    skip_existing: bool = False,
    progress: Any = None,
    command_line: str = "",
    skip_existing_in: list[str] | tuple[str, ...] = (),
    extend_run: bool = False,
    clobber_outputs: bool = False,
) -> ExecutionResult:
    """Run an already planned `QuantumGraph` against ``butler``'s repository.

    Outputs already registered in the output run are never replaced: quanta whose outputs
    all exist are skipped with ``skip_existing`` / ``extend_run`` (or found in
    ``skip_existing_in``), outputs in the way are unregistered first with
    ``clobber_outputs``, and otherwise the run is refused (`OutputExistsError`) before
    anything is written; a RUN recorded with another pipeline or config is refused
    (`RunConflictError`).
    """
    output_run = output_run or graph.metadata.get("output_run")
    if not output_run:
        raise ValueError("no output run: pass output_run or plan the graph with one")
    provenance = {
        "pipeline": graph.pipelineYaml,
        "configs": graph.configs,
        "versions": graph.metadata.get("versions", {}),
        "command_line": command_line or graph.metadata.get("command_line", ""),
        "where": graph.metadata.get("where", ""),
        "input_collections": graph.metadata.get("input_collections", []),
    }
    from .executor import MultiprocessExecutor

    executor = MultiprocessExecutor(
        butler,
        graph,
        output_run,
        processes=processes,
        timeout=timeout,
        fail_fast=fail_fast,
        skip_existing=skip_existing,
        progress=progress,
        provenance=provenance,
        skip_existing_in=tuple(skip_existing_in),
        extend_run=extend_run,
        clobber_outputs=clobber_outputs,
    )
    return executor.execute()


def run_pipeline(
    pipeline: Any,
    repo: Any,
    *,
    where: str | None = None,
    bind: dict[str, Any] | None = None,
    input_collections: list[str] | None = None,
    output_run: str,
    processes: int = 1,
    timeout: float | None = None,
    fail_fast: bool = False,
    skip_existing: bool = False,
    max_rows: int | None = None,
    skip_existing_in: list[str] | tuple[str, ...] = (),
    extend_run: bool = False,
    clobber_outputs: bool = False,
) -> ExecutionResult:
    """Plan and run a pipeline on this machine in one call.

    Parameters
    ----------
    pipeline : `Pipeline` or path
        The pipeline object, or a pipeline YAML file.
    repo : `Butler` or path
        The repository.
    where, bind : optional
        The data-ID expression and its bind values.
    input_collections : `list` [`str`]
        Collections searched for the overall inputs.
    output_run : `str`
        The RUN collection to write to.
    processes : `int`
        Worker processes.
    skip_existing, skip_existing_in, extend_run, clobber_outputs : optional
        What to do with outputs already registered in ``output_run`` (see `run_graph`;
        by default the run is refused rather than replace them).

    Returns
    -------
    result : `ExecutionResult`
        Per-label counts, failures (with log tails) and the output run.
    """
    from ..graph.builder import DEFAULT_MAX_ROWS, build_quantum_graph
    from ..pipeline import Pipeline
    from ..repo.butler import Butler

    if isinstance(pipeline, (str, Path)):
        pipeline = Pipeline.fromFile(pipeline)
    butler = repo if hasattr(repo, "registry") else Butler(repo, collections=input_collections)
    graph, _ = build_quantum_graph(
        pipeline,
        butler,
        where=where,
        bind=bind,
        input_collections=input_collections,
        output_run=output_run,
        skip_existing=skip_existing,
        skip_existing_in=skip_existing_in,
        extend_run=extend_run,
        clobber_outputs=clobber_outputs,
        max_rows=max_rows if max_rows is not None else DEFAULT_MAX_ROWS,
    )
    return run_graph(
        butler,
        graph,
        output_run,
        processes=processes,
        timeout=timeout,
        fail_fast=fail_fast,
        skip_existing=skip_existing,
        skip_existing_in=skip_existing_in,
        extend_run=extend_run,
        clobber_outputs=clobber_outputs,
    )
