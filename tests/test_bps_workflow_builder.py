"""Quanta -> generic workflow: clustering, dependencies, files, resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bps.clustering import ClusteringError, ClusterRule, cluster_quanta
from bps.workflow import GenericWorkflow, Resources
from bps.workflow_builder import BuildOptions, build_workflow
from bps.workflow_io import load_workflow, save_workflow, workflow_to_json
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

RAW = DatasetType("raw", ("detector", "instrument", "visit"), "NumpyArray")
CALEXP = DatasetType("calexp", ("detector", "instrument", "visit"), "NumpyArray")
WARP = DatasetType("warp", ("patch", "skymap", "tract", "visit"), "NumpyArray")
COADD = DatasetType("coadd", ("patch", "skymap", "tract"), "NumpyArray")
SUMMARY = DatasetType("summary", ("skymap",), "StructuredDataDict")


def ds(dt: DatasetType, run: str | None = None, **values) -> Dataset:
    return Dataset(dt, DataId(values), run=run)


def add_quantum(quanta: list[Quantum], label: str, data_id, inputs=(), outputs=()) -> Quantum:
    """Append to ``quanta`` a quantum of ``label`` over ``data_id`` reading ``inputs``, writing
    ``outputs``, numbered by its position."""
    q = Quantum(label, DataId(data_id), {}, {}, id=len(quanta))
    for d in inputs:
        q.addInput(d)
    for d in outputs:
        q.addOutput(d)
    quanta.append(q)
    return q


def demo_quanta() -> list[Quantum]:
    """isr per (visit, detector) -> warp per (visit, patch) -> coadd per patch -> summary over all patches."""
    quanta: list[Quantum] = []

    def add(label, data_id, inputs, outputs):
        add_quantum(quanta, label, data_id, inputs, outputs)

    for visit in (1, 2):
        for det in (1, 2):
            did = dict(instrument="Cam", visit=visit, detector=det)
            add("isr", did, [ds(RAW, "raw/run", **did)], [ds(CALEXP, **did)])
    for visit in (1, 2):
        for patch in (0, 1):
            calexps = [ds(CALEXP, instrument="Cam", visit=visit, detector=d) for d in (1, 2)]
            add(
                "warp",
                dict(skymap="sm", tract=0, patch=patch, visit=visit),
                calexps,
                [ds(WARP, skymap="sm", tract=0, patch=patch, visit=visit)],
            )
    for patch in (0, 1):
        warps = [ds(WARP, skymap="sm", tract=0, patch=patch, visit=v) for v in (1, 2)]
        add(
            "coadd",
            dict(skymap="sm", tract=0, patch=patch),
            warps,
            [ds(COADD, skymap="sm", tract=0, patch=patch)],
        )
    add(
        "summary",
        dict(skymap="sm"),
        [ds(COADD, skymap="sm", tract=0, patch=p) for p in (0, 1)],
        [ds(SUMMARY, skymap="sm")],
    )
    return quanta


def path_of(dataset, run):
    return f"{run}/{dataset.datasetType.name}/{'_'.join(str(v) for v in dataset.dataId.values())}.npy"


def options(**kw) -> BuildOptions:
    return BuildOptions(
        name="wf", submit_dir="/sub", graph_file="/g.qgraph", repo="/repo", output_run="out", **kw
    )


def outputs_of(wf: GenericWorkflow) -> set[str]:
    return {f.lfn for job in wf.jobs.values() for f in job.outputs}


def test_one_job_per_quantum_with_dependencies_from_datasets():
    wf = build_workflow(demo_quanta(), options(), path_of)
    assert len(wf.jobs) == 11
    warp = wf.jobs["warp_0_sm_0_1"]
    assert wf.parents[warp.name] == ["isr_1_Cam_1", "isr_2_Cam_1"]
    assert warp.arguments[:4] == ["--graph", "/g.qgraph", "--quantum", str(warp.quantum_ids[0])]
    assert "--manifest-dir" in warp.arguments and "/sub/manifests" in warp.arguments
    isr = wf.jobs["isr_1_Cam_1"]
    (raw,) = isr.inputs
    assert raw.producer is None and raw.path.startswith("raw/run/")
    assert {f.producer for f in warp.inputs} == {"isr_1_Cam_1", "isr_2_Cam_1"}
    assert wf.final is not None and wf.final.arguments[:2] == ["finalize", "/sub"]


def test_jobs_come_after_their_parents():
    wf = build_workflow(
        demo_quanta(), options(rules=[ClusterRule("per_patch", ("warp", "coadd"), ("patch",))]), path_of
    )
    seen: set[str] = set()
    for name in wf.jobs:
        assert set(wf.parents[name]) <= seen
        seen.add(name)


def test_clustering_changes_job_count_not_outputs():
    plain = build_workflow(demo_quanta(), options(), path_of)
    rules = [
        ClusterRule("per_visit", ("isr",), ("visit",)),
        ClusterRule("per_patch", ("warp", "coadd"), ("patch",)),
    ]
    clustered = build_workflow(demo_quanta(), options(rules=rules), path_of)
    assert len(clustered.jobs) == 2 + 2 + 1
    assert outputs_of(plain) == outputs_of(clustered)
    patch0 = clustered.jobs["per_patch_0"]
    assert len(patch0.quantum_ids) == 3
    # the warps a coadd reads are made inside the cluster: not inputs to stage
    assert {f.dataset_type for f in patch0.inputs} == {"calexp"}
    assert set(clustered.parents["per_patch_0"]) == {"per_visit_1", "per_visit_2"}
    assert all(name not in parents for name, parents in clustered.parents.items())


def test_max_size_splits_clusters():
    rules = [ClusterRule("all_isr", ("isr",), ("instrument",), max_size=3)]
    clusters = [c for c in cluster_quanta(demo_quanta(), rules) if c.label == "all_isr"]
    assert [len(c.quantum_ids) for c in clusters] == [3, 1]
    assert len({c.name for c in clusters}) == 2


def test_cycle_through_a_gathering_task_is_reported_with_labels():
    # warps and the summary in one job: summary reads coadds, which read that same job's warps
    rules = [ClusterRule("mixed", ("warp", "summary"), ())]
    with pytest.raises(ClusteringError, match=r"cycle.*'summary'.*'warp'|cycle.*'warp'"):
        build_workflow(demo_quanta(), options(rules=rules), path_of)


def test_cluster_resources_take_the_largest_and_sum_walltime():
    sizes = {
        "warp": Resources(memory_mb=4000, walltime_s=10),
        "coadd": Resources(memory_mb=1000, cpus=2, walltime_s=5),
    }
    opts = options(
        rules=[ClusterRule("per_patch", ("warp", "coadd"), ("patch",))],
        resources_for=lambda label: sizes.get(label, Resources()),
    )
    wf = build_workflow(demo_quanta(), opts, path_of)
    r = wf.jobs["per_patch_0"].resources
    assert (r.memory_mb, r.cpus, r.walltime_s) == (4000, 2, 10 + 10 + 5)


def test_overall_input_without_run_is_refused():
    quanta = demo_quanta()
    quanta[0].inputs["raw"][0].run = None
    with pytest.raises(ValueError, match="no RUN"):
        build_workflow(quanta, options(), path_of)


def test_workflow_round_trips_through_json(tmp_path):
    wf = build_workflow(demo_quanta(), options(throttles={"isr": 2}), path_of)
    save_workflow(wf, tmp_path / "workflow.json")
    again = load_workflow(tmp_path / "workflow.json")
    assert workflow_to_json(again) == workflow_to_json(wf)
    assert again.jobs["isr_1_Cam_1"].throttle == "isr"
    empty = GenericWorkflow("w", str(tmp_path), "g", "r", "run")
    save_workflow(empty, tmp_path / "empty.json")
    assert workflow_to_json(load_workflow(tmp_path / "empty.json")) == workflow_to_json(empty)


def test_workflow_file_holds_each_dataset_once_and_jobs_share_it_after_loading(tmp_path):
    import json

    wf = build_workflow(demo_quanta(), options(), path_of)
    save_workflow(wf, tmp_path / "workflow.json")
    data = json.loads((tmp_path / "workflow.json").read_text())
    assert data["format"] == 3
    distinct = {f.lfn for job in wf.jobs.values() for f in (*job.inputs, *job.outputs)}
    references = sum(len(job.inputs) + len(job.outputs) for job in wf.jobs.values())
    assert len(data["files"]) == len(distinct) < references  # intermediates are read by other jobs
    again = load_workflow(tmp_path / "workflow.json")
    made = {f.lfn: f for job in again.jobs.values() for f in job.outputs}
    read = [f for job in again.jobs.values() for f in job.inputs if f.producer is not None]
    assert read and all(made[f.lfn] is f for f in read)


def test_a_workflow_file_of_format_1_still_loads(tmp_path):
    import json

    wf = build_workflow(demo_quanta(), options(throttles={"isr": 2}), path_of)
    (tmp_path / "old.json").write_text(json.dumps(workflow_to_json(wf)))  # what earlier releases wrote
    assert workflow_to_json(load_workflow(tmp_path / "old.json")) == workflow_to_json(wf)


def test_an_unknown_or_broken_workflow_file_is_refused_with_the_fix(tmp_path):
    from bps.workflow_io import WorkflowFileError

    (tmp_path / "future.json").write_text('{"format": 9}')
    with pytest.raises(WorkflowFileError, match="format 9"):
        load_workflow(tmp_path / "future.json")
    (tmp_path / "cut.json").write_text('{"format": 2, "name": ')
    with pytest.raises(WorkflowFileError, match="prepare the submit directory again"):
        load_workflow(tmp_path / "cut.json")


def test_input_locations_are_shared_files_of_bounded_size(tmp_path, monkeypatch):
    import json

    from bps import prepare as prepare_mod
    from bps.workflow import GenericWorkflow, Job, WorkflowFile, dataset_lfn
    from supertask.repo.dataid import DataId

    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 4)
    wf = GenericWorkflow("w", str(tmp_path), "g.qgraph", "repo", "run")
    off_template = {}
    for j in range(5):  # jobs reading 2, 2, 1, 3, 2 off-template raws
        n = (2, 2, 1, 3, 2)[j]
        files = []
        for k in range(n):
            data_id = {"visit": j, "detector": k}
            off_template[("raw", DataId(data_id))] = f"elsewhere/{j}/{k}"
            files.append(WorkflowFile(dataset_lfn("raw", data_id), "raw", data_id, f"raw/{j}/{k}"))
        wf.add_job(Job(f"job{j}", "isr", [j], [], inputs=files))
    prepare_mod._write_input_locations(wf, off_template, tmp_path)
    written = sorted((tmp_path / "input_locations").iterdir())
    assert [p.name for p in written] == ["000000.json", "000001.json", "000002.json"]
    assert all(len(json.loads(p.read_text())) <= 4 for p in written)
    for job in wf.jobs.values():
        path = job.arguments[job.arguments.index("--input-locations") + 1]
        locations = json.loads(open(path).read())
        assert all(locations[f.lfn] == off_template[("raw", DataId(f.data_id))] for f in job.inputs)


def test_input_location_files_are_written_without_a_sync_each(tmp_path, monkeypatch):
    """Like the DAG and workflow.json, they are written before anything is submitted (a crash
    means preparing again): a million jobs' files were a thousand syncs of the disk."""
    import json
    import os

    from bps import prepare as prepare_mod

    def refuse(fd):
        raise AssertionError("synced")

    monkeypatch.setattr(os, "fsync", refuse)
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 2)
    by_lfn = {f"raw{j}": f"elsewhere/{j}" for j in range(5)}
    added = []
    prepare_mod._write_grouped_inputs(
        ((j, [f"raw{j}"]) for j in range(5)),
        by_lfn,
        tmp_path / "input_locations",
        "--input-locations",
        lambda jobs, arguments: added.append((list(jobs), arguments)),
    )
    assert [jobs for jobs, _ in added] == [[0, 1], [2, 3], [4]]
    for jobs, (option, path) in added:
        assert option == "--input-locations"
        assert json.loads(open(path).read()) == {f"raw{j}": f"elsewhere/{j}" for j in jobs}


