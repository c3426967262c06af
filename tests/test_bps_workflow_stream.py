"""The streamed, unclustered workflow of `bps prepare` is the built workflow, byte for byte.

`bps.workflow_stream` builds the workflow of one job per quantum from quanta read a chunk at
a time, keeping flat columns instead of the graph and one object per job and file. Whatever
reads the workflow (``workflow.json``, the HTCondor DAG, the Pegasus documents) must get what
`bps.workflow_builder.build_workflow` gives for the same quanta.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from support.toy_pipeline import TASKS_PYTHONPATH, ToyPipeline, prepare, submit_dir_of
from test_bps_workflow_builder import CALEXP, RAW, WARP, add_quantum, demo_quanta, ds, options, path_of

from bps import prepare as prepare_mod
from bps.workflow import Resources
from bps.workflow_builder import build_workflow
from bps.workflow_io import save_workflow, workflow_to_json
from bps.workflow_stream import build_streamed_workflow, build_streamed_workflow_file
from supertask.graph import file_format
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType


def _options():  # per-label resources and a throttle: what jobs of one label share
    sizes = {"isr": Resources(memory_mb=1000), "coadd": Resources(memory_mb=3000, walltime_s=60)}
    return options(resources_for=lambda label: sizes.get(label, Resources()), throttles={"warp": 2})


def test_a_streamed_workflow_is_the_built_one_through_a_saved_graph_read_in_small_chunks(tmp_path):
    graph = QuantumGraph(demo_quanta())
    graph.save(tmp_path / "g.qgraph")
    built = build_workflow(QuantumGraph.load(tmp_path / "g.qgraph"), _options(), path_of)
    streamed = build_streamed_workflow(
        file_format.iter_quanta(tmp_path / "g.qgraph", chunk=3), _options(), path_of
    ).workflow
    assert workflow_to_json(streamed) == workflow_to_json(built)
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()
    assert streamed.labels() == built.labels() == ["isr", "warp", "coadd", "summary"]
    assert dict(streamed.parents) == built.parents and streamed.edges() == built.edges()
    name = list(built.jobs)[5]
    assert streamed.jobs[name] == built.jobs[name] and name in streamed.jobs


def path_formatter(dataset_type, keys):
    """`path_of` as a per-(type, keys) formatter of many datasets' data-ID values and RUNs."""
    return lambda rows, runs: [
        path_of(Dataset(dataset_type, DataId(dict(zip(keys, values, strict=True)))), run)
        for values, run in zip(rows, runs, strict=True)
    ]


@pytest.mark.parametrize("chunk", [1, 3, 10_000])
def test_a_workflow_streamed_from_the_graph_file_records_is_the_built_one(tmp_path, chunk):
    QuantumGraph(demo_quanta()).save(tmp_path / "g.qgraph")
    built = build_workflow(QuantumGraph.load(tmp_path / "g.qgraph"), _options(), path_of)
    streamed = build_streamed_workflow_file(tmp_path / "g.qgraph", _options(), path_formatter, chunk).workflow
    assert workflow_to_json(streamed) == workflow_to_json(built)
    assert dict(streamed.parents) == built.parents and streamed.edges() == built.edges()


def _one_name_two_data_ids() -> list[Quantum]:
    """``a`` writes calexp visit "1 2", ``b`` reads calexp visit "1_2": two data IDs, one file name."""
    made, read = (
        ds(CALEXP, instrument="Cam", visit="1 2", detector=1),
        ds(CALEXP, "in/run", instrument="Cam", visit="1_2", detector=1),
    )
    a = Quantum("a", DataId(visit=1), {}, {}, id=0)
    a.addOutput(made)
    b = Quantum("b", DataId(visit=1), {}, {}, id=1)
    b.addInput(read)
    return [a, b]


