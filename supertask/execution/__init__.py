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
    from ..options import PlanRequest, RunOptions
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
    options: RunOptions | None = None,
    **keywords: Any,
) -> ExecutionResult:
    """Run an already planned `QuantumGraph` against ``butler``'s repository.

    Outputs already registered in the output run are never replaced: quanta whose outputs
    all exist are skipped with ``skip_existing`` / ``extend_run`` (or found in
    ``skip_existing_in``), outputs in the way are unregistered first with
    ``clobber_outputs``, and otherwise the run is refused (`OutputExistsError`) before
    anything is written; a RUN recorded with another pipeline or config is refused
    (`RunConflictError`).

    Parameters
    ----------
    butler : `Butler`
        The repository.
    graph : `QuantumGraph`
        The plan.
    output_run : `str`, optional
        The RUN to write to (default: the one the graph was planned for).
    options : `RunOptions`, optional
        How to run (processes, timeout, fail-fast, output policy, progress).
    **keywords
        Instead of ``options``: its fields as keyword arguments (``processes=2, ...``).

    Raises
    ------
    OptionsError
        An option's value cannot be honoured.
    """
    from ..options import RunOptions, from_keywords

    options = from_keywords(RunOptions, options, keywords, "run_graph")
    output_run = output_run or graph.metadata.get("output_run")
    if not output_run:
        raise ValueError("no output run: pass output_run or plan the graph with one")
    provenance = {
        "pipeline": graph.pipelineYaml,
        "configs": graph.configs,
        "versions": graph.metadata.get("versions", {}),
        "command_line": options.command_line or graph.metadata.get("command_line", ""),
        "where": graph.metadata.get("where", ""),
        "input_collections": graph.metadata.get("input_collections", []),
    }
    from .executor import MultiprocessExecutor

    return MultiprocessExecutor(butler, graph, output_run, options, provenance=provenance).execute()


def run_pipeline(
    pipeline: Any,
    repo: Any,
    request: PlanRequest | None = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> ExecutionResult:
    """Plan and run a pipeline on this machine in one call.

    Parameters
    ----------
    pipeline : `Pipeline` or path
        The pipeline object, or a pipeline YAML file.
    repo : `Butler` or path
        The repository.
    request : `PlanRequest`, optional
        What to plan (where, bind, input collections, output run, ...).
    options : `RunOptions`, optional
        How to run it (processes, timeout, fail-fast, ...); default: one process, with
        the request's output policy.
    **keywords
        Instead of ``request`` and ``options``: the fields of both as keyword arguments
        (``where=..., input_collections=[...], output_run=..., processes=2``); the
        output-policy ones (``skip_existing``, ``skip_existing_in``, ``extend_run``,
        ``clobber_outputs``) apply to planning and to the run.

    Returns
    -------
    result : `ExecutionResult`
        Per-label counts, failures (with log tails) and the output run.

    Raises
    ------
    OptionsError
        An option's value or a combination of options cannot be honoured.
    """
    from ..graph.builder import build_quantum_graph
    from ..options import RunOptions, policy_keywords, split_keywords
    from ..pipeline import Pipeline
    from ..repo.butler import Butler

    if keywords:
        if request is not None or options is not None:
            raise TypeError(
                f"run_pipeline() got option objects and the keyword options {sorted(keywords)}: give one of the two"
            )
        request, options = split_keywords(keywords, "run_pipeline")
    if request is None:
        raise TypeError("run_pipeline() needs a PlanRequest or the keyword options (at least output_run=...)")
    if options is None:
        options = RunOptions(**policy_keywords(request))
    if isinstance(pipeline, (str, Path)):
        pipeline = Pipeline.fromFile(pipeline)
    butler = (
        repo
        if hasattr(repo, "registry")
        else Butler(repo, collections=list(request.input_collections) or None)
    )
    graph, _ = build_quantum_graph(pipeline, butler, request)
    return run_graph(butler, graph, request.output_run, options)