def _imports(module_file: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import in a file, function-level ones included."""
    import ast

    found = []
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_the_workflow_model_does_not_import_its_json_form_and_that_uses_no_private_names():
    import bps.workflow
    import bps.workflow_io

    model = _imports(Path(bps.workflow.__file__))
    assert not [m for m, _ in model if m.endswith("workflow_io")]
    io_names = [n for m, names in _imports(Path(bps.workflow_io.__file__)) if m == ".workflow" for n in names]
    assert io_names and not [n for n in io_names if n.startswith("_")]


@given(
    st.text(max_size=12),
    st.dictionaries(
        st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=4
    ),
)
@settings(max_examples=500, deadline=None)
def test_logical_file_names_are_the_safe_form_of_type_and_sorted_data_id(dataset_type, data_id):
    import re

    from bps.workflow import dataset_lfn

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"

    parts = [dataset_type] + [f"{k}-{data_id[k]}" for k in sorted(data_id)]
    assert dataset_lfn(dataset_type, data_id) == safe(".".join(safe(p) for p in parts))


def test_a_rule_whose_units_one_of_its_labels_lacks_is_an_error_naming_why():
    # isr quanta have no patch: the rule would silently cluster only the warps
    rules = [ClusterRule("per_patch", ("isr", "warp"), ("patch",))]
    with pytest.raises(ClusteringError) as err:
        build_workflow(demo_quanta(), options(rules=rules), path_of)
    first, fix = str(err.value).splitlines()
    assert first == (
        "clustering rule 'per_patch' groups by ['patch'], but task label 'isr' has no 'patch' "
        "(its quanta have ['detector', 'instrument', 'visit']): they would stay single jobs"
    )
    assert "give each rule units that all its labels have, or one rule per group of labels" in fix


def test_a_rule_without_labels_still_clusters_only_the_quanta_that_have_its_units():
    # No labels named: "every quantum that has these units" is what the rule says.
    clusters = cluster_quanta(demo_quanta(), [ClusterRule("per_patch", (), ("patch",))])
    assert {c.label for c in clusters} == {"per_patch", "isr", "summary"}


def test_resources_set_for_a_cluster_name_are_what_its_jobs_ask():
    opts = options(
        rules=[ClusterRule("per_patch", ("warp", "coadd"), ("patch",))],
        resources_for=lambda label: Resources(memory_mb=1000),
        cluster_resources={"per_patch": Resources(memory_mb=8192, cpus=2)},
    )
    wf = build_workflow(demo_quanta(), opts, path_of)
    assert (wf.jobs["per_patch_0"].resources.memory_mb, wf.jobs["per_patch_0"].resources.cpus) == (8192, 2)
    assert wf.jobs["isr_1_Cam_1"].resources.memory_mb == 1000