def test_two_data_ids_of_one_file_name_are_one_file_told_apart_by_name(tmp_path):
    """The streamed workflow names each file once: ``b`` reads what ``a`` writes, as the name says.

    (The loaded graph's workflow links the two by their datasets instead and has them apart.)
    """
    streamed = build_streamed_workflow(_one_name_two_data_ids(), options(), path_of).workflow
    assert streamed.parents["b_1"] == ["a_1"]
    assert [f.path for f in streamed.jobs["b_1"].inputs] == ["out/calexp/1_Cam_1 2.npy"]
    QuantumGraph(_one_name_two_data_ids()).save(tmp_path / "g.qgraph")
    from_file = build_streamed_workflow_file(tmp_path / "g.qgraph", options(), path_formatter).workflow
    assert workflow_to_json(from_file) == workflow_to_json(streamed)


def _chains() -> list[Quantum]:
    """Two independent chains a -> b, numbered a1, b1, a2, b2: the job order is a1, a2, b1, b2."""
    quanta = []
    for visit in (1, 2):
        did = dict(instrument="Cam", visit=visit, detector=1)
        a = Quantum("a", DataId(did), {}, {}, id=len(quanta))
        a.addInput(ds(RAW, "raw/run", **did))
        a.addOutput(ds(CALEXP, **did))
        quanta.append(a)
        b = Quantum("b", DataId(did), {}, {}, id=len(quanta))
        b.addInput(ds(CALEXP, **did))
        quanta.append(b)
    return quanta


def test_jobs_come_in_the_order_of_the_built_workflow_not_the_quanta():
    built = build_workflow(_chains(), options(), path_of)
    streamed = build_streamed_workflow(_chains(), options(), path_of).workflow
    assert list(streamed.jobs) == list(built.jobs) == ["a_1_Cam_1", "a_1_Cam_2", "b_1_Cam_1", "b_1_Cam_2"]
    assert workflow_to_json(streamed) == workflow_to_json(built)


def test_two_quanta_with_the_same_job_name_are_told_apart_as_when_built():
    quanta = []
    for data_id in ({"visit": "1_2"}, {"detector": 1, "visit": 2}):
        q = Quantum("x", DataId(data_id), {}, {}, id=len(quanta))
        quanta.append(q)
    built = build_workflow(quanta, options(), path_of)
    streamed = build_streamed_workflow(quanta, options(), path_of).workflow
    assert list(streamed.jobs) == list(built.jobs) == ["x_1_2", "x_1_2_q1"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 10_000])
def test_job_names_repeated_across_the_chunks_the_build_names_at_once_are_told_apart_as_when_built(
    monkeypatch, chunk: int
):
    """A name taken earlier, in the same chunk or another, gets ``_q<n>``; so does a later job whose
    own name is one given that way."""
    from bps import workflow_stream

    monkeypatch.setattr(workflow_stream, "_CHUNK", chunk)
    visits = ["1_2", "1/2", "1_2_q1", "1_2", "3", "1_2_q1"]
    quanta = [Quantum("x", DataId({"visit": v}), {}, {}, id=i) for i, v in enumerate(visits)]
    built = build_workflow(quanta, options(), path_of)
    streamed = build_streamed_workflow(quanta, options(), path_of).workflow
    assert list(streamed.jobs) == list(built.jobs)
    assert sorted(built.jobs) == sorted(
        ["x_1_2", "x_1_2_q1", "x_1_2_q1_q2", "x_1_2_q3", "x_3", "x_1_2_q1_q5"]
    )


def _in_chunks(monkeypatch, chunk: int, quanta: list[Quantum]):
    from bps import workflow_stream

    monkeypatch.setattr(workflow_stream, "_CHUNK", chunk)
    return build_streamed_workflow(quanta, _options(), path_of)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 10_000])
