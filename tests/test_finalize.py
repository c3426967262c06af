"""bps finalize: verified, batched, idempotent registration of staged outputs."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from bps import exit_codes
from bps.finalize import SUMMARY_FILE, finalize
from bps.staging import Manifest, StagedFile, copy_atomic, manifest_path, write_manifest
from bps.workflow import GenericWorkflow, Job, WorkflowFile, dataset_lfn
from bps.workflow_io import save_workflow
from supertask.repo.butler import Butler

RUN = "u/test/run"


def staged_job(repo: Path, submit: Path, job: str, detectors: list[int], *, manifest: bool = True) -> Job:
    """Write one output file per detector as a job would, and (optionally) its manifest."""
    files, outputs = [], []
    for det in detectors:
        data_id = {"instrument": "Cam", "detector": det}
        rel = f"{RUN}/calexp/calexp_detector-{det}.json"
        src = submit / "src" / f"{det}.json"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(json.dumps({"detector": det, "pad": "x" * det}))
        size, checksum = copy_atomic(src, repo / rel)
        lfn = dataset_lfn("calexp", data_id)
        files.append(
            StagedFile(
                lfn, "calexp", ["detector", "instrument"], "StructuredDataDict", data_id, rel, size, checksum
            )
        )
        outputs.append(WorkflowFile(lfn, "calexp", data_id, rel))
    if manifest:
        m = Manifest(
            job=job, output_run=RUN, root=str(repo.resolve()), quanta={i: [f] for i, f in enumerate(files)}
        )
        write_manifest(manifest_path(submit / "manifests", job), m)
    return Job(
        name=job, label="calibrate", quantum_ids=list(range(len(files))), arguments=[], outputs=outputs
    )


@pytest.fixture
def setup(tmp_path):
    repo = tmp_path / "repo"
    Butler.create(repo).close()
    submit = tmp_path / "submit"
    wf = GenericWorkflow(name="t", submit_dir=str(submit), graph_file="g", repo=str(repo), output_run=RUN)
    return repo, submit, wf


def registered(repo: Path) -> list:
    butler = Butler(repo, collections=[RUN])
    try:
        return butler.registry.queryDatasets("calexp", [RUN])
    finally:
        butler.close()


def test_registers_every_staged_output_and_writes_a_summary(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2, 3]))
    wf.add_job(staged_job(repo, submit, "b", [4, 5]))
    save_workflow(wf, submit / "workflow.json")
    summary = finalize(submit)
    assert summary.registered == 5 and summary.exit_code == exit_codes.SUCCESS
    assert sorted(d.dataId["detector"] for d in registered(repo)) == [1, 2, 3, 4, 5]
    saved = json.loads((submit / SUMMARY_FILE).read_text())
    assert saved["labels"]["calibrate"]["outputs_registered"] == 5


def test_rerun_registers_nothing_twice(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2]))
    save_workflow(wf, submit / "workflow.json")
    finalize(submit)
    again = finalize(submit)
    assert again.registered == 0 and again.already_registered == 2
    assert len(registered(repo)) == 2


def test_job_without_manifest_is_not_registered_but_others_are(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "ok", [1, 2]))
    wf.add_job(staged_job(repo, submit, "killed", [3], manifest=False))
    save_workflow(wf, submit / "workflow.json")
    summary = finalize(submit)
    assert sorted(d.dataId["detector"] for d in registered(repo)) == [1, 2]
    assert summary.missing == 1
    assert summary.labels["calibrate"].jobs == 2 and summary.labels["calibrate"].jobs_complete == 1


def test_file_that_fails_verification_is_rejected_and_the_rest_registered(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2]))
    save_workflow(wf, submit / "workflow.json")
    damaged = repo / RUN / "calexp" / "calexp_detector-2.json"
    damaged.write_text(damaged.read_text().replace("x", "y"))  # same size, other content
    summary = finalize(submit)
    assert [d.dataId["detector"] for d in registered(repo)] == [1]
    assert len(summary.rejected) == 1 and "checksum" in summary.rejected[0]["reason"]
    assert summary.exit_code == exit_codes.DATA_ERROR
    # after the job is rerun (file rewritten as recorded), finalize registers it
    damaged.write_text(damaged.read_text().replace("y", "x"))
    assert finalize(submit).registered == 2
    assert len(registered(repo)) == 2


def test_batches_are_bounded_by_batch_size(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", list(range(1, 8))))
    save_workflow(wf, submit / "workflow.json")
    batches: list[int] = []

    class Recorder:
        def __init__(self, repo, run):
            pass

        def dataset_type(self, name, units, storage_class):
            return name

        def insert(self, dataset_type, run, records):
            batches.append(len(records))

    finalize(submit, batch_size=3, registrar_factory=Recorder)
    assert batches == [3, 3, 1]


def test_not_a_submit_directory_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="bps prepare"):
        finalize(tmp_path)


@pytest.mark.parametrize(
    ("status", "failed", "said"), [(2, 1, "failed"), (4, 0, "cancelled"), (0, 1, "failed")]
)
def test_a_failed_or_removed_workflow_registers_everything_and_still_exits_non_zero(
    setup, status, failed, said
):
    # DAGMan's $(DAG_STATUS) / $(FAILED_COUNT) reach the FINAL node's finalize: the DAG's exit
    # status is the FINAL node's, so finalize must not call a failed or removed DAG a success.
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2]))
    save_workflow(wf, submit / "workflow.json")
    summary = finalize(submit, workflow_status=status, failed_jobs=failed)
    assert summary.registered == 2 and summary.missing == 0
    assert summary.exit_code == exit_codes.WORKFLOW_FAILED
    text = summary.text()
    if said == "failed":
        assert "reported the run failed" in text
    else:  # removed (condor_rm): cancelled, which is not a failure of the pipeline
        assert (
            "the run was cancelled (workflow status 4: removed)" in text
            and "reported the run failed" not in text
        )
    assert json.loads((submit / SUMMARY_FILE).read_text())["workflow_status"] == status


def test_a_halted_workflow_with_outputs_missing_says_cancelled_not_failed(setup):
    # `bps cancel` halts DAGMan: FINAL gets $(DAG_STATUS) 6 and the jobs it stopped as failed.
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2]))
    wf.add_job(staged_job(repo, submit, "b", [3], manifest=False))  # stopped
    save_workflow(wf, submit / "workflow.json")
    summary = finalize(submit, workflow_status=6, failed_jobs=1)
    assert summary.exit_code == exit_codes.OUTPUTS_MISSING  # the DAG must not end as a success
    text = summary.text()
    assert "the run was cancelled (workflow status 6: halted)" in text
    assert "not because the pipeline failed" in text and "reported the run failed" not in text


def test_a_successful_dag_status_keeps_finalize_a_success(setup):
    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1, 2]))
    save_workflow(wf, submit / "workflow.json")
    assert finalize(submit, workflow_status=0, failed_jobs=0).exit_code == exit_codes.SUCCESS


def test_bps_finalize_takes_the_dag_status_from_its_command_line(setup):
    from click.testing import CliRunner

    from bps.cli import main

    repo, submit, wf = setup
    wf.add_job(staged_job(repo, submit, "a", [1]))
    save_workflow(wf, submit / "workflow.json")
    ok = CliRunner().invoke(main, ["finalize", str(submit), "--dag-status", "0", "--failed-count", "0"])
    assert ok.exit_code == exit_codes.SUCCESS, ok.output
    removed = CliRunner().invoke(main, ["finalize", str(submit), "--dag-status", "4", "--failed-count", "0"])
    assert removed.exit_code == exit_codes.WORKFLOW_FAILED


@pytest.mark.parametrize("staging", ["shared", "transfer"])
def test_an_output_registered_before_with_other_bytes_is_rejected_and_the_rest_registered(setup, staging):
    # A job of a stale plan made detector 2 again, differently, after it was registered: finalize
    # refuses that one with a reason (exit 65), never registers it again nor writes over its file
    # (file transfer), and still registers the other outputs of the batch.
    from supertask.repo.dataset import DatasetType

    repo, submit, wf = setup
    butler = Butler(repo, run=RUN)
    calexp = DatasetType("calexp", ("instrument", "detector"), "StructuredDataDict")
    first = butler.put({"detector": 2, "pad": "earlier"}, calexp, {"instrument": "Cam", "detector": 2})
    path, _, checksum = butler.registry.getDatasetLocation(first)
    butler.close()
    kept = (repo / path).read_bytes()
    wf.add_job(staged_job(repo, submit, "a", [1, 3]))
    save_workflow(wf, submit / "workflow.json")
    other = submit / "src" / "2.json"
    other.write_text(json.dumps({"detector": 2, "pad": "later, longer"}))
    data_id = {"instrument": "Cam", "detector": 2}
    lfn = dataset_lfn("calexp", data_id)
    # shared staging: the job wrote at the dataset's path; file transfer: into staged/
    size, new_checksum = copy_atomic(other, repo / path if staging == "shared" else submit / "staged" / lfn)
    f = StagedFile(
        lfn, "calexp", ["detector", "instrument"], "StructuredDataDict", data_id, path, size, new_checksum
    )
    stale = Manifest(job="stale", output_run=RUN, root=str(repo.resolve()), quanta={7: [f]})
    write_manifest(manifest_path(submit / "manifests", "stale"), stale)
    summary = finalize(submit)
    assert sorted(d.dataId["detector"] for d in registered(repo)) == [1, 2, 3]
    assert summary.registered == 2
    (rejected,) = summary.rejected
    assert summary.exit_code == exit_codes.DATA_ERROR
    butler = Butler(repo, collections=[RUN])
    assert butler.registry.getDatasetLocation(first)[2] == checksum  # still the first registration
    butler.close()
    # both stagings name the registration and the way out (file transfer: found before the move)
    assert "already registered" in rejected["reason"] and "--skip-existing" in rejected["reason"]
    if staging == "transfer":
        assert (repo / path).read_bytes() == kept  # the registered file was not replaced


def test_a_finalize_killed_between_dataset_types_leaves_no_quantum_half_registered(setup, monkeypatch):
    # Each quantum makes a calexp and a src; finalize dies after inserting the calexps (the
    # first dataset type) of the batch: nothing is registered, and a rerun registers it whole.
    from supertask.repo.registry.dataset_manager import DatasetManager

    repo, submit, wf = setup
    files, outputs = {}, []
    for det in (1, 2):
        data_id = {"instrument": "Cam", "detector": det}
        files[det] = []
        for name in ("calexp", "src"):
            rel = f"{RUN}/{name}/{name}_detector-{det}.json"
            src = submit / "src" / f"{name}{det}.json"
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(json.dumps({"detector": det, "type": name}))
            size, checksum = copy_atomic(src, repo / rel)
            lfn = dataset_lfn(name, data_id)
            files[det].append(
                StagedFile(
                    lfn, name, ["detector", "instrument"], "StructuredDataDict", data_id, rel, size, checksum
                )
            )
            outputs.append(WorkflowFile(lfn, name, data_id, rel))
    manifest = Manifest(job="a", output_run=RUN, root=str(repo.resolve()), quanta=files)
    write_manifest(manifest_path(submit / "manifests", "a"), manifest)
    wf.add_job(Job(name="a", label="calibrate", quantum_ids=[1, 2], arguments=[], outputs=outputs))
    save_workflow(wf, submit / "workflow.json")

    original = DatasetManager.insertIn
    calls = []

    def dies_on_the_second_type(self, conn, datasetType, run, records):
        calls.append(datasetType)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return original(self, conn, datasetType, run, records)

    monkeypatch.setattr(DatasetManager, "insertIn", dies_on_the_second_type)
    with pytest.raises(KeyboardInterrupt):
        finalize(submit)
    monkeypatch.undo()
    butler = Butler(repo, collections=[RUN])
    try:
        for name in ("calexp", "src"):
            with contextlib.suppress(KeyError):  # the type may not be registered at all
                assert butler.registry.queryDatasets(name, [RUN]) == []
    finally:
        butler.close()
    summary = finalize(submit)
    assert summary.registered == 4 and summary.exit_code == exit_codes.SUCCESS
