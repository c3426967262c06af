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
from test_bps_workflow_builder import CALEXP, RAW, demo_quanta, ds, options, path_of

from bps import prepare as prepare_mod
from bps.workflow import Resources
from bps.workflow_builder import build_workflow
from bps.workflow_io import save_workflow, workflow_to_json
from bps.workflow_stream import build_streamed_workflow
from supertask.graph import file_format
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId


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


def test_an_overall_input_without_run_is_refused_as_when_built():
    quanta = _chains()
    quanta[0].inputs["raw"][0].run = None
    with pytest.raises(ValueError, match="made by no quantum and has no RUN"):
        build_streamed_workflow(quanta, options(), path_of)


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