def test_jobs_added_a_chunk_at_a_time_make_the_built_workflow(monkeypatch, chunk: int):
    """Chunks whose quanta each read one new overall input and write one new file are added at
    once (here the isr quanta, when a chunk holds only them): the same jobs, files, numbers and
    registry ids as one by one."""
    quanta = demo_quanta()
    for q in quanta[:4]:  # raws with data IDs of their own, unlike their calexps'
        did = q.inputs["raw"][0].dataId
        q.inputs["raw"] = [
            ds(RAW, "raw/run", instrument="Cam", visit=did["visit"], detector=did["detector"] + 10)
        ]
    quanta[1].inputs["raw"][0].id = 11
    quanta[2].inputs["raw"][0].id = 12
    built = build_workflow(quanta, _options(), path_of)
    streamed = _in_chunks(monkeypatch, chunk, quanta)
    assert workflow_to_json(streamed.workflow) == workflow_to_json(built)
    inputs = list(streamed.overall_inputs())
    assert [(lfn, ident, run) for _, lfn, ident, run in inputs] == [
        (f"raw.detector-{d}.instrument-Cam.visit-{v}", ident, "raw/run")
        for (v, d), ident in zip([(1, 11), (1, 12), (2, 11), (2, 12)], [None, 11, 12, None], strict=True)
    ]
    assert [k for k, *_ in inputs] == [1, 3, 5, 7]  # each after its job's output, as one by one
    assert [streamed.path(k) for k, *_ in inputs] == [f.path for j in built.jobs.values() for f in j.inputs][
        :4
    ]


@pytest.mark.parametrize("chunk", [2, 10_000])
def test_quanta_reading_one_overall_input_in_one_chunk_make_the_built_workflow(monkeypatch, chunk: int):
    quanta = demo_quanta()
    for q in quanta[1:4]:  # every isr quantum reads the first one's raw
        q.inputs["raw"] = list(quanta[0].inputs["raw"])
    built = build_workflow(quanta, _options(), path_of)
    streamed = _in_chunks(monkeypatch, chunk, quanta)
    assert workflow_to_json(streamed.workflow) == workflow_to_json(built)
    assert len(list(streamed.overall_inputs())) == 1


@pytest.mark.parametrize("chunk", [1, 10_000])
def test_an_overall_input_without_run_is_refused_in_any_chunk(monkeypatch, chunk: int):
    quanta = demo_quanta()
    quanta[2].inputs["raw"][0].run = None
    with pytest.raises(
        ValueError, match=r"raw.*visit: 2.* of Quantum.*isr.* is made by no quantum and has no RUN"
    ):
        _in_chunks(monkeypatch, chunk, quanta)


def test_jobs_reading_several_files_of_one_type_make_the_built_workflow():
    """Inputs all made before, distinct and of one type are looked up at once; repeated, new or
    mixed ones one by one: the same files, parents (sorted by name) and order as when built."""
    quanta: list[Quantum] = []

    def add(label, data_id, inputs, outputs):
        add_quantum(quanta, label, data_id, inputs, outputs)

    def calexp(v):
        return ds(CALEXP, instrument="Cam", visit=v, detector=1)

    for v in (3, 1, 2, 10):
        add(
            "a",
            dict(instrument="Cam", visit=v, detector=1),
            [ds(RAW, "raw/run", instrument="Cam", visit=v, detector=1)],
            [calexp(v)],
        )
    warp = dict(skymap="s", tract=0, patch=1)
    add("w", dict(warp, visit=1), [calexp(10), calexp(1), calexp(3), calexp(2)], [ds(WARP, **warp, visit=1)])
    add("w", dict(warp, visit=2), [calexp(1), calexp(1), calexp(2)], [ds(WARP, **warp, visit=2)])  # repeated
    add(
        "w",
        dict(warp, visit=3),
        [calexp(1), calexp(2), ds(CALEXP, "old/run", instrument="Cam", visit=9, detector=1)],
        [ds(WARP, **warp, visit=3)],
    )  # one new
    add(
        "w",
        dict(warp, visit=4),
        [calexp(1), calexp(2), ds(RAW, "raw/run", instrument="Cam", visit=1, detector=1)],
        [ds(WARP, **warp, visit=4)],
    )  # two types
    built = build_workflow(quanta, _options(), path_of)
    streamed = build_streamed_workflow(quanta, _options(), path_of).workflow
    assert workflow_to_json(streamed) == workflow_to_json(built)
    assert dict(streamed.parents) == built.parents
    assert streamed.parents["w_1_s_0_1"] == ["a_1_Cam_1", "a_1_Cam_10", "a_1_Cam_2", "a_1_Cam_3"]


