"""The Pegasus documents of a streamed workflow, encoded from its columns, are the generic translator's.

`bps.wms.pegasus.streamed` writes ``compute.yml``, ``replicas.yml``, ``job_map.json`` and
``outputs.map`` of an unclustered prepare straight from the columns of `bps.workflow_stream`.
Each test translates the same streamed workflow twice, through the streamed encoder and
through the generic translator (which reads the workflow a `Job` at a time), and compares
the files byte for byte; the tests of `bps.workflow_stream` compare whole prepares.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support.toy_pipeline import TASKS_PYTHONPATH, ToyPipeline, prepare
from test_bps_workflow_builder import CALEXP, RAW, add_quantum, demo_quanta, ds, options, path_of

from bps import prepare as prepare_mod
from bps.wms.base import WmsError
from bps.wms.pegasus import schema
from bps.wms.pegasus import streamed as streamed_mod
from bps.wms.pegasus.service import check
from bps.wms.pegasus.translator import PEGASUS_SUBDIR, translate, write_plan
from bps.workflow import Resources, SiteConfig
from bps.workflow_stream import StreamedWorkflow, build_streamed_workflow
from supertask.quantum import Quantum
from supertask.repo.dataset import DatasetType

_CREATED = re.compile(rb'"createdOn":"[^"]*"')


def _site(**settings) -> SiteConfig:
    settings.setdefault("shared_scratch", "/scratch/pegasus")
    settings.setdefault("pegasus_home", "/opt/pegasus")
    return SiteConfig(name="pool", wms="pegasus", max_memory_mb=8000, pegasus=settings)


def _streamed(tmp_path: Path, quanta=None, **kw) -> StreamedWorkflow:
    sizes = {"isr": Resources(memory_mb=1000), "coadd": Resources(memory_mb=3000, walltime_s=60)}
    kw.setdefault("site", _site())
    opts = options(resources_for=lambda label: sizes.get(label, Resources()), throttles={"warp": 2}, **kw)
    opts.submit_dir = str(tmp_path / "submit")
    opts.graph_file = str(tmp_path / "g.qgraph")
    opts.repo = str(tmp_path / "repo")
    return build_streamed_workflow(quanta if quanta is not None else demo_quanta(), opts, path_of)


def _translate(workflow, out: Path, monkeypatch, *, fast: bool):
    """The plan and written files (time stamps blanked), through the streamed encoder or not."""
    taken: list[bool] = []
    real = streamed_mod.translate_streamed

    def spy(*args, **kw):
        plan = real(*args, **kw) if fast else None
        taken.append(plan is not None)
        return plan

    if out.exists():
        shutil.rmtree(out)  # both translations write the same paths into their files
    with monkeypatch.context() as patch:
        patch.setattr(streamed_mod, "translate_streamed", spy)
        plan = translate(workflow, out, datastore_locations=True)
        write_plan(plan, out)
    files = {
        p.name: _CREATED.sub(b'"createdOn":""', p.read_bytes()) for p in sorted(out.iterdir()) if p.is_file()
    }
    return plan, files, taken == [True]


def _off_template_inputs(tmp_path: Path, streamed: StreamedWorkflow) -> None:
    """What prepare does for inputs registered off their template path: paths, then argument files."""
    locations = {}
    for k, lfn, _, _ in list(streamed.overall_inputs())[::2]:
        locations[lfn] = f"elsewhere/{lfn}.npy"
        streamed.set_input_path(k, locations[lfn])
    checks = {lfn: [10, "sha256:00"] for _, lfn, _, _ in streamed.overall_inputs()}
    prepare_mod._write_streamed_inputs(
        streamed,
        [
            (locations, tmp_path / "input_locations", "--input-locations"),
            (checks, tmp_path / "input_checks", "--input-checks"),
        ],
    )


@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_the_documents_of_a_streamed_workflow_are_the_generic_translators_bytes(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(streamed_mod, "CHUNK", chunk)
    monkeypatch.setattr(streamed_mod, "JOB_CHUNK", chunk)
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 3)  # several argument files, shared by jobs
    streamed = _streamed(tmp_path)
    _off_template_inputs(tmp_path, streamed)
    workflow = streamed.workflow
    assert any("--input-locations" in job.arguments for job in workflow.jobs.values())
    generic_plan, generic, _ = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=False)
    plan, files, fast = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=True)
    assert fast, "the streamed encoder gave the work back to the generic translator"
    assert sorted(files) == sorted(generic)
    assert [name for name in generic if files[name] != generic[name]] == []
    assert schema.validate_directory(tmp_path / "pegasus") == {name: [] for name in schema.SCHEMA_OF}
    # an input stored elsewhere is listed where it is; its checks are not Pegasus's to stage
    replicas = json.loads(files["replicas.yml"])["replicas"]
    assert any(
        r["pfns"][0]["pfn"].endswith(".npy") and "/elsewhere/" in r["pfns"][0]["pfn"] for r in replicas
    )
    assert b"--input-checks" not in files["compute.yml"] and b"--input-locations" not in files["compute.yml"]
    # what the plan says besides its files
    assert dict(plan.job_map) == dict(generic_plan.job_map)
    assert list(plan.job_map) == list(generic_plan.job_map)
    assert dict(plan.output_locations) == dict(generic_plan.output_locations)
    assert len(plan.output_locations) == len(generic_plan.output_locations)
    assert plan.datastore_locations == generic_plan.datastore_locations
    assert (plan.final_id, plan.compute_id) == (generic_plan.final_id, generic_plan.compute_id)
    assert (tmp_path / "pegasus" / "job_map.json").read_text() == json.dumps(
        dict(plan.job_map), separators=(",", ":")
    )


@pytest.mark.parametrize(
    ("chunk", "locations", "taken"),
    [
        (2, False, [True, True, False, False, False, False]),  # isr pairs, then other labels' jobs
        (3, False, [True, False, False, False]),  # the second chunk mixes isr and warp
        (2, True, [False] * 6),  # each isr pair's jobs name different argument files
    ],
)
def test_chunks_of_consecutive_one_in_one_out_jobs_are_encoded_at_once_as_job_by_job(
    tmp_path, monkeypatch, chunk, locations, taken
):
    """A chunk of consecutive jobs of one label and the same extra arguments, each reading one
    file and writing one (the demo's isr jobs) is encoded at once (`_encode_run`); a chunk
    mixing labels or extra arguments, or of jobs of several files, goes job by job. Both are
    the generic translator's bytes."""
    monkeypatch.setattr(streamed_mod, "JOB_CHUNK", chunk)
    monkeypatch.setattr(prepare_mod, "LOCATIONS_PER_FILE", 3)
    streamed = _streamed(tmp_path)
    if locations:
        _off_template_inputs(tmp_path, streamed)
    workflow = streamed.workflow
    _, generic, _ = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=False)
    took: list[bool] = []
    real = streamed_mod._JobEncoder._encode_run

    def spy(self, jobs):
        text = real(self, jobs)
        took.append(text is not None)
        return text

    monkeypatch.setattr(streamed_mod._JobEncoder, "_encode_run", spy)
    _, files, fast = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=True)
    assert fast and files == generic
    assert took[-len(taken) :] == taken  # the documents' chunks, after the first jobs' checks


