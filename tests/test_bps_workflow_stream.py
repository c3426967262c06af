"""The streamed, unclustered workflow of `bps prepare` is the built workflow, byte for byte.

`bps.workflow_stream` builds the workflow of one job per quantum from quanta read a chunk at
a time, keeping flat columns instead of the graph and one object per job and file. Whatever
reads the workflow (``workflow.json``, the HTCondor DAG, the Pegasus documents) must get what
`bps.workflow_builder.build_workflow` gives for the same quanta.
"""

from __future__ import annotations

import json
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


def _files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _with_added_arguments(quanta, opts):
    """The built and the streamed workflow of ``quanta``, prepare's arguments added to some jobs as
    `bps.prepare` adds them: groups of jobs sharing a file, so that a label's jobs end differently."""
    built = build_workflow(quanta, opts, path_of)
    streamed = build_streamed_workflow(quanta, opts, path_of)
    numbers = {name: j for j, name in enumerate(streamed.workflow.jobs._c.names)}
    groups = [(["isr_1_Cam_1", "isr_2_Cam_1"], ["--input-locations", "/sub/input_locations/000000.json"])]
    groups.append((["isr_2_Cam_1", "warp_0_sm_0_1"], ["--input-checks", "/sub/input checks/0.json"]))
    for names, arguments in groups:
        for name in names:
            built.jobs[name].arguments += arguments
        streamed.add_arguments([numbers[name] for name in names], arguments)
    return built, streamed.workflow


@pytest.mark.parametrize("manifest_parent", ["/sub", '/sub dir/with "quotes" \\ and a backslash'])
def test_the_dag_of_a_streamed_workflow_is_the_one_written_from_its_jobs(tmp_path, manifest_parent):
    from bps.wms.htcondor import translator

    opts = _options()
    opts.submit_dir = manifest_parent
    built, streamed = _with_added_arguments(demo_quanta(), opts)
    assert isinstance(streamed.jobs, translator.StreamedJobs)
    translator.write_dag(built, tmp_path / "dag")
    expected = _files_of(tmp_path / "dag")
    (tmp_path / "dag").rename(tmp_path / "built")
    translator.write_dag(streamed, tmp_path / "dag")
    assert _files_of(tmp_path / "dag") == expected
    dag = expected["wf.dag"].decode()
    assert "CATEGORY warp_" in dag and "summary" in dag  # a throttled label; a label of one job
    # the isr jobs end differently: the label's suffix is cut where they differ
    assert re.search(r"bps_args=\"\d+ --job isr_1_Cam_1 .*--input-locations", dag)


def test_the_dag_of_a_streamed_workflow_takes_the_jobs_path_for_restart_overrides(tmp_path, monkeypatch):
    from bps.wms.htcondor import translator

    built, streamed = _with_added_arguments(demo_quanta(), _options())
    monkeypatch.setattr(translator, "_column_node_lines", None)  # must not be used
    overrides = translator.NodeOverrides(memory_mb={"isr_1_Cam_1": 9000})
    translator.write_dag(built, tmp_path / "built", overrides)
    translator.write_dag(streamed, tmp_path / "streamed", overrides)
    before, after = (_files_of(tmp_path / d) for d in ("built", "streamed"))
    assert after["wf.dag"].replace(b"/streamed/", b"/built/") == before["wf.dag"]
    assert b'bps_memory="9000"' in after["wf.dag"]


def test_workflow_json_of_a_streamed_workflow_with_added_arguments_is_the_built_one(tmp_path):
    built, streamed = _with_added_arguments(demo_quanta(), _options())
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()


def test_a_streamed_job_name_that_needs_json_escapes_is_written_as_when_built(tmp_path, monkeypatch):
    """Job names are file-name safe when built; should one not be, both writers still escape it."""
    from bps import workflow_stream
    from bps.wms.htcondor import translator

    monkeypatch.setattr(workflow_stream, "safe_name", lambda text: text + ' "é\\')
    streamed = build_streamed_workflow(_chains(), options(), path_of).workflow
    built = GenericWorkflowCopy.of(streamed)
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()
    monkeypatch.setattr(translator, "safe_name", lambda text: text.replace(" ", "_").replace('"', "q"))
    translator.write_dag(built, tmp_path / "dag")
    expected = _files_of(tmp_path / "dag")
    (tmp_path / "dag").rename(tmp_path / "built")
    translator.write_dag(streamed, tmp_path / "dag")
    assert _files_of(tmp_path / "dag") == expected


