""" "No work" in batch: tombstones in place of outputs, consumers that drop them, finalize that skips them.

The unit tests use the stand-in backend of ``support.toy_pipeline`` (the pipeline ``make -> double``
per detector, and ``total`` gathering every ``doubled``) in file-transfer staging, where
nothing but staged files connects one job to the next: that is where a side channel
(the former ``manifests/nowork/`` markers) could not reach the consumer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.toy_pipeline import STANDIN_DOUBLED as DOUBLED
from support.toy_pipeline import STANDIN_MADE as MADE
from support.toy_pipeline import STANDIN_RUN as RUN
from support.toy_pipeline import STANDIN_SEED as SEED
from support.toy_pipeline import STANDIN_TOTAL as TOTAL
from support.toy_pipeline import StandInBackend, registered_checksums, write_stand_in_seeds

from bps import exit_codes
from bps.finalize import finalize
from bps.run_quantum import run_job
from bps.staging import (
    Manifest,
    StagedFile,
    copy_atomic,
    is_tombstone,
    manifest_path,
    read_manifest,
    read_tombstone,
    write_manifest,
    write_tombstone,
)
from bps.workflow import GenericWorkflow, Job, WorkflowFile, dataset_lfn
from bps.workflow_io import save_workflow
from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType

DETECTORS = (1, 2, 3)


def lfn(dtype: DatasetType, detector: int | None = None) -> str:
    return dataset_lfn(dtype.name, {} if detector is None else {"detector": detector})


@pytest.fixture
def repo(tmp_path) -> Path:
    return write_stand_in_seeds(tmp_path / "repo", DETECTORS)


def transfer_job(
    backend: StandInBackend, tmp_path: Path, ids: list[int], name: str, inputs: dict[str, Path]
) -> Any:
    """Run a job in its own work directory as Pegasus would: inputs copied in by lfn, outputs left by lfn."""
    work = tmp_path / "work" / name
    work.mkdir(parents=True)
    for lfn_, src in inputs.items():
        shutil.copyfile(src, work / lfn_)
    result = run_job(
        "g.qgraph",
        ids,
        repo=None,
        job=name,
        manifest_dir=work,
        inputs_dir=work,
        outputs_dir=work,
        scratch=str(tmp_path / "scratch"),
        backend=backend,
    )
    return result, work


def seeds(repo: Path, *detectors: int) -> dict[str, Path]:
    return {lfn(SEED, d): repo / "in" / "seed" / f"detector{d}.json" for d in detectors}


def test_no_work_quantum_leaves_a_tombstone_under_the_output_name_and_exits_0(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS, no_work={2})
    result, work = transfer_job(backend, tmp_path, [1], "make2", seeds(repo, 2))
    assert result.exit_code == exit_codes.SUCCESS and result.no_work == [1]
    said = read_tombstone(work / lfn(MADE, 2))
    assert said == {"dataset_type": "made", "data_id": {"detector": 2}, "reason": said["reason"]}
    assert "no pixels on detector 2" in said["reason"]


def test_single_input_consumer_of_a_tombstone_has_no_work_and_passes_it_on(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS, no_work={2})
    _, made = transfer_job(backend, tmp_path, [1], "make2", seeds(repo, 2))
    result, work = transfer_job(backend, tmp_path, [4], "double2", {lfn(MADE, 2): made / lfn(MADE, 2)})
    assert result.no_work == [4] and result.exit_code == exit_codes.SUCCESS
    assert backend.tasks["double"].calls == []  # the task itself never ran
    assert is_tombstone(work / lfn(DOUBLED, 2))
    assert "made" in read_tombstone(work / lfn(DOUBLED, 2))["reason"]


def test_gathering_consumer_drops_tombstoned_inputs_and_runs_with_the_rest(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS, no_work={2})
    _, makers = transfer_job(backend, tmp_path, [0, 1, 2], "makers", seeds(repo, *DETECTORS))
    made = {lfn(MADE, d): makers / lfn(MADE, d) for d in DETECTORS}
    _, doublers = transfer_job(backend, tmp_path, [3, 4, 5], "doublers", made)
    doubled = {lfn(DOUBLED, d): doublers / lfn(DOUBLED, d) for d in DETECTORS}
    result, work = transfer_job(backend, tmp_path, [6], "total", doubled)
    assert result.ran == [6]
    assert backend.tasks["total"].calls == [{"doubled": [1, 3]}]
    assert json.loads((work / lfn(TOTAL)).read_text()) == 22 + 62


def test_gathering_consumer_left_with_only_tombstones_has_no_work(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS, no_work=set(DETECTORS))
    _, makers = transfer_job(backend, tmp_path, [0, 1, 2, 3, 4, 5], "front", seeds(repo, *DETECTORS))
    doubled = {lfn(DOUBLED, d): makers / lfn(DOUBLED, d) for d in DETECTORS}
    result, work = transfer_job(backend, tmp_path, [6], "total", doubled)
    assert result.no_work == [6] and is_tombstone(work / lfn(TOTAL))


def test_rerun_of_a_job_with_no_work_is_idempotent(repo, tmp_path):
    def run_all(backend):
        return run_job(
            "g",
            [0, 1, 2, 3, 4, 5, 6],
            repo=str(repo),
            job="all",
            manifest_dir=tmp_path / "m",
            scratch=str(tmp_path / "s"),
            backend=backend,
        )

    first = run_all(StandInBackend(repo, DETECTORS, no_work={2}))
    assert first.no_work == [1, 4] and first.ran == [0, 2, 3, 5, 6]
    tombstone = repo / RUN / "made" / "detector2.json"
    before = tombstone.stat().st_mtime_ns
    again = run_all(StandInBackend(repo, DETECTORS, no_work={2}))
    assert again.skipped_done == [0, 1, 2, 3, 4, 5, 6] and again.ran == [] and again.no_work == []
    assert tombstone.stat().st_mtime_ns == before
    # a partial rerun (the consumer's record lost) sees the tombstone again and drops that input
    mpath = manifest_path(tmp_path / "m", "all")
    manifest = read_manifest(mpath)
    del manifest.quanta[6]
    write_manifest(mpath, manifest)
    rerun_backend = StandInBackend(repo, DETECTORS, no_work={2})
    third = run_all(rerun_backend)
    assert third.ran == [6] and rerun_backend.tasks["total"].calls == [{"doubled": [1, 3]}]


def test_output_a_successful_task_did_not_write_gets_a_tombstone_so_consumers_do_not_wait(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    backend.tasks["make"].runQuantum = lambda quantum, butler: None  # succeeds, writes nothing
    result, work = transfer_job(backend, tmp_path, [0], "lazy", seeds(repo, 1))
    assert result.ran == [0] and result.exit_code == exit_codes.SUCCESS
    assert read_tombstone(work / lfn(MADE, 1))["reason"] == "make did not write it"


def test_version_1_manifest_without_tombstones_is_still_read(tmp_path):
    path = tmp_path / "old.manifest.json"
    entry = {
        "lfn": "x",
        "dataset_type": "made",
        "units": ["detector"],
        "storage_class": "Json",
        "data_id": {"detector": 1},
        "path": "p",
        "size": 1,
        "checksum": "c",
    }
    path.write_text(
        json.dumps({"version": 1, "job": "old", "output_run": RUN, "root": "", "quanta": {"0": [entry]}})
    )
    (f,) = read_manifest(path).quanta[0]
    assert f.lfn == "x" and not f.tombstone


# -- finalize ------------------------------------------------------------------------------

CALEXP = DatasetType("calexp", ("detector", "instrument"), "StructuredDataDict")


def _finalize_setup(tmp_path: Path, *, flag_tombstone: bool = True, second_job_done: bool = True):
    """Job ``a``: detector 1 made, detector 2 no work (tombstone); job ``b``: detector 3 made (if done)."""
    repo = tmp_path / "repo"
    Butler.create(repo).close()
    submit = tmp_path / "submit"
    wf = GenericWorkflow(name="t", submit_dir=str(submit), graph_file="g", repo=str(repo), output_run=RUN)

    def staged(det: int, tombstone: bool) -> StagedFile:
        data_id = {"instrument": "Cam", "detector": det}
        rel = f"{RUN}/calexp/calexp_detector-{det}.json"
        if tombstone:
            size, checksum = write_tombstone(repo / rel, "calexp", data_id, "no pixels")
        else:
            src = tmp_path / "src" / f"{det}.json"
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(json.dumps({"detector": det}))
            size, checksum = copy_atomic(src, repo / rel)
        lfn_ = dataset_lfn("calexp", data_id)
        return StagedFile(
            lfn_,
            "calexp",
            list(CALEXP.units),
            CALEXP.storageClass,
            data_id,
            rel,
            size,
            checksum,
            tombstone=tombstone and flag_tombstone,
        )

    def job(name: str, dets: list[int], quanta: dict[int, list[StagedFile]] | None) -> None:
        outputs = []
        for det in dets:
            data_id = {"instrument": "Cam", "detector": det}
            outputs.append(
                WorkflowFile(
                    dataset_lfn("calexp", data_id),
                    "calexp",
                    data_id,
                    f"{RUN}/calexp/calexp_detector-{det}.json",
                )
            )
        if quanta is not None:
            write_manifest(
                manifest_path(submit / "manifests", name),
                Manifest(job=name, output_run=RUN, root=str(repo.resolve()), quanta=quanta),
            )
        wf.add_job(
            Job(
                name=name, label="calibrate", quantum_ids=[det for det in dets], arguments=[], outputs=outputs
            )
        )

    job("a", [1, 2], {1: [staged(1, False)], 2: [staged(2, True)]})
    job("b", [3], {3: [staged(3, False)]} if second_job_done else None)
    save_workflow(wf, submit / "workflow.json")
    return repo, submit


def registered_detectors(repo: Path) -> list[int]:
    butler = Butler(repo, collections=[RUN])
    try:
        return sorted(d.dataId["detector"] for d in butler.registry.queryDatasets("calexp", [RUN]))
    finally:
        butler.close()


@pytest.mark.parametrize("flag_tombstone", [True, False], ids=["listed-as-tombstone", "disguised-as-output"])
def test_finalize_never_registers_a_tombstone_and_removes_it_when_the_workflow_is_complete(
    tmp_path, flag_tombstone
):
    repo, submit = _finalize_setup(tmp_path, flag_tombstone=flag_tombstone)
    summary = finalize(submit)
    assert registered_detectors(repo) == [1, 3] and summary.registered == 2
    assert summary.no_work == 1 and summary.missing == 0 and not summary.rejected
    assert summary.labels["calibrate"].outputs_no_work == 1
    assert summary.tombstones_removed == 1
    assert not (repo / RUN / "calexp" / "calexp_detector-2.json").exists()
    assert (repo / RUN / "calexp" / "calexp_detector-1.json").exists()
    again = finalize(submit)  # idempotent: nothing new, the no-work outcome still reported
    assert again.registered == 0 and again.already_registered == 2 and again.no_work == 1
    assert registered_detectors(repo) == [1, 3]


def test_finalize_keeps_tombstones_while_the_workflow_is_incomplete(tmp_path):
    repo, submit = _finalize_setup(tmp_path, second_job_done=False)
    summary = finalize(submit)
    assert registered_detectors(repo) == [1] and summary.missing == 1 and summary.no_work == 1
    assert summary.tombstones_removed == 0
    assert is_tombstone(repo / RUN / "calexp" / "calexp_detector-2.json")  # a restart's consumers need it


# -- the proof on the demo: tile 0 has makeWarp quanta with no work ------------------------
# Every dataset `supertask run` registers (all types, with checksums) is registered by the batch run,
# and nothing else; finalize reports the no-work outputs of the same labels and leaves no tombstone.

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
INPUTS = ["DemoCam/defaults"]
#: A patch of tile 0 where visit 101's warp has no pixels (``makeWarp`` finds no work; the fixture
#: asserts it), so that the three workflow systems take under 30 s together on 2 cores. The whole
#: tile (``tract = 0``: 141 quanta, 9 of them no work, about 4 minutes) passes too: set the variable.
WHERE = os.environ.get("BPS_NO_WORK_PROOF_WHERE", "tract = 0 AND patch = 12")
BIN = Path(sys.executable).parent


def tombstones_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and is_tombstone(p)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, dict, set[str]]:
    """A 3-exposure demo repository, what ``supertask run`` registers for tile 0, and its labels with no work."""
    from demo_drp.data import make_demo_repo

    from supertask.execution import run_pipeline

    root = tmp_path_factory.mktemp("nowork-demo")
    repo = root / "repo"
    make_demo_repo(repo, n_exposures=3)
    result = run_pipeline(
        PIPELINE, repo, where=WHERE, input_collections=INPUTS, output_run="demo/direct", processes=2
    )
    assert result.ok, [(f.label, f.reason) for f in result.failures]
    assert result.counts["makeWarp"]["no_work"] > 0  # otherwise this proves nothing
    no_work_labels = {label for label, counts in result.counts.items() if counts["no_work"]}
    return root, repo, registered_checksums(repo, "demo/direct"), no_work_labels


def submit_yaml(root: Path, repo: Path, run: str, **extra: Any) -> Path:
    config = root / f"{run.replace('/', '_')}.yaml"
    body = {
        "pipeline": str(PIPELINE),
        "repo": str(repo),
        "input_collections": INPUTS,
        "where": WHERE,
        "output_run": run,
        "submit_dir": str(root / "submit" / run.replace("/", "_")),
        **extra,
    }
    config.write_text(yaml.safe_dump(body))
    return config


def check_same_as_supertask_run(repo: Path, run: str, submit: Path, demo: tuple) -> None:
    _, _, reference, no_work_labels = demo
    assert registered_checksums(repo, run) == reference
    summary = json.loads((submit / "finalize_summary.json").read_text())
    assert summary["missing"] == 0 and not summary["rejected"]
    assert {label for label, s in summary["labels"].items() if s["outputs_no_work"]} == no_work_labels
    assert not tombstones_under(repo / run) and not tombstones_under(submit)


@pytest.mark.slow
def test_demo_tile_through_bps_local_registers_what_supertask_run_does(demo):
    root, repo, _, _ = demo
    config = submit_yaml(root, repo, "demo/bps-local", wms="local", compute_site="local")
    done = subprocess.run(
        [str(BIN / "bps"), "submit", str(config), "-j", "2"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_same_as_supertask_run(repo, "demo/bps-local", root / "submit" / "demo_bps-local", demo)


@pytest.mark.slow
def test_demo_tile_through_pegasus_registers_what_supertask_run_does(demo):
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    try:
        from tests.support.pegasus_runner import run_workflow
    except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
        from support.pegasus_runner import run_workflow

    root, repo, _, _ = demo
    config = submit_yaml(root, repo, "demo/pegasus", wms="pegasus", compute_site="pegasus_local")
    prepared = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert prepared.exit_code == 0, prepared.output
    submit = root / "submit" / "demo_pegasus"
    run_workflow(submit / "pegasus", root / "pegasus-work", timeout=300)
    check_same_as_supertask_run(repo, "demo/pegasus", submit, demo)


@pytest.mark.slow
@pytest.mark.parametrize("staging", ["transfer", "shared"])
def test_demo_tile_through_htcondor_registers_what_supertask_run_does(demo, tmp_path, staging):
    try:
        from tests.support.dagman_runner import run_dag
    except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
        from support.dagman_runner import run_dag

    root, repo, _, _ = demo
    config = submit_yaml(
        root,
        repo,
        f"demo/condor-{staging}",
        wms="htcondor",
        compute_site=f"htcondor_{staging}",
        site={"condor": {"skip_checks": ["tmp_node_log", "job_user"]}},  # a test machine's /tmp, as root
    )
    done = subprocess.run([str(BIN / "bps"), "prepare", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    submit = root / "submit" / f"demo_condor-{staging}"
    (dag,) = submit.glob("*.dag")
    result = run_dag(dag, tmp_path / "condor-scratch")
    assert result.exit_code == 0
    check_same_as_supertask_run(repo, f"demo/condor-{staging}", submit, demo)
