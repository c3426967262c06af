"""Retargeting a saved graph to another output RUN.

A graph names the RUN its outputs go to (``metadata["output_run"]``); batch jobs read
it from the file's header. Running the same plan again into a new RUN — after a
failed attempt whose partial outputs should stay where they are, or to compare two
software versions on the same quanta — needs no new planning: only the output RUN
changes. Inputs found in the repository at planning time keep their RUNs, so they are
read where they were found.
"""

from __future__ import annotations

from typing import Any

from .quantum_graph import QuantumGraph

__all__ = ["retarget", "check_output_run"]


def retarget(graph: QuantumGraph, output_run: str) -> QuantumGraph:
    """Make ``graph`` write to ``output_run``; returns the same graph.

    ``metadata["retargeted_from"]`` keeps the RUN it was planned for (the first one,
    if it was retargeted before).

    Raises
    ------
    ValueError
        If ``output_run`` is empty.
    """
    if not output_run:
        raise ValueError("retargeting a graph needs the name of the new output RUN")
    planned = graph.metadata.get("output_run")
    if planned == output_run:
        return graph
    if planned:
        graph.metadata.setdefault("retargeted_from", planned)
    graph.metadata["output_run"] = output_run
    return graph


def check_output_run(registry: Any, graph: QuantumGraph, output_run: str) -> None:
    """Refuse to write ``graph`` into an existing RUN of another pipeline or config, or over its outputs.

    The checks planning makes for its own output RUN (`build_quantum_graph`), for a
    graph that is sent to a RUN after it was planned.

    Raises
    ------
    RunConflictError
        The RUN was made with another pipeline or task configs.
    OutputExistsError
        Outputs of the graph are registered in the RUN already.
    """
    from ..execution.existing_outputs import OutputPolicy, classify_existing
    from ..repo.registry import RunConflictError
    from ..repo.registry.run_provenance import mismatch_message

    try:
        stored = registry.getRunProvenance(output_run)
    except KeyError:
        return  # a new RUN: nothing is in the way
    refusal = mismatch_message(output_run, stored, {"pipeline": graph.pipelineYaml, "configs": graph.configs})
    if refusal:
        raise RunConflictError(refusal)
    classify_existing(graph, registry, output_run, OutputPolicy())