class GenericWorkflowCopy:
    @staticmethod
    def of(workflow):
        """A workflow of plain `Job` objects equal to ``workflow`` (its writers take the jobs' path)."""
        from dataclasses import replace

        return replace(workflow, jobs=dict(workflow.jobs.items()), parents=dict(workflow.parents.items()))


def test_a_streamed_label_over_a_slot_is_refused_naming_its_first_job_as_when_built(tmp_path):
    from bps.wms.htcondor.checks import check_workflow

    opts = options(resources_for=lambda label: Resources(memory_mb=99_999 if label == "warp" else 100))
    built = build_workflow(demo_quanta(), opts, path_of)
    streamed = build_streamed_workflow(demo_quanta(), opts, path_of).workflow
    problems = check_workflow(built, tmp_path)
    assert check_workflow(streamed, tmp_path) == problems
    assert any("label 'warp' asks for memory_mb=99999 (job warp_" in p for p in problems)


def test_streamed_input_files_of_both_kinds_in_one_pass_are_the_built_ones(tmp_path, monkeypatch):
    """Locations and checks grouped in one pass over the jobs: the same files as two passes over
    the built jobs, and each job's ``--input-locations`` still before its ``--input-checks``."""
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 1)  # a file per job: groups end at different jobs
    built = build_workflow(demo_quanta(), _options(), path_of)
    streamed = build_streamed_workflow(demo_quanta(), _options(), path_of)
    raws = sorted({f.lfn for job in built.jobs.values() for f in job.inputs if f.producer is None})
    locations = {lfn: f"elsewhere/{lfn}" for lfn in raws[1:]}
    checks = {lfn: [len(lfn), "sum"] for lfn in raws[:-1]}
    kinds = {"locations": (locations, "--input-locations"), "checks": (checks, "--input-checks")}
    (tmp_path / "built").mkdir()
    (tmp_path / "streamed").mkdir()
    for name, (by_lfn, option) in kinds.items():
        prepare_mod._write_shared_input_files(built, by_lfn, tmp_path / "built" / name, option)
    prepare_mod._write_streamed_inputs(
        streamed, [(by_lfn, tmp_path / "streamed" / name, option) for name, (by_lfn, option) in kinds.items()]
    )
    before, after = _files_of(tmp_path / "built"), _files_of(tmp_path / "streamed")
    assert after == before and len(after) == 2 * (len(raws) - 1)
    as_built = json.dumps(workflow_to_json(built)["jobs"]).replace(str(tmp_path / "built"), "DIR")
    as_streamed = json.dumps(workflow_to_json(streamed.workflow)["jobs"])
    assert as_streamed.replace(str(tmp_path / "streamed"), "DIR") == as_built
    assert all(
        job.arguments.index("--input-locations") < job.arguments.index("--input-checks")
        for job in streamed.workflow.jobs.values()
        if "--input-checks" in job.arguments and "--input-locations" in job.arguments
    )


def test_workflow_json_of_a_streamed_workflow_falls_back_to_its_jobs_when_a_label_holds_the_mark(
    tmp_path, monkeypatch
):
    from bps import workflow_io

    built, streamed = _with_added_arguments(demo_quanta(), _options())
    monkeypatch.setattr(workflow_io, "_MARK", "warp")  # a label's own value: its template cannot be cut
    assert workflow_io._job_pieces(streamed.jobs["warp_0_sm_0_1"]) is None
    real, calls = workflow_io._write_objects, []
    monkeypatch.setattr(workflow_io, "_write_objects", lambda *a: calls.append(a[0]) or real(*a))
    save_workflow(built, tmp_path / "built.json")
    save_workflow(streamed, tmp_path / "streamed.json")
    assert calls == [built, streamed]  # the streamed one wrote nothing before falling back
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "built.json").read_bytes()