def test_an_overall_input_without_run_is_refused_as_when_built():
    quanta = _chains()
    quanta[0].inputs["raw"][0].run = None
    with pytest.raises(ValueError, match="made by no quantum and has no RUN"):
        build_streamed_workflow(quanta, options(), path_of)


@pytest.mark.parametrize("one_output", [True, False])
def test_a_dataset_two_quanta_write_is_refused_naming_both_jobs(one_output: bool):
    """Whether the second writer has the one-input, one-output shape most jobs have or not."""
    quanta = _chains()[:1]
    did = dict(instrument="Cam", visit=1, detector=1)
    again = Quantum("again", DataId(did), {}, {}, id=1)
    again.addInput(ds(RAW, "raw/run", **did))
    if not one_output:
        again.addOutput(ds(WARP, patch=1, skymap="s", tract=0, visit=1))
    again.addOutput(ds(CALEXP, **did))
    quanta.append(again)
    with pytest.raises(ValueError, match=r"calexp.* is produced by two quanta: a_1_Cam_1 and again_1_Cam_1$"):
        build_streamed_workflow(quanta, options(), path_of)


class _Registry:
    """Knows ids 101 (at its template path) and a raw of visit 2 moved off its template path."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []
        self.located: list[Dataset] = []

    def getDatasetRecordsById(self, ids):
        self.asked.append(list(ids))
        return {i: ("raw/run/raw/1_Cam_1.npy", 10, "c1") for i in self.asked[-1] if i == 101}

    def getDatasetLocation(self, dataset):
        self.located.append(dataset)
        if dataset.dataId["visit"] == 2:
            return ("moved/raw2.npy", None, None)
        raise LookupError(dataset)


def test_overall_inputs_are_asked_by_id_and_located_one_by_one_only_when_not_found():
    quanta = _chains()
    quanta[0].inputs["raw"][0].id = 101
    quanta[2].inputs["raw"][0].id = 102  # no longer registered under its id
    streamed = build_streamed_workflow(quanta, options(), path_of)
    registry = _Registry()
    locations, checks = prepare_mod._registered_inputs(registry, streamed)
    assert registry.asked == [[101, 102]]
    assert [(d.id, d.dataId["visit"], d.run) for d in registry.located] == [(102, 2, "raw/run")]
    raw1, raw2 = "raw.detector-1.instrument-Cam.visit-1", "raw.detector-1.instrument-Cam.visit-2"
    assert checks == {raw1: [10, "c1"]}
    assert locations == {raw2: "moved/raw2.npy"}
    assert [f.path for f in streamed.workflow.jobs["a_1_Cam_2"].inputs] == ["moved/raw2.npy"]


class _Records:
    """Knows every id; each raw's record names its id."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    def getDatasetRecordsById(self, ids):
        self.asked.append(list(ids))
        return {i: (f"raw/run/raw/{i}.npy", i, f"c{i}") for i in self.asked[-1]}


def test_overall_inputs_are_asked_in_batches_of_consecutive_ids_whatever_the_job_order(monkeypatch):
    """Batches in the workflow's order held ids spread over the whole table: the registry read a
    million raws by two thousand IN lists instead of a few range scans."""
    quanta = []
    ids = {1: 105, 2: 101, 3: 104, 4: 102, 5: 103}  # visit: registry id
    for visit, ident in ids.items():
        did = dict(instrument="Cam", visit=visit, detector=1)
        a = Quantum("a", DataId(did), {}, {}, id=len(quanta))
        a.addInput(ds(RAW, "raw/run", **did))
        a.inputs["raw"][0].id = ident
        quanta.append(a)
    streamed = build_streamed_workflow(quanta, options(), path_of)
    monkeypatch.setattr(prepare_mod, "REGISTRY_BATCH", 2)
    registry = _Records()
    locations, checks = prepare_mod._registered_inputs(registry, streamed)
    assert registry.asked == [[101, 102], [103, 104], [105]]
    lfn = "raw.detector-1.instrument-Cam.visit-{}".format
    assert checks == {lfn(v): [i, f"c{i}"] for v, i in ids.items()}
    assert locations == {lfn(v): f"raw/run/raw/{i}.npy" for v, i in ids.items()}
    assert [streamed.workflow.jobs[f"a_1_Cam_{v}"].inputs[0].path for v in (1, 3)] == [
        "raw/run/raw/105.npy",
        "raw/run/raw/104.npy",
    ]


