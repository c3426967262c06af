"""`QuantumGraph`: the quanta of a pipeline run, linked through the datasets they share.

DMTN-055 section 7: the graph is "mostly defined by its constituent classes" (each
`Quantum` holds its `Dataset` inputs and outputs, each `Dataset` points back to its
``creator`` and ``consumers``); the graph adds flat access, a dependency order, ids,
and the ``.qgraph`` file (`supertask.graph.file_format`).

Why the graph re-links what it is given
---------------------------------------
A builder may hand over two equal `Dataset` objects for the output of one quantum and
the input of the next. The graph keeps one object per (type name, data ID) so that
``creator``/``consumers`` are the same whichever quantum one starts from, and so that
a million-quantum graph does not hold every intermediate dataset twice.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from os import PathLike
from typing import Any

from ..gc_pause import gc_paused
from ..quantum import Quantum
from ..repo.dataid import DataId
from ..repo.dataset import _NOT_LINKED, Dataset
from . import file_format
from .file_format import GraphFileError

__all__ = ("GraphFileError", "GraphSummary", "QuantumGraph")


class GraphSummary:
    """How many quanta per task and datasets per type a graph holds.

    ``str(summary)`` is a small table for logs and the command line.

    Attributes
    ----------
    quantaPerLabel : `dict` [`str`, `int`]
        Quanta per task label, in pipeline (first appearance) order.
    datasetsPerType : `dict` [`str`, `int`]
        Distinct datasets per dataset type name.
    initialInputs, finalOutputs : `int`
        Datasets no quantum produces; produced datasets no quantum reads.
    nQuanta, nDatasets : `int`
        Totals of the two dictionaries.
    """

    # A plain class, not a dataclass: batch jobs import this module, and ``dataclasses``
    # (with the ``inspect`` it imports) would be a good part of a job's start-up.
    __slots__ = ("quantaPerLabel", "datasetsPerType", "initialInputs", "finalOutputs", "nQuanta", "nDatasets")

    def __init__(
        self,
        quantaPerLabel: dict[str, int],
        datasetsPerType: dict[str, int],
        initialInputs: int,
        finalOutputs: int,
    ):
        self.quantaPerLabel = quantaPerLabel
        self.datasetsPerType = datasetsPerType
        self.initialInputs = initialInputs
        self.finalOutputs = finalOutputs
        self.nQuanta = sum(quantaPerLabel.values())
        self.nDatasets = sum(datasetsPerType.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GraphSummary):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "GraphSummary(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __str__(self) -> str:
        rows = [("task", "quanta")] + [(k, str(v)) for k, v in self.quantaPerLabel.items()]
        rows += [("", ""), ("dataset type", "datasets")]
        rows += [(k, str(v)) for k, v in self.datasetsPerType.items()]
        width = max(len(r[0]) for r in rows)
        count = max(len(r[1]) for r in rows)
        lines = [
            f"QuantumGraph: {self.nQuanta} quanta, {self.nDatasets} datasets "
            f"({self.initialInputs} initial inputs, {self.finalOutputs} final outputs)"
        ]
        lines += [f"  {a:<{width}}  {b:>{count}}".rstrip() for a, b in rows]
        return "\n".join(lines)


def _describe(quantum: Quantum) -> str:
    return f"{quantum.taskLabel} {quantum.dataId!r}"


class QuantumGraph:
    """A directed acyclic graph of quanta, in dependency order.

    Parameters
    ----------
    quanta : iterable of `Quantum`
        The quanta, in any order. The graph takes ownership: their dataset lists are
        rewritten to share one `Dataset` per (type name, data ID), their datasets'
        ``creator``/``consumers`` links are (re)set, and their ``id`` becomes their
        position in dependency order.
    pipelineYaml : `str`
        The pipeline as YAML text; a batch job rebuilds its tasks from it.
    configs : `dict` [`str`, `str`]
        Saved config text by task label.
    metadata : `dict`
        Free-form JSON-serialisable metadata (e.g. the data-ID expression, collections).

    Raises
    ------
    ValueError
        If two quanta produce the same dataset, or the quanta form a cycle (the message
        names the quanta and datasets of the cycle).

    Notes
    -----
    The order is a *stable* topological order: quanta keep the given order except
    where a quantum must move after the quanta producing its inputs.
    """

    def __init__(
        self,
        quanta: Iterable[Quantum],
        *,
        pipelineYaml: str = "",
        configs: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        self._describe(pipelineYaml, configs, metadata)
        self._assemble(list(quanta), shared=False)

    def _describe(
        self, pipelineYaml: str, configs: Mapping[str, str] | None, metadata: Mapping[str, Any] | None
    ) -> None:
        """Check and set what the graph records besides its quanta (see the class parameters)."""
        if not isinstance(pipelineYaml, str):
            raise TypeError(
                f"pipelineYaml must be the pipeline as YAML text (str), not {type(pipelineYaml).__name__}: "
                "a batch job rebuilds the tasks from this text"
            )
        configs = dict(configs or {})
        bad = sorted(label for label, text in configs.items() if not isinstance(text, str))
        if bad:
            raise TypeError(f"configs must map task label to saved config text (str); not so for {bad}")
        self.pipelineYaml = pipelineYaml
        self.configs: dict[str, str] = configs
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.provenance: dict[str, Any] = {}
        """Provenance read from the file this graph was loaded from (empty otherwise)."""

    @classmethod
    def _from_shared(
        cls,
        quanta: list[Quantum],
        *,
        pipelineYaml: str = "",
        configs: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        unlinked: bool = False,
    ) -> QuantumGraph:
        """A graph of quanta whose equal datasets are one object already (a builder's promise).

        The same graph as the constructor's, without its sharing pass: the datasets
        are linked by identity (`_link_by_identity`), so no data ID is hashed and no
        index of every dataset is held while linking (about 2 million datasets at 10^6
        quanta). Only for callers that guarantee the sharing, as `QuantumGraphBuilder`
        does when every task uses the default ``defineQuanta`` over a `RepoGraph`:
        two equal datasets that are distinct objects would stay distinct here.

        ``unlinked``: the caller also guarantees that no graph has linked any of the
        datasets yet (each ``consumers`` is still the shared empty list a dataset is
        made with), as `build_quantum_graph` does for the datasets of a `RepoGraph` it
        made itself. They are then linked by `_link_unlinked`, about a fifth cheaper.
        A dataset linked by another graph would keep that graph's readers here.
        """
        graph = cls.__new__(cls)
        graph._describe(pipelineYaml, configs, metadata)
        graph._assemble(quanta, shared=True, ordered=True, unlinked=unlinked)
        return graph

    def _assemble(
        self, quanta: list[Quantum], shared: bool, ordered: bool = False, unlinked: bool = False
    ) -> None:
        """Share datasets (unless ``shared``: already one object each), link, order and number.

        ``ordered`` (with ``shared``): link in one pass that also checks whether the
        quanta are in dependency order already, as the sharing pass does; ``unlinked``
        (with both): no dataset was linked before (see `_from_shared`).
        """
        with gc_paused():
            if shared and ordered:
                link = _link_unlinked if unlinked else _link_by_identity
                self._byType, in_order = link(quanta)
            elif shared:
                self._byType = _datasets_by_type(quanta)
                _link(quanta)
                in_order = False
            else:
                self._byType, in_order = _share_and_link(quanta)
            self._datasetSets: dict[str, set[Dataset]] | None = None
            # Quanta whose producers all come before them (a builder's, task by task) keep
            # their order, which `_dependency_order` would only confirm at some cost.
            self._quanta = quanta if in_order else _dependency_order(quanta)
        # Each quantum's id is its position: set in one C-level pass (a million quanta at 10^6).
        deque(map(setattr, self._quanta, repeat("id"), range(len(self._quanta))), maxlen=0)

    # ----------------------------------------------------------------------------------- access

    def __len__(self) -> int:
        return len(self._quanta)

    def __iter__(self) -> Iterator[Quantum]:
        return iter(self._quanta)

    def __getitem__(self, id: int) -> Quantum:
        if not 0 <= id < len(self._quanta):
            raise IndexError(f"no quantum {id}: this graph holds quanta 0..{len(self._quanta) - 1}")
        return self._quanta[id]

    def __repr__(self) -> str:
        return f"<QuantumGraph: {len(self)} quanta, {sum(len(s) for s in self._byType.values())} datasets>"

    @property
    def quanta(self) -> list[Quantum]:
        """The quanta in dependency order (``quanta[i].id == i``)."""
        return self._quanta

    @property
    def datasets(self) -> dict[str, set[Dataset]]:
        """Every dataset the graph reads or writes, by dataset type name."""
        if self._datasetSets is None:
            # Built on first use: hashing two million datasets into sets is a few seconds
            # that preflight, saving and batch jobs never need.
            self._datasetSets = {name: set(datasets) for name, datasets in self._byType.items()}
        return self._datasetSets

    def _quantum(self, q: Quantum | int) -> Quantum:
        return self[q] if isinstance(q, int) else q

    def parents(self, quantum: Quantum | int) -> list[Quantum]:
        """The quanta producing an input of ``quantum`` (a quantum or its id), by id."""
        found = {
            _id(d.creator): d.creator for d in self._quantum(quantum).iterInputs() if d.creator is not None
        }
        return [found[k] for k in sorted(found)]

    def children(self, quantum: Quantum | int) -> list[Quantum]:
        """The quanta reading an output of ``quantum`` (a quantum or its id), by id."""
        found = {_id(c): c for d in self._quantum(quantum).iterOutputs() for c in d.consumers}
        return [found[k] for k in sorted(found)]

    def _unique_datasets(self) -> Iterator[Dataset]:
        seen: set[int] = set()
        for quantum in self._quanta:
            for d in quantum.iterInputs():
                if id(d) not in seen:
                    seen.add(id(d))
                    yield d
            for d in quantum.iterOutputs():
                if id(d) not in seen:
                    seen.add(id(d))
                    yield d

    def initialInputs(self) -> list[Dataset]:
        """Datasets no quantum produces: they must exist before the run (in quantum order)."""
        return [d for d in self._unique_datasets() if d.creator is None]

    def finalOutputs(self) -> list[Dataset]:
        """Datasets produced and read by no quantum of this graph (in quantum order)."""
        return [d for d in self._unique_datasets() if d.creator is not None and not d.consumers]

    def quantaByLabel(self) -> dict[str, list[Quantum]]:
        """Quanta grouped by task label, labels in order of first appearance."""
        result: dict[str, list[Quantum]] = {}
        for quantum in self._quanta:
            result.setdefault(quantum.taskLabel, []).append(quantum)
        return result

    def summary(self) -> GraphSummary:
        """Counts of quanta per task label and datasets per type."""
        initial = final = 0
        for d in self._unique_datasets():
            if d.creator is None:
                initial += 1
            elif not d.consumers:
                final += 1
        return GraphSummary(
            quantaPerLabel={k: len(v) for k, v in self.quantaByLabel().items()},
            datasetsPerType={k: len(v) for k, v in self._byType.items()},
            initialInputs=initial,
            finalOutputs=final,
        )

    # ----------------------------------------------------------------------------------- derived graphs

    def subgraph(self, ids: Iterable[int]) -> QuantumGraph:
        """A new graph of copies of the quanta ``ids`` (renumbered ``0..m-1`` in the same order).

        Copies, because a graph owns the links of its datasets: the datasets of the
        subgraph point only to quanta of the subgraph.
        """
        copies: dict[tuple[str, DataId], Dataset] = {}

        def copy(d: Dataset) -> Dataset:
            c = copies.get(d.key)
            if c is None:
                c = copies[d.key] = Dataset(d.datasetType, d.dataId, id=d.id, run=d.run)
            return c

        selected = [self[i] for i in sorted(set(ids))]
        quanta = [
            Quantum(
                q.taskLabel,
                q.dataId,
                {k: [copy(d) for d in v] for k, v in q.inputs.items()},
                {k: [copy(d) for d in v] for k, v in q.outputs.items()},
                task=q.task,
            )
            for q in selected
        ]
        return QuantumGraph(
            quanta, pipelineYaml=self.pipelineYaml, configs=self.configs, metadata=dict(self.metadata)
        )

    def toDot(self, ids: Iterable[int] | None = None, depth: int = 1) -> str:
        """Graphviz text of the graph: boxes for quanta, ellipses for datasets.

        Parameters
        ----------
        ids : iterable of `int`, optional
            Quanta to centre on; all quanta when None (only sensible for small graphs).
        depth : `int`
            With ``ids``, also include quanta up to this many parent/child steps away.
        """
        if ids is None:
            chosen = list(self._quanta)
        else:
            frontier = {_id(self[i]) for i in ids}
            selected = set(frontier)
            for _ in range(max(0, depth)):
                frontier = {
                    _id(n)
                    for i in frontier
                    for n in self.parents(i) + self.children(i)
                    if n.id not in selected
                }
                selected |= frontier
            chosen = [self._quanta[i] for i in sorted(selected)]
        lines = ["digraph QuantumGraph {", "  rankdir=LR;"]
        names: dict[tuple[str, DataId], str] = {}

        def dataset_node(d: Dataset) -> str:
            name = names.get(d.key)
            if name is None:
                name = names[d.key] = f"d{len(names)}"
                lines.append(
                    f'  {name} [shape=ellipse, label="{_escape(d.name)}\\n{_escape(repr(d.dataId))}"];'
                )
            return name

        for q in chosen:
            lines.append(
                f'  q{q.id} [shape=box, style=filled, fillcolor="#dde8f5", '
                f'label="{_escape(q.taskLabel)} #{q.id}\\n{_escape(repr(q.dataId))}"];'
            )
            for d in q.iterInputs():
                lines.append(f"  {dataset_node(d)} -> q{q.id};")
            for d in q.iterOutputs():
                lines.append(f"  q{q.id} -> {dataset_node(d)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    # ----------------------------------------------------------------------------------- files

    def save(self, path: str | PathLike[str], *, commandLine: list[str] | None = None) -> None:
        """Write the graph to a ``.qgraph`` file (atomically: written aside, then renamed).

        Parameters
        ----------
        path : path-like
            Destination file.
        commandLine : `list` [`str`], optional
            The command to record as provenance; ``sys.argv`` by default. Passwords
            in it are masked; the environment is never recorded.
        """
        from ..pipeline.yaml_io import pipeline_json
        from .provenance import collect_provenance

        header = {
            "pipelineYaml": self.pipelineYaml,
            # the same pipeline for batch jobs, which then need no YAML parser (None if JSON cannot hold it)
            "pipelineJson": pipeline_json(self.pipelineYaml) if self.pipelineYaml else None,
            "configs": self.configs,
            "metadata": self.metadata,
            "provenance": collect_provenance(commandLine),
            # counts an operator can inspect with readHeader, without loading the graph
            "summary": {
                "quantaPerLabel": {k: len(v) for k, v in self.quantaByLabel().items()},
                "datasetsPerType": {k: len(v) for k, v in self._byType.items()},
            },
        }
        file_format.write_graph(path, self._quanta, header)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> QuantumGraph:
        """Read a whole graph written by `save`.

        Raises
        ------
        GraphFileError
            If the file is truncated, corrupted or of an unsupported format version.
        """
        header = file_format.read_header(path)
        try:
            pipelineYaml, configs, metadata = header["pipelineYaml"], header["configs"], header["metadata"]
        except KeyError as err:
            raise GraphFileError(f"{path}: the header has no {err.args[0]!r} entry") from None
        graph = cls([], pipelineYaml=pipelineYaml, configs=configs, metadata=metadata)
        graph.provenance = dict(header.get("provenance") or {})
        # the reader shares equal datasets already: skip the constructor's sharing pass
        graph._assemble(file_format.read_quanta(path), shared=True)
        return graph

    @staticmethod
    def loadQuantum(path: str | PathLike[str], id: int) -> Quantum:
        """Read quantum ``id`` of a graph file without reading the rest of the graph."""
        return file_format.read_quantum(path, id)

    @staticmethod
    def loadQuanta(path: str | PathLike[str], ids: Iterable[int]) -> list[Quantum]:
        """Read the quanta ``ids`` of a graph file, in the order given (repeated ids once).

        Datasets shared between them are one object, and a dataset produced by one of
        them and read by another has its ``creator``/``consumers`` set (so a job running
        a cluster of quanta knows which inputs it makes itself).
        """
        quanta = file_format.read_quanta(path, list(dict.fromkeys(ids)))  # each id once
        _link(quanta)
        return quanta

    @staticmethod
    def readHeader(path: str | PathLike[str]) -> dict[str, Any]:
        """The header of a graph file: format version, pipeline, configs, provenance, metadata."""
        return file_format.read_header(path)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _share_and_link(quanta: list[Quantum]) -> tuple[dict[str, list[Dataset]], bool]:
    """Make equal datasets one object across ``quanta`` and link them.

    Returns the distinct datasets by type name, and whether every quantum comes after
    the producers of its inputs (then the given order is already the dependency order).

    The first object seen for a (type name, data ID) is kept (taking the ``id``/``run``
    of a resolved duplicate); the others are replaced in the quanta's lists. A kept
    object is recognised afterwards by the type of its new ``consumers`` list (a list
    subclass made for this call), so only the first sighting of each object pays for
    hashing its data ID: about half of the
    look-ups of a builder's graph, where the inputs are already the producers' output
    objects. Its ``creator`` and ``consumers`` are reset at that first sighting and set
    in quantum order, as `_link` sets them: one walk over the ~4 million dataset
    references of a 10^6-quantum build instead of three. The order check comes with
    it: the quanta are out of order exactly when a dataset gets its creator after a
    quantum (possibly its creator itself) was recorded as reading it.

    Raises
    ------
    ValueError
        If two quanta produce the same dataset.
    """
    canonical: dict[str, dict[DataId, Dataset]] = {}
    in_order = True

    class Readers(list[Quantum]):
        """The consumers list of a dataset kept by this call: its type marks the dataset as seen.

        A type made per call, so that datasets linked by an earlier graph are not taken
        for kept ones (a set of their ids took 10 MB at 10^5 quanta, 100 MB at 10^6).
        """

        __slots__ = ()

    def share(datasets: list[Dataset]) -> None:
        for j, d in enumerate(datasets):
            if type(d.consumers) is Readers:
                continue
            name = d.datasetType.name
            index = canonical.get(name)
            if index is None:
                index = canonical[name] = {}
            c = index.setdefault(d.dataId, d)
            if c is d:
                d.creator = None
                d.consumers = Readers()
            else:
                datasets[j] = c
                if c.id is None and d.id is not None:
                    c.id, c.run = d.id, d.run

    for quantum in quanta:
        for datasets in quantum.inputs.values():
            share(datasets)
        for datasets in quantum.outputs.values():
            share(datasets)
        for datasets in quantum.inputs.values():
            for d in datasets:
                d.consumers.append(quantum)
        for datasets in quantum.outputs.values():
            for d in datasets:
                if d.creator is not None and d.creator is not quantum:
                    raise _two_producers(d, quantum)
                if d.consumers:
                    in_order = False  # read by this quantum or an earlier one
                d.creator = quantum
    return {name: list(index.values()) for name, index in canonical.items()}, in_order


def _link_by_identity(quanta: list[Quantum]) -> tuple[dict[str, list[Dataset]], bool]:
    """`_share_and_link` for quanta whose equal datasets are one object already.

    The same result (distinct datasets by type name in order of first sighting, links
    set in quantum order, whether the quanta are in dependency order), in one walk
    that recognises a dataset seen before by the type of its ``consumers`` list, as
    `_share_and_link` does, instead of looking its data ID up in an index.

    Raises
    ------
    ValueError
        If two quanta produce the same dataset.
    """
    by_type: dict[str, list[Dataset]] = {}
    in_order = True

    class Readers(list[Quantum]):
        """The consumers list of a dataset linked by this call (see `_share_and_link`)."""

        __slots__ = ()

    # A dataset's first sighting (its consumers not yet a Readers list) is handled inline,
    # not in a function called once per distinct dataset (two million calls at 10^6).
    get_seen = by_type.get
    for quantum in quanta:
        # A reader is added with ``+=``, which sizes an empty list for exactly one
        # entry (``append`` would make room for four): most datasets have one reader.
        reader = (quantum,)
        for datasets in quantum.inputs.values():
            for d in datasets:
                consumers = d.consumers
                if type(consumers) is not Readers:
                    d.creator = None
                    d.consumers = Readers(reader)
                    name = d.datasetType.name
                    seen = get_seen(name)
                    if seen is None:
                        by_type[name] = [d]
                    else:
                        seen.append(d)
                elif consumers:
                    consumers.append(quantum)
                else:
                    consumers += reader
        for datasets in quantum.outputs.values():
            for d in datasets:
                if type(d.consumers) is not Readers:
                    d.consumers = Readers()
                    name = d.datasetType.name
                    seen = get_seen(name)
                    if seen is None:
                        by_type[name] = [d]
                    else:
                        seen.append(d)
                else:
                    if d.creator is not None and d.creator is not quantum:
                        raise _two_producers(d, quantum)
                    if d.consumers:
                        in_order = False  # read by this quantum or an earlier one
                d.creator = quantum
    return by_type, in_order


def _link_unlinked(quanta: list[Quantum]) -> tuple[dict[str, list[Dataset]], bool]:
    """`_link_by_identity` for datasets no graph has linked yet (see `QuantumGraph._from_shared`).

    The same result. A dataset no graph has linked still has the shared empty
    ``consumers`` list it was made with (and no ``creator``), so that list itself marks
    a first sighting: each dataset gets a plain list of its own (a list display, sized
    for its first reader) instead of a list of a type made per call, and no type is
    looked up per dataset reference (about four million at 10^6 quanta).

    Raises
    ------
    ValueError
        If two quanta produce the same dataset.
    """
    by_type: dict[str, list[Dataset]] = {}
    in_order = True
    unseen = _NOT_LINKED
    get_seen = by_type.get
    for quantum in quanta:
        reader = (quantum,)
        for datasets in quantum.inputs.values():
            for d in datasets:
                consumers = d.consumers
                if consumers is unseen:
                    d.consumers = [quantum]
                    name = d.datasetType.name
                    seen = get_seen(name)
                    if seen is None:
                        by_type[name] = [d]
                    else:
                        seen.append(d)
                elif consumers:
                    consumers.append(quantum)
                else:
                    consumers += reader  # (an output's first reader: sized for one, as above)
        for datasets in quantum.outputs.values():
            for d in datasets:
                if d.consumers is unseen:
                    d.consumers = []
                    name = d.datasetType.name
                    seen = get_seen(name)
                    if seen is None:
                        by_type[name] = [d]
                    else:
                        seen.append(d)
                else:
                    if d.creator is not None and d.creator is not quantum:
                        raise _two_producers(d, quantum)
                    if d.consumers:
                        in_order = False  # read by this quantum or an earlier one
                d.creator = quantum
    return by_type, in_order


def _two_producers(dataset: Dataset, quantum: Quantum) -> ValueError:
    """The error for ``dataset``, made by its creator, being an output of ``quantum`` too."""
    creator = dataset.creator
    assert creator is not None
    return ValueError(
        f"{dataset!r} is produced by two quanta: {_describe(creator)} and {_describe(quantum)}; "
        "each dataset must have one producer"
    )


def _datasets_by_type(quanta: list[Quantum]) -> dict[str, list[Dataset]]:
    """The distinct datasets of ``quanta`` by type name, when equal datasets are already one object."""
    seen: set[int] = set()
    result: dict[str, list[Dataset]] = {}
    for quantum in quanta:
        for by_type in (quantum.inputs, quantum.outputs):
            for name, datasets in by_type.items():
                for d in datasets:
                    if id(d) not in seen:
                        seen.add(id(d))
                        result.setdefault(name, []).append(d)
    return result


def _link(quanta: list[Quantum]) -> None:
    """Set ``creator``/``consumers`` of the datasets of ``quanta`` from scratch."""
    for quantum in quanta:
        for by_type in (quantum.inputs, quantum.outputs):
            for datasets in by_type.values():
                for d in datasets:
                    d.creator = None
                    d.consumers = []
    for quantum in quanta:
        for datasets in quantum.outputs.values():
            for d in datasets:
                if d.creator is not None and d.creator is not quantum:
                    raise _two_producers(d, quantum)
                d.creator = quantum
    for quantum in quanta:
        for datasets in quantum.inputs.values():
            for d in datasets:
                d.consumers.append(quantum)


def _dependency_order(quanta: list[Quantum]) -> list[Quantum]:
    """A stable topological order of ``quanta`` (linked datasets required)."""
    position = {id(q): i for i, q in enumerate(quanta)}
    parents: list[set[int]] = []
    in_order = True
    for i, quantum in enumerate(quanta):
        ps = {position[id(d.creator)] for ds in quantum.inputs.values() for d in ds if d.creator is not None}
        if in_order and ps and max(ps) >= i:
            in_order = False
        parents.append(ps)
    if in_order:
        return quanta
    remaining = [len(ps) for ps in parents]
    children: list[list[int]] = [[] for _ in quanta]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    ready = [i for i, n in enumerate(remaining) if n == 0]
    heapq.heapify(ready)
    order: list[Quantum] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(quanta[i])
        for c in children[i]:
            remaining[c] -= 1
            if remaining[c] == 0:
                heapq.heappush(ready, c)
    if len(order) < len(quanta):
        raise ValueError(_cycle_message(quanta, parents, remaining))
    return order


def _cycle_message(quanta: list[Quantum], parents: list[set[int]], remaining: list[int]) -> str:
    """Find one cycle among the quanta Kahn's algorithm could not order, and describe it."""
    blocked = {i for i, n in enumerate(remaining) if n > 0}
    start = min(blocked)
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(p for p in parents[node] if p in blocked)
    cycle = path[seen[node] :][::-1]  # walked child -> parent; report producer -> consumer
    steps = []
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        via = next(d for d in quanta[b].iterInputs() if d.creator is quanta[a])
        steps.append(f"{_describe(quanta[a])} --{via.name} {via.dataId!r}--> ")
    return (
        "the quanta form a cycle, so they cannot be ordered: "
        + "".join(steps)
        + _describe(quanta[cycle[0]])
        + "; check the pipeline's dataset names (a task must not read what it or a later task writes)"
    )


def _id(quantum: Quantum) -> int:
    """The id of a quantum of a graph (a graph numbers every quantum it holds)."""
    assert quantum.id is not None, f"{quantum!r} belongs to no graph"
    return quantum.id