_quantum = add_quantum


def test_jobs_whose_names_are_not_their_pegasus_ids_get_the_generic_translators_ids(tmp_path, monkeypatch):
    quanta: list[Quantum] = []
    thing = DatasetType("thing", ("v",), "NumpyArray")
    # "x_a.b" and "x_a_b" both become "x_a_b": the one first in the workflow keeps it
    for value in ("a.b", "a_b"):
        did = dict(instrument="Cam", visit=1, detector=value)
        _quantum(quanta, "x", {"v": value}, [ds(RAW, "raw/run", **did)], [ds(thing, v=value)])
    _quantum(quanta, "7", {}, [ds(thing, v="a.b")], [ds(CALEXP, instrument="Cam", visit=7, detector=7)])
    workflow = _streamed(tmp_path, quanta).workflow
    assert list(workflow.jobs) == ["x_a.b", "x_a_b", "7"]
    generic_plan, generic, _ = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=False)
    plan, files, fast = _translate(workflow, tmp_path / "pegasus", monkeypatch, fast=True)
    assert fast
    assert list(plan.job_map) == ["x_a_b", "x_a_b-2", "j7", "finalize"] == list(generic_plan.job_map)
    assert files == generic
    dependencies = json.loads(files["compute.yml"])["jobDependencies"]
    assert dependencies == [{"id": "x_a_b", "children": ["j7"]}]


def test_a_dataset_named_like_a_jobs_manifest_is_refused_as_the_generic_translator_refuses_it(
    tmp_path, monkeypatch
):
    quanta: list[Quantum] = []
    clash = DatasetType("t_a", ("k",), "NumpyArray")
    _quantum(
        quanta,
        "p",
        {"k": 1},
        [ds(RAW, "raw/run", instrument="Cam", visit=1, detector=1)],
        [ds(clash, k="x.manifest.json")],
    )
    _quantum(quanta, "t_a.k-x", {}, [], [ds(CALEXP, instrument="Cam", visit=1, detector=1)])
    workflow = _streamed(tmp_path, quanta).workflow
    for fast in (False, True):
        with pytest.raises(WmsError, match="its manifest name 't_a.k-x.manifest.json' is already the name"):
            _translate(workflow, tmp_path / str(fast), monkeypatch, fast=fast)


def test_the_resource_check_of_a_streamed_workflow_names_the_same_job_as_for_every_job(tmp_path):
    workflow = _streamed(tmp_path, site=_site()).workflow
    workflow.site.max_memory_mb = 2000  # coadd asks 3000
    with pytest.raises(WmsError) as streamed:
        check(workflow)
    assert streamed_mod.label_jobs(workflow) is not None
    jobs = dict(workflow.jobs)  # a plain dictionary: every job is checked
    workflow.jobs = jobs
    with pytest.raises(WmsError) as every:
        check(workflow)
    assert str(streamed.value) == str(every.value)
    assert "label 'coadd' asks for memory_mb=3000 (job coadd_0_sm_0)" in str(streamed.value)


def test_bps_prepare_of_an_unclustered_pegasus_workflow_encodes_its_documents_from_the_columns(
    tmp_path, monkeypatch
):
    site = {"environment": {"PYTHONPATH": TASKS_PYTHONPATH}}  # the toy tasks, for prepare's import check
    toy = ToyPipeline(run="u/test/fast", detectors=(1, 2), seed_scale=1, multiplier=2).set_up(
        tmp_path, monkeypatch, wms="pegasus", compute_site="pegasus_sharedfs", site=site
    )
    plans: list[object] = []
    real = streamed_mod.translate_streamed
    monkeypatch.setattr(
        streamed_mod, "translate_streamed", lambda *a, **kw: plans.append(real(*a, **kw)) or plans[-1]
    )
    submit = prepare(toy.submit_yaml("fast"))
    assert len(plans) == 1 and plans[0] is not None, "the streamed encoder gave the work back"
    assert schema.validate_directory(submit / PEGASUS_SUBDIR) == {name: [] for name in schema.SCHEMA_OF}