def test_overall_input_columns_split_inputs_by_id_as_overall_inputs_does():
    """With an id (asked by id), without one (located by type, data ID and RUN)."""
    quanta = []
    for visit, ident in ((1, 7), (2, None), (3, 3)):
        did = dict(instrument="Cam", visit=visit, detector=1)
        a = Quantum("a", DataId(did), {}, {}, id=len(quanta))
        a.addInput(ds(RAW, "raw/run", **did))
        a.inputs["raw"][0].id = ident
        a.addOutput(ds(CALEXP, **did))
        quanta.append(a)
        b = Quantum("b", DataId(did), {}, {}, id=len(quanta))
        b.addInput(ds(CALEXP, **did))
        quanta.append(b)
    streamed = build_streamed_workflow(quanta, options(), path_of)
    inputs = list(streamed.overall_inputs())
    files, ids, unidentified = streamed.overall_input_columns()
    assert (files, ids) == ([k for k, _, i, _ in inputs if i is not None], [7, 3])
    assert unidentified == [k for k, _, i, run in inputs if i is None and run] and len(unidentified) == 1
    assert streamed.lfns(files) == [lfn for _, lfn, i, _ in inputs if i is not None]
    assert streamed.paths(files) == [streamed.path(k) for k in files]


def test_registry_records_of_the_inputs_are_kept_with_the_cyclic_collector_paused():
    """A kept list per input made the collector walk the workflow's heap again and again at 10^6 raws."""
    import gc

    quanta = _chains()
    quanta[0].inputs["raw"][0].id = 101
    streamed = build_streamed_workflow(quanta, options(), path_of)
    registry = _Registry()
    collecting: list[bool] = []
    records = registry.getDatasetRecordsById
    registry.getDatasetRecordsById = lambda ids: collecting.append(gc.isenabled()) or records(ids)  # type: ignore[method-assign]
    assert gc.isenabled()
    checks = prepare_mod._registered_inputs(registry, streamed)[1]
    assert collecting == [False] and gc.isenabled()
    assert checks == {"raw.detector-1.instrument-Cam.visit-1": [10, "c1"]}


def test_iter_quanta_reads_every_quantum_in_order_across_chunks(tmp_path):
    graph = QuantumGraph(demo_quanta())
    graph.save(tmp_path / "g.qgraph")
    everything = file_format.read_quanta(tmp_path / "g.qgraph")
    for chunk in (1, 4, 100):
        streamed = list(file_format.iter_quanta(tmp_path / "g.qgraph", chunk=chunk))
        assert [(q.id, q.taskLabel, q.dataId, q.inputs, q.outputs) for q in streamed] == [
            (q.id, q.taskLabel, q.dataId, q.inputs, q.outputs) for q in everything
        ]


def test_iter_quanta_refuses_a_corrupted_index_before_yielding(tmp_path):
    QuantumGraph(demo_quanta()).save(tmp_path / "g.qgraph")
    data = bytearray((tmp_path / "g.qgraph").read_bytes())
    data[-3] ^= 0xFF  # the last index entry
    (tmp_path / "g.qgraph").write_bytes(bytes(data))
    with pytest.raises(file_format.GraphFileError, match="index"):
        next(file_format.iter_quanta(tmp_path / "g.qgraph"))


# -- bps prepare, end to end -------------------------------------------------------------------

