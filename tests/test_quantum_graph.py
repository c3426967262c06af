"""QuantumGraph: ordering, shared datasets, links, cycles, summary, subgraph and Graphviz output."""

from __future__ import annotations

import random
from functools import partial

import pytest

from supertask.graph.quantum_graph import GraphSummary, QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

RAW = DatasetType("raw", ("instrument", "exposure", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
WARP = DatasetType("warp", ("instrument", "visit", "skymap", "tract", "patch"), "NumpyArray")
COADD = DatasetType("coadd", ("skymap", "tract", "patch"), "NumpyArray")

VISITS = (1, 2, 3)
DETECTORS = (0, 1)


def patches_of(visit: int) -> tuple[int, int]:
    """Visit v covers patches v and v + 1, so patches 2 and 3 gather two visits."""
    return (visit, visit + 1)


def calexp(visit: int, detector: int) -> Dataset:
    # a new object each time, as a builder may hand over: the graph must share them
    return Dataset(CALEXP, DataId(instrument="Cam", visit=visit, detector=detector))


def warp(visit: int, patch: int) -> Dataset:
    return Dataset(WARP, DataId(instrument="Cam", visit=visit, skymap="sky", tract=0, patch=patch))


def make_quanta() -> list[Quantum]:
    """A three-task pipeline in pipeline order: 6 isr, 6 makeWarp, 4 coadd quanta."""
    quanta = []
    for v in VISITS:
        for d in DETECTORS:
            raw = Dataset(
                RAW, DataId(instrument="Cam", exposure=v, detector=d), id=100 * v + d, run="raw/all"
            )
            quanta.append(
                Quantum(
                    "isr",
                    DataId(instrument="Cam", visit=v, detector=d),
                    {"raw": [raw]},
                    {"calexp": [calexp(v, d)]},
                )
            )
    for v in VISITS:
        for p in patches_of(v):
            quanta.append(
                Quantum(
                    "makeWarp",
                    warp(v, p).dataId,
                    {"calexp": [calexp(v, d) for d in DETECTORS]},
                    {"warp": [warp(v, p)]},
                )
            )
    for p in sorted({p for v in VISITS for p in patches_of(v)}):
        cid = DataId(skymap="sky", tract=0, patch=p)
        quanta.append(
            Quantum(
                "coadd",
                cid,
                {"warp": [warp(v, p) for v in VISITS if p in patches_of(v)]},
                {"coadd": [Dataset(COADD, cid)]},
            )
        )
    return quanta


def assert_dependency_order(graph: QuantumGraph) -> None:
    for i, quantum in enumerate(graph):
        assert quantum.id == i
        for parent in graph.parents(quantum):
            assert parent.id < quantum.id, f"{parent} must come before {quantum}"


def test_ids_follow_the_given_order_when_it_already_satisfies_dependencies():
    quanta = make_quanta()
    graph = QuantumGraph(quanta)
    assert graph.quanta == quanta
    assert [q.id for q in graph] == list(range(len(quanta)))
    assert graph[7] is quanta[7]


def test_shuffled_input_is_reordered_into_a_stable_dependency_order():
    quanta = make_quanta()
    shuffled = quanta[:]
    random.Random(4).shuffle(shuffled)
    graph = QuantumGraph(shuffled)
    assert len(graph) == len(quanta)
    assert_dependency_order(graph)
    # independent quanta keep their given relative order
    given_isr = [q for q in shuffled if q.taskLabel == "isr"]
    assert [q for q in graph if q.taskLabel == "isr"] == given_isr
    # the first quantum is the first given quantum that reads only initial inputs
    assert graph[0] is next(q for q in shuffled if all(d.name == "raw" for d in q.iterInputs()))


def test_equal_datasets_become_one_shared_object_with_links():
    graph = QuantumGraph(make_quanta())
    isr = graph.quantaByLabel()["isr"][0]
    produced = isr.outputs["calexp"][0]
    readers = [q for q in graph if any(d is produced for d in q.iterInputs())]
    assert len(readers) == 2  # the visit covers two patches
    assert produced.creator is isr
    assert produced.consumers == readers
    assert all(produced in graph.datasets["calexp"] for _ in readers)
    assert {len(v) for v in [graph.datasets["calexp"]]} == {len(VISITS) * len(DETECTORS)}


def test_parents_and_children_follow_the_datasets():
    graph = QuantumGraph(make_quanta())
    coadd_patch2 = next(q for q in graph.quantaByLabel()["coadd"] if q.dataId["patch"] == 2)
    parents = graph.parents(coadd_patch2)
    assert {(q.taskLabel, q.dataId["visit"], q.dataId["patch"]) for q in parents} == {
        ("makeWarp", 1, 2),
        ("makeWarp", 2, 2),
    }
    assert [q.id for q in parents] == sorted(q.id for q in parents)
    warp_quantum = parents[0]
    assert graph.children(warp_quantum.id) == [coadd_patch2]
    assert len(graph.parents(warp_quantum)) == len(DETECTORS)
    assert graph.parents(graph[0]) == []


def test_initial_inputs_and_final_outputs():
    graph = QuantumGraph(make_quanta())
    initial = graph.initialInputs()
    assert {d.name for d in initial} == {"raw"}
    assert len(initial) == len(VISITS) * len(DETECTORS)
    final = graph.finalOutputs()
    assert {d.name for d in final} == {"coadd"}
    assert sorted(d.dataId["patch"] for d in final) == [1, 2, 3, 4]


def test_summary_counts_quanta_per_label_and_datasets_per_type():
    graph = QuantumGraph(make_quanta())
    summary = graph.summary()
    assert isinstance(summary, GraphSummary)
    n_isr = len(VISITS) * len(DETECTORS)
    n_warp = sum(len(patches_of(v)) for v in VISITS)
    n_coadd = len({p for v in VISITS for p in patches_of(v)})
    assert summary.quantaPerLabel == {"isr": n_isr, "makeWarp": n_warp, "coadd": n_coadd}
    assert summary.datasetsPerType == {"raw": n_isr, "calexp": n_isr, "warp": n_warp, "coadd": n_coadd}
    assert summary.nQuanta == len(graph)
    assert summary.initialInputs == n_isr and summary.finalOutputs == n_coadd
    text = str(summary)
    assert f"{len(graph)} quanta" in text
    assert "makeWarp" in text and str(n_warp) in text


def test_a_cycle_is_an_error_naming_its_quanta_and_datasets():
    a_out = DatasetType("aOut", ("visit",), "X")
    b_out = DatasetType("bOut", ("visit",), "X")
    vid = DataId(visit=1)
    a = Quantum("taskA", vid, {"bOut": [Dataset(b_out, vid)]}, {"aOut": [Dataset(a_out, vid)]})
    b = Quantum("taskB", vid, {"aOut": [Dataset(a_out, vid)]}, {"bOut": [Dataset(b_out, vid)]})
    independent = Quantum(
        "taskC", DataId(visit=2), {}, {"cOut": [Dataset(DatasetType("cOut", ("visit",), "X"), vid)]}
    )
    with pytest.raises(ValueError, match="cycle") as info:
        QuantumGraph([independent, a, b])
    message = str(info.value)
    assert "taskA" in message and "taskB" in message
    assert "aOut" in message and "bOut" in message
    assert "taskC" not in message


def test_a_quantum_reading_its_own_output_is_a_cycle():
    t = DatasetType("loop", ("visit",), "X")
    vid = DataId(visit=1)
    with pytest.raises(ValueError, match="cycle.*selfish"):
        QuantumGraph([Quantum("selfish", vid, {"loop": [Dataset(t, vid)]}, {"loop": [Dataset(t, vid)]})])


def test_two_producers_of_one_dataset_is_an_error():
    t = DatasetType("out", ("visit",), "X")
    vid = DataId(visit=1)
    with pytest.raises(ValueError, match="produced by two quanta"):
        QuantumGraph(
            [
                Quantum("a", vid, {}, {"out": [Dataset(t, vid)]}),
                Quantum("b", vid, {}, {"out": [Dataset(t, vid)]}),
            ]
        )


def test_getitem_out_of_range_names_the_valid_ids():
    graph = QuantumGraph(make_quanta())
    with pytest.raises(IndexError, match=f"0..{len(graph) - 1}"):
        graph[len(graph)]


def test_subgraph_copies_and_renumbers_without_touching_the_original():
    graph = QuantumGraph(make_quanta(), pipelineYaml="tasks: {}", configs={"isr": "x=1"}, metadata={"m": 1})
    coadd = graph.quantaByLabel()["coadd"][1]
    ids = [p.id for p in graph.parents(coadd)] + [coadd.id]
    sub = graph.subgraph(ids)
    assert len(sub) == len(ids)
    assert [q.id for q in sub] == list(range(len(ids)))
    assert [(q.taskLabel, q.dataId) for q in sub] == [
        (graph[i].taskLabel, graph[i].dataId) for i in sorted(ids)
    ]
    assert sub.pipelineYaml == "tasks: {}" and sub.configs == {"isr": "x=1"} and sub.metadata == {"m": 1}
    # links inside the subgraph only; the original graph keeps its own
    sub_coadd = sub[len(ids) - 1]
    assert [q.id for q in sub.parents(sub_coadd)] == list(range(len(ids) - 1))
    assert all(d.creator is None for d in sub.initialInputs())
    assert {d.name for d in sub.initialInputs()} == {"calexp"}
    original_warp = graph[ids[0]].outputs["warp"][0]
    assert original_warp.creator is graph[ids[0]] and original_warp.consumers == [coadd]


def test_todot_mentions_the_quanta_and_datasets_around_the_chosen_ones():
    graph = QuantumGraph(make_quanta())
    warp_quantum = next(
        q for q in graph if q.taskLabel == "makeWarp" and q.dataId["visit"] == 3 and q.dataId["patch"] == 4
    )
    dot = graph.toDot([warp_quantum.id], depth=1)
    assert dot.startswith("digraph")
    included = {q.id for q in graph if f"  q{q.id} [" in dot}
    expected = {warp_quantum.id} | {q.id for q in graph.parents(warp_quantum) + graph.children(warp_quantum)}
    assert included == expected
    assert "calexp" in dot and "warp" in dot and "coadd" in dot
    assert "visit: 3" in dot
    assert dot.count(" -> ") == sum(
        len(list(graph[i].iterInputs())) + len(list(graph[i].iterOutputs())) for i in expected
    )


def test_todot_of_the_whole_graph_has_every_quantum_and_dataset_once():
    graph = QuantumGraph(make_quanta())
    dot = graph.toDot()
    assert sum(1 for line in dot.splitlines() if "shape=box" in line) == len(graph)
    n_datasets = sum(len(v) for v in graph.datasets.values())
    assert sum(1 for line in dot.splitlines() if "shape=ellipse" in line) == n_datasets


def test_todot_escapes_quotes_in_string_values():
    t = DatasetType("note", ("instrument",), "X")
    vid = DataId(instrument='Cam "A"')
    dot = QuantumGraph([Quantum("q", vid, {}, {"note": [Dataset(t, vid)]})]).toDot()
    assert '\\"A\\"' in dot
    assert 'Cam "A"' not in dot


def test_pipeline_and_configs_must_be_text():
    with pytest.raises(TypeError, match="YAML text"):
        QuantumGraph(make_quanta(), pipelineYaml={"tasks": {}})
    with pytest.raises(TypeError, match=r"\['isr'\]"):
        QuantumGraph(make_quanta(), configs={"isr": {"threshold": 5}, "coadd": "x = 1"})


def test_quanta_already_in_dependency_order_are_not_sorted_again(monkeypatch):
    import supertask.graph.quantum_graph as qg

    calls = []
    real = qg._dependency_order
    monkeypatch.setattr(qg, "_dependency_order", lambda quanta: calls.append(len(quanta)) or real(quanta))
    quanta = make_quanta()
    assert QuantumGraph(quanta).quanta == quanta
    assert calls == []  # the linking pass saw every producer before its readers
    shuffled = quanta[:]
    random.Random(4).shuffle(shuffled)
    assert_dependency_order(QuantumGraph(shuffled))
    assert calls == [len(quanta)]


def test_a_resolved_duplicate_gives_its_id_and_run_to_the_shared_dataset():
    first = Dataset(RAW, DataId(instrument="Cam", exposure=1, detector=0))
    resolved = Dataset(RAW, DataId(instrument="Cam", exposure=1, detector=0), id=7, run="raw/all")
    quanta = [
        Quantum(
            "isr", DataId(instrument="Cam", visit=1, detector=0), {"raw": [first]}, {"calexp": [calexp(1, 0)]}
        ),
        Quantum(
            "isr2",
            DataId(instrument="Cam", visit=2, detector=0),
            {"raw": [resolved]},
            {"calexp": [calexp(2, 0)]},
        ),
    ]
    graph = QuantumGraph(quanta)
    (shared,) = graph.datasets["raw"]
    assert shared is first and (shared.id, shared.run) == (7, "raw/all")
    assert quanta[1].inputs["raw"][0] is first
    assert shared.consumers == quanta and shared.creator is None


def test_a_second_graph_over_the_same_quanta_links_its_datasets_afresh():
    quanta = make_quanta()
    first = QuantumGraph(quanta)
    produced = first.quantaByLabel()["isr"][0].outputs["calexp"][0]
    readers = list(produced.consumers)
    second = QuantumGraph(quanta)  # the datasets were kept and linked by the first graph
    assert produced.consumers == readers and len(readers) == 2  # reset, not appended to
    assert produced.creator is second.quantaByLabel()["isr"][0]
    assert sum(len(v) for v in second.datasets.values()) == sum(len(v) for v in first.datasets.values())


def shared_quanta() -> list[Quantum]:
    """`make_quanta` with one object per (type name, data ID), as the default builder hands over."""
    quanta = make_quanta()
    objects: dict[tuple[str, DataId], Dataset] = {}
    for quantum in quanta:
        for by_type in (quantum.inputs, quantum.outputs):
            for name, datasets in by_type.items():
                by_type[name] = [objects.setdefault(d.key, d) for d in datasets]
    return quanta


def describe_links(graph: QuantumGraph) -> list[object]:
    """Every quantum with its datasets, their links by id, and the datasets by type in order."""
    out: list[object] = []
    for q in graph:
        for d in (*q.iterInputs(), *q.iterOutputs()):
            creator = None if d.creator is None else d.creator.id
            out.append((q.id, q.taskLabel, d.key, creator, [c.id for c in d.consumers]))
    out.append({name: [d.key for d in datasets] for name, datasets in graph._byType.items()})
    return out


def test_a_graph_of_shared_datasets_links_them_as_the_sharing_constructor_does():
    by_sharing = QuantumGraph(shared_quanta())
    by_identity = QuantumGraph._from_shared(shared_quanta())
    assert describe_links(by_identity) == describe_links(by_sharing)
    assert by_identity.summary() == by_sharing.summary()
    assert_dependency_order(by_identity)


def test_a_graph_of_shared_datasets_still_orders_quanta_given_out_of_order():
    # reversed: every consumer comes before its producer
    by_identity = QuantumGraph._from_shared(shared_quanta()[::-1])
    by_sharing = QuantumGraph(shared_quanta()[::-1])
    assert_dependency_order(by_identity)
    assert describe_links(by_identity) == describe_links(by_sharing)


def test_a_graph_of_shared_datasets_refuses_two_producers_of_one_dataset():
    t = DatasetType("out", ("visit",), "X")
    vid = DataId(visit=1)
    out = Dataset(t, vid)
    with pytest.raises(ValueError, match="produced by two quanta"):
        QuantumGraph._from_shared(
            [Quantum("a", vid, {}, {"out": [out]}), Quantum("b", vid, {}, {"out": [out]})]
        )


def test_a_graph_of_unlinked_datasets_links_them_as_the_sharing_constructor_does():
    # in order and reversed (every consumer before its producer)
    for order in (1, -1):
        by_sharing = QuantumGraph(shared_quanta()[::order])
        quanta = shared_quanta()[::order]
        assert all(d.consumers is calexp(9, 9).consumers for q in quanta for d in q.iterInputs())
        unlinked = QuantumGraph._from_shared(quanta, unlinked=True)
        assert describe_links(unlinked) == describe_links(by_sharing)
        assert unlinked.summary() == by_sharing.summary()
        assert_dependency_order(unlinked)


def test_a_graph_of_unlinked_datasets_refuses_two_producers_of_one_dataset():
    t = DatasetType("out", ("visit",), "X")
    vid = DataId(visit=1)
    out = Dataset(t, vid)
    with pytest.raises(ValueError, match="produced by two quanta"):
        QuantumGraph._from_shared(
            [Quantum("a", vid, {}, {"out": [out]}), Quantum("b", vid, {}, {"out": [out]})], unlinked=True
        )


@pytest.mark.parametrize("unlinked", [False, True])
def test_a_dataset_with_one_reader_keeps_a_list_sized_for_one(unlinked):
    import sys

    graph = QuantumGraph._from_shared(shared_quanta(), unlinked=unlinked)
    single = [d for q in graph for d in q.iterInputs() if len(d.consumers) == 1]
    assert single  # raws are read by one isr quantum, warps of patch 1 by one coadd
    for d in single:
        assert sys.getsizeof(d.consumers) <= sys.getsizeof(list(d.consumers)), d


def test_datasets_no_graph_has_linked_share_one_empty_consumers_list():
    # a list per dataset would cost 56 bytes apiece at a million datasets
    first, second = calexp(1, 0), warp(1, 1)
    assert first.consumers == [] and first.consumers is second.consumers


def test_adding_a_reader_to_an_unlinked_dataset_is_refused_not_shared():
    first, second = calexp(1, 0), calexp(2, 0)
    with pytest.raises(TypeError, match="not linked into a graph"):
        first.consumers.append(Quantum("isr", DataId(visit=1)))
    with pytest.raises(TypeError, match="not linked into a graph"):
        first.consumers += [Quantum("isr", DataId(visit=1))]
    assert first.consumers == [] and second.consumers == []


@pytest.mark.parametrize(
    "constructor",
    [QuantumGraph, QuantumGraph._from_shared, partial(QuantumGraph._from_shared, unlinked=True)],
)
def test_linking_gives_each_dataset_a_consumers_list_of_its_own(constructor):
    graph = constructor(shared_quanta())
    datasets = [d for q in graph for d in (*q.iterInputs(), *q.iterOutputs())]
    unlinked = calexp(9, 9).consumers
    assert all(d.consumers is not unlinked for d in datasets)
    assert unlinked == []


def test_quanta_made_in_bulk_match_the_constructor_and_skip_data_ids_without_inputs():
    ids = [DataId(instrument="Cam", visit=1, detector=d) for d in (0, 1, 2)]
    inputs = [{"calexp": [calexp(1, 0)]}, None, {"calexp": [calexp(1, 2)]}]
    made = Quantum._many("calibrate", ids, inputs)
    expected = [Quantum("calibrate", ids[i], inputs[i]) for i in (0, 2)]
    assert [(q.taskLabel, q.dataId, q.inputs, q.outputs, q.id, q.task) for q in made] == [
        (q.taskLabel, q.dataId, q.inputs, q.outputs, q.id, q.task) for q in expected
    ]
    assert made[0].outputs is not made[1].outputs  # each quantum's own dict


def test_quanta_made_in_bulk_with_outputs_take_each_quantums_outputs_and_skip_those_without_inputs():
    ids = [DataId(instrument="Cam", visit=1, detector=d) for d in (0, 1, 2)]
    inputs = [{"raw": [calexp(1, 0)]}, None, {"raw": [calexp(1, 2)]}]
    outputs = [{"calexp": [calexp(1, d)]} for d in (0, 1, 2)]
    made = Quantum._many("calibrate", ids, inputs, outputs=outputs)
    expected = [Quantum("calibrate", ids[i], inputs[i], outputs[i]) for i in (0, 2)]
    assert [(q.taskLabel, q.dataId, q.inputs, q.outputs, q.id, q.task) for q in made] == [
        (q.taskLabel, q.dataId, q.inputs, q.outputs, q.id, q.task) for q in expected
    ]
    assert made[1].outputs is outputs[2]  # taken as given
    with pytest.raises(ValueError):
        Quantum._many("calibrate", ids, inputs, outputs=outputs[:2])


def test_datasets_made_in_bulk_match_the_constructor():
    ids = [DataId(instrument="Cam", visit=1, detector=d) for d in (0, 1)]
    made = Dataset._many(CALEXP, ids, [(7, "run/a"), (8, "run/b")])
    assert [(d.datasetType, d.dataId, d.id, d.run, d.creator) for d in made] == [
        (CALEXP, ids[0], 7, "run/a", None),
        (CALEXP, ids[1], 8, "run/b", None),
    ]
    assert made == [Dataset(CALEXP, i) for i in ids]
    unresolved = Dataset._many(CALEXP, ids)
    assert [(d.id, d.run) for d in unresolved] == [(None, None)] * 2
    assert unresolved[0].consumers == [] and unresolved[0].consumers is Dataset(CALEXP, ids[0]).consumers
