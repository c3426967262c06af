"""One quantum of a saved graph, ready to run on its own (``supertask run --quantum ID``).

Debugging a failed quantum means running just it again, with the full registry, after
its upstream quanta have run. Its inputs made by other quanta of the graph are
looked up in the registry — in the output RUN, then the graph's input collections —
so it reads exactly the registered datasets; one that is not registered is named
with the quantum that makes it, before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .quantum_graph import QuantumGraph

__all__ = ["QuantumSelectionError", "one_quantum_graph"]


class QuantumSelectionError(ValueError):
    """The quantum asked for cannot be run alone; the message says why and what to do."""


def one_quantum_graph(
    graph: QuantumGraph, quantum_id: int, registry: Any, output_run: str, collections: Sequence[str]
) -> QuantumGraph:
    """A graph of quantum ``quantum_id`` of ``graph`` alone, its inputs resolved in the registry.

    Parameters
    ----------
    graph : `QuantumGraph`
        The saved graph.
    quantum_id : `int`
        The quantum (``supertask qgraph show FILE`` lists them; failures name theirs).
    registry : `Registry`
        Where the inputs made by upstream quanta are looked up.
    output_run : `str`
        The RUN the graph writes to (searched first).
    collections : sequence of `str`
        The input collections (searched next).

    Returns
    -------
    graph : `QuantumGraph`
        For execution only: its one quantum keeps its id ``quantum_id`` (so ``graph[0]``
        is it, but its ``id`` is not 0).

    Raises
    ------
    QuantumSelectionError
        If the graph has no such quantum, or an input made by another quantum is not
        registered (its producer has not run successfully yet).
    """
    if not 0 <= quantum_id < len(graph):
        raise QuantumSelectionError(
            f"the graph has no quantum {quantum_id}: ids run from 0 to {len(graph) - 1} "
            "(supertask qgraph show FILE --quantum ID prints one)"
        )
    quantum = graph[quantum_id]
    producers = {d.key: d.creator for d in quantum.iterInputs() if d.creator is not None}
    sub = graph.subgraph([quantum_id])
    search = [output_run, *[c for c in collections if c != output_run]]
    missing = []
    for dataset in sub[0].iterInputs():
        if dataset.id is not None or dataset.key not in producers:
            continue
        try:
            found = registry.findDataset(dataset.datasetType, dataset.dataId, search)
        except KeyError:  # the dataset type was never registered: nothing made it yet
            found = None
        if found is None:
            producer = producers[dataset.key]
            missing.append(
                f"{dataset.name} {dict(dataset.dataId)} (made by quantum {producer.id}, "
                f"{producer.taskLabel} {dict(producer.dataId)})"
            )
            continue
        dataset.id, dataset.run = found.id, found.run
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise QuantumSelectionError(
            f"quantum {quantum_id} ({quantum.taskLabel} {dict(quantum.dataId)}) reads inputs that are not "
            f"registered in {search}: {'; '.join(missing[:3])}{more}. Run the quanta that make them first "
            "(--quantum ID for each, or the whole graph with --skip-existing)"
        )
    # The quantum keeps its id from the saved graph (not 0, the subgraph's numbering): the
    # executor names the quantum's log file and its failures by it, as in a run of the whole graph.
    sub.quanta[0].id = quantum_id
    return sub