RUN = "u/test/stream"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3), seed_scale=1, multiplier=3)
#: what differs between two prepares of the same directory: when they ran
_VOLATILE = [
    (re.compile(rb'"prepared_at": [0-9.e+-]+'), b'"prepared_at": 0'),
    (re.compile(rb'"createdOn":"[^"]*"'), b'"createdOn":""'),
]


def _tree(root: Path) -> dict[str, bytes | str]:
    result: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = "-> " + str(path.readlink())
        elif path.is_file():
            data = path.read_bytes()
            for pattern, replacement in _VOLATILE:
                data = pattern.sub(replacement, data)
            result[rel] = data
        else:
            result[rel] = "dir"
    return result


def _content(q: Quantum) -> tuple:
    return (q.id, q.taskLabel, q.dataId, q.inputs, q.outputs)


@pytest.mark.parametrize(
    ("wms", "site", "retarget"),
    [
        ("htcondor", "htcondor_shared", False),
        ("htcondor", "htcondor_shared", True),  # transfer staging is never streamed: it writes graph slices
        ("pegasus", "pegasus_sharedfs", False),
    ],
)
def test_prepare_writes_the_same_submit_directory_streamed_as_from_the_loaded_graph(
    tmp_path, monkeypatch, wms, site, retarget
):
    skip: dict[str, object] = (
        {"condor": {"skip_checks": ["tmp_node_log", "job_user"]}} if wms == "htcondor" else {}
    )
    # these jobs do not inherit the submitter's PYTHONPATH: the site gives them the toy tasks
    skip["environment"] = {"PYTHONPATH": TASKS_PYTHONPATH}
    toy = TOY.set_up(tmp_path, monkeypatch, wms=wms, compute_site=site, site=skip)
    moved = "seeds/seed/seed_detector-2_instrument-Cam.json"
    (toy.repo / "elsewhere").mkdir()
    (toy.repo / moved).rename(toy.repo / "elsewhere" / "seed2.json")
    with sqlite3.connect(toy.repo / "registry.sqlite3") as db:  # an input off its template path
        db.execute("UPDATE dataset SET path = ? WHERE path = ?", ("elsewhere/seed2.json", moved))
    extra = {"output_run": "u/test/other"} if retarget else {}
    config = toy.submit_yaml("same", **extra)
    submit_dir = submit_dir_of(config)
    monkeypatch.setattr(prepare_mod, "STREAMED_WMS", ())
    prepare(config)
    loaded = _tree(submit_dir)
    submit_dir.rename(submit_dir.with_name("loaded"))
    monkeypatch.setattr(prepare_mod, "STREAMED_WMS", ("htcondor", "pegasus"))
    calls = []
    real = prepare_mod._prepare_streamed
    monkeypatch.setattr(prepare_mod, "_prepare_streamed", lambda *a: calls.append(1) or real(*a))
    prepare(config)
    assert calls, "the streamed path was not taken"
    streamed = _tree(submit_dir)
    assert any(name.startswith("input_locations/") for name in streamed)
    assert any(name.startswith("input_checks/") for name in streamed)
    assert sorted(streamed) == sorted(loaded)
    differ = [name for name in loaded if streamed[name] != loaded[name]]
    if retarget:  # the retargeted copy of the graph records when it was written: compare its content
        graph = "u_test_other.qgraph"
        assert differ in ([], [graph])  # equal when both copies were written within the same second
        before, after = (QuantumGraph.load(d / graph) for d in (submit_dir.with_name("loaded"), submit_dir))
        assert [_content(q) for q in after] == [_content(q) for q in before]
        assert after.metadata == before.metadata
        assert after.metadata["output_run"] == "u/test/other"
    else:
        assert differ == []


def _columns_of(parents: list[list[int]]):
    """Columns holding only what `_static_order` reads: job names and each job's parents."""
    from bps.workflow_stream import _Columns

    c = _Columns()
    c.names = [f"job{j}" for j in range(len(parents))]
    for mine in parents:
        c.par_jobs.extend(mine)
        c.par_start.append(len(c.par_jobs))
    return c


def _graphlib_order(parents: list[list[int]]) -> list[int]:
    import graphlib

    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for j, mine in enumerate(parents):
        sorter.add(j, *mine)
    return list(sorter.static_order())


