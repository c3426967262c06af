"""Property test: any graph of int/str data IDs survives a save and load, whole or one quantum at a time."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

UNITS = ("instrument", "visit", "detector", "tract", "patch", "band")
values = st.one_of(st.integers(min_value=-(2**63), max_value=2**63), st.text(max_size=12))
data_ids = st.dictionaries(st.sampled_from(UNITS), values, min_size=1, max_size=4).map(DataId)
datasets = st.builds(
    lambda name, dataId, id, run: (name, dataId, id, run),
    st.sampled_from(("a", "b", "c")),
    data_ids,
    st.one_of(st.none(), st.integers(min_value=0, max_value=2**40)),
    st.one_of(st.none(), st.sampled_from(("run/1", "run/2", "ünïcode/run"))),
)
quantum_specs = st.lists(
    st.tuples(st.sampled_from(("t1", "t2")), data_ids, st.lists(datasets, max_size=5)),
    max_size=8,
)


def build(specs) -> list[Quantum]:
    """Independent quanta (each writes its own output; inputs are never produced), so no cycles arise.

    Data IDs of inputs are arbitrary mappings: the file must keep whatever keys it is given.
    """
    quanta = []
    for i, (label, dataId, inputs) in enumerate(specs):
        q = Quantum(label, dataId)
        for name, did, id, run in inputs:
            q.addInput(Dataset(DatasetType(f"in_{name}", ("visit",), "X"), did, id=id, run=run))
        q.addOutput(Dataset(DatasetType("out", ("n",), "X"), DataId(n=i)))
        quanta.append(q)
    return quanta


def describe(q: Quantum) -> tuple:
    def flat(by_type):
        return {k: [(d.dataId.to_dict(), d.id, d.run) for d in v] for k, v in by_type.items()}

    return (q.id, q.taskLabel, q.dataId.to_dict(), flat(q.inputs), flat(q.outputs))


@settings(max_examples=40, deadline=None)
@given(quantum_specs)
def test_any_plain_graph_round_trips(specs):
    graph = QuantumGraph(build(specs))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.qgraph"
        graph.save(path)
        expected = [describe(q) for q in graph]
        assert [describe(q) for q in QuantumGraph.load(path)] == expected
        for q in graph:
            assert describe(QuantumGraph.loadQuantum(path, q.id)) == expected[q.id]