@pytest.mark.parametrize("seed", range(40))
def test_the_job_order_is_graphlibs_static_order_for_any_graph(seed: int):
    """The batch-by-batch order (parents numbered before children) is graphlib's first-in first-out order."""
    import random

    from bps.workflow_stream import _kahn_order, _static_order

    rnd = random.Random(seed)
    n = rnd.randint(1, 60)
    parents = []
    for j in range(n):
        mine = rnd.sample(range(j), min(j, rnd.choice([0, 0, 1, 2, 5])))
        parents.append(mine)  # in any order, as the build sorts them by name
    c = _columns_of(parents)
    assert list(_static_order(c)) == _graphlib_order(parents) == list(_kahn_order(c))


def test_a_parent_numbered_after_its_child_is_ordered_as_graphlib_orders_it():
    from bps.workflow_stream import _static_order

    parents = [[], [3], [0], [2], [1, 2]]
    assert list(_static_order(_columns_of(parents))) == _graphlib_order(parents)


def test_jobs_depending_on_each_other_in_a_cycle_are_refused():
    from bps.workflow_stream import _static_order

    with pytest.raises(ValueError, match="cycle: rebuild the graph"):
        _static_order(_columns_of([[], [2], [1]]))


@pytest.mark.parametrize("chunk", [1, 10_000])
def test_equal_data_id_values_of_the_files_are_one_object_and_a_bool_stays_apart_from_an_int(
    monkeypatch, chunk: int
):
    """Files keep one object per distinct (type, value), whether added a chunk at once or one by one."""

    def data_id(visit: int) -> dict:  # new objects for equal values, as a reader makes them
        return {"instrument": "".join(["Ca", "m"]), "visit": int(str(visit)), "detector": 1}

    quanta: list[Quantum] = []
    flag = DatasetType("flag", ("instrument", "visit"), "NumpyArray")
    add_quantum(quanta, "mark", {"visit": 2}, [], [ds(flag, instrument="".join(["Ca", "m"]), visit=True)])
    for visit in (1000, 1001):  # one raw read, one calexp written: the chunk path when together
        raw = Dataset(RAW, DataId(data_id(visit)), run="raw/run")
        add_quantum(quanta, "isr", data_id(visit), [raw], [Dataset(CALEXP, DataId(data_id(visit)))])
    values = _in_chunks(monkeypatch, chunk, quanta).workflow.jobs.columns().values
    assert len(values) == 5  # flag, then calexp, raw, calexp, raw (detector, instrument, visit)
    assert len({id(values[0][0])} | {id(row[1]) for row in values[1:]}) == 1
    assert values[1][2] is values[2][2] and values[3][2] is values[4][2]  # a calexp's visit is its raw's
    assert type(values[0][1]) is bool and {type(row[0]) for row in values[1:]} == {int}  # True == 1


@pytest.mark.parametrize(
    ("label", "values"),
    [
        ("isr", [("HSC", 1, 10), ("HSC", 2, -10)]),
        ("isr", [("HSC/x", 1, 10), ("HSC", 2, 10)]),  # unsafe character in a value
        ("isr", [("HSC", 1, "a_"), ("HSC", 2, "b")]),  # a trailing "_" is stripped
        ("isr", [("", 1, 10), ("HSC", 2, 10)]),  # empty value
        ("_isr", [("HSC", 1, 10)]),  # a leading "_" is stripped
        ("is r", [("HSC", 1, 10)]),
        ("isr", [()]),
        ("isr_", [()]),
        ("isr", [("HSC", True, 10)]),  # not only ints and strs: each text joined, then made safe
    ],
)
def test_job_names_made_a_chunk_at_once_are_the_safe_names_of_label_and_values(label, values):
    from bps.names import safe_name
    from bps.workflow_stream import _job_names

    batch = [(0, 0, row, [], []) for row in values]
    expected = [safe_name("_".join([label, *map(str, row)])) for row in values]
    assert _job_names(batch, [label], set(), 0) == expected
