"""run_quantum: staging through scratch, manifests, restarts and exit codes (with in-memory stand-ins).

The stand-in backend (``support.toy_pipeline.StandInBackend``) plays the graph file, the pipeline
and the datastore: a chain ``make -> double`` per detector and a ``total`` that gathers every detector.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.toy_pipeline import STANDIN_RUN as RUN
from support.toy_pipeline import STANDIN_TOTAL as TOTAL
from support.toy_pipeline import StandInBackend, stand_in_quanta, write_stand_in_seeds

from bps import exit_codes
from bps.run_quantum import JobError, main, run_job
from bps.staging import is_tombstone, manifest_path, read_manifest, read_tombstone
from supertask.config.errors import FieldValidationError
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset
from supertask.repo.datastore import checksum_file as datastore_checksum
from supertask.task import NoWorkFound

DETECTORS = (1, 2)


@pytest.fixture
def repo(tmp_path) -> Path:
    return write_stand_in_seeds(tmp_path / "repo", DETECTORS)


def job(backend, repo, tmp_path, ids, name="job"):
    return run_job(
        "g.qgraph",
        ids,
        repo=str(repo),
        job=name,
        manifest_dir=tmp_path / "manifests",
        scratch=str(tmp_path / "scratch"),
        backend=backend,
    )


def read(repo: Path, name: str, part: str) -> Any:
    return json.loads((repo / RUN / name / f"{part}.json").read_text())


def test_cluster_runs_in_dependency_order_and_stages_outputs_with_a_manifest(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    result = job(backend, repo, tmp_path, [4, 2, 0, 3, 1])
    assert result.exit_code == exit_codes.SUCCESS and result.ran == [0, 1, 2, 3, 4]
    assert read(repo, "doubled", "detector1") == 22 and read(repo, "total", "all") == 22 + 42
    manifest = read_manifest(manifest_path(tmp_path / "manifests", "job"))
    assert sorted(manifest.quanta) == [0, 1, 2, 3, 4]
    files = {f.lfn: f for f in manifest.files()}
    staged = files["doubled.detector-2"]
    assert (repo / staged.path).stat().st_size == staged.size
    assert staged.checksum == datastore_checksum(repo / staged.path)
    # scratch is cleaned, and nothing is left half-named next to the outputs
    assert list((tmp_path / "scratch").iterdir()) == []
    assert not [p for p in repo.rglob("*") if ".bps-tmp-" in p.name]


def test_jobs_read_outputs_of_earlier_jobs_from_the_shared_store(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    assert job(backend, repo, tmp_path, [0, 1], "makers").exit_code == 0
    assert job(backend, repo, tmp_path, [2, 3, 4], "rest").exit_code == 0
    assert read(repo, "total", "all") == 22 + 42


def test_job_whose_outputs_are_all_staged_does_nothing(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    again = job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    assert again.skipped_done == [0, 1, 2, 3, 4] and again.ran == []
    assert backend.loads == 1  # the graph is not even read


def test_rerun_redoes_only_quanta_missing_from_the_manifest_or_damaged(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    (repo / RUN / "total" / "all.json").write_text("99999")  # damaged: size differs
    again = job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    assert again.ran == [4] and again.skipped_done == [0, 1, 2, 3]
    assert read(repo, "total", "all") == 64


def test_failed_quantum_blocks_only_its_descendants_in_the_job(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS, fail={"make": {2}})
    result = job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    assert result.failed == {1: exit_codes.UNEXPECTED} and result.blocked == [3, 4]
    assert result.ran == [0, 2] and result.exit_code == exit_codes.UNEXPECTED
    manifest = read_manifest(manifest_path(tmp_path / "manifests", "job"))
    assert sorted(manifest.quanta) == [0, 2]
    # the retry (failure gone) runs just what is missing
    fixed = StandInBackend(repo, DETECTORS)
    again = job(fixed, repo, tmp_path, [0, 1, 2, 3, 4])
    assert again.ran == [1, 3, 4] and again.exit_code == 0


def test_missing_input_is_retryable(repo, tmp_path):
    (repo / "in" / "seed" / "detector1.json").unlink()
    result = job(StandInBackend(repo, DETECTORS), repo, tmp_path, [0])
    assert result.failed == {0: exit_codes.MISSING_INPUT}
    assert exit_codes.MISSING_INPUT not in exit_codes.NO_RETRY


def test_task_declaring_no_work_succeeds_and_leaves_a_tombstone_instead_of_its_output(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)

    def refuse(quantum, butler):
        butler.put(5, quantum.outputs["made"][0])  # written, then the task gives up: not kept
        raise NoWorkFound("nothing to do")

    backend.tasks["make"].runQuantum = refuse
    result = job(backend, repo, tmp_path, [0])
    assert result.exit_code == exit_codes.SUCCESS and result.no_work == [0]
    target = repo / RUN / "made" / "detector1.json"
    assert is_tombstone(target)
    said = read_tombstone(target)
    assert said["dataset_type"] == "made" and said["data_id"] == {"detector": 1}
    assert "nothing to do" in said["reason"]
    (recorded,) = read_manifest(manifest_path(tmp_path / "manifests", "job")).quanta[0]
    assert recorded.tombstone and recorded.size == target.stat().st_size


def test_task_writing_a_dataset_it_does_not_declare_fails(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)

    def rogue(quantum, butler):
        butler.put(1, Dataset(TOTAL, DataId()))

    backend.tasks["make"].runQuantum = rogue
    assert job(backend, repo, tmp_path, [0]).failed == {0: exit_codes.UNEXPECTED}
    assert not (repo / RUN / "total").exists()


def test_header_without_output_run_is_a_data_error(repo, tmp_path):
    with pytest.raises(JobError) as err:
        job(StandInBackend(repo, DETECTORS, header={"metadata": {}}), repo, tmp_path, [0])
    assert err.value.code == exit_codes.DATA_ERROR


def test_broken_pipeline_is_a_config_error(repo, tmp_path, capsys):
    backend = StandInBackend(repo, DETECTORS)

    def broken(header, labels):
        raise ValueError("no such task class demo.Nope")

    backend.make_tasks = broken
    code = main(
        ["--graph", "g", "--quantum", "0", "--repo", str(repo), "--manifest-dir", str(tmp_path)], backend
    )
    assert code == exit_codes.CONFIG_ERROR and code in exit_codes.NO_RETRY


def test_bad_command_line_exits_with_usage_code(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--graph", "g", "--quantum", "x", "--repo", "r"])
    assert err.value.code == exit_codes.USAGE
    assert "integer" in capsys.readouterr().err


def test_main_accepts_comma_separated_ids_and_reports_success(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    argv = [
        "--graph",
        "g",
        "--quantum",
        "0,1",
        "--quantum",
        "2",
        "--repo",
        str(repo),
        "--job",
        "j",
        "--manifest-dir",
        str(tmp_path / "m"),
        "--scratch",
        str(tmp_path / "s"),
    ]
    assert main(argv, backend) == 0
    assert sorted(read_manifest(manifest_path(tmp_path / "m", "j")).quanta) == [0, 1, 2]


def test_scratch_defaults_to_condor_scratch_dir(repo, tmp_path, monkeypatch):
    condor = tmp_path / "condor_scratch"
    monkeypatch.setenv("_CONDOR_SCRATCH_DIR", str(condor))
    backend = StandInBackend(repo, DETECTORS)
    run_job("g", [0], repo=str(repo), job="j", manifest_dir=tmp_path / "m", backend=backend)
    seen = [path for store in backend.scratch_stores for path in store.written]
    assert seen and all(condor in p.parents for p in seen)


def test_input_locations_override_template_paths(repo, tmp_path):
    moved = repo / "ingested" / "seed-one.json"
    moved.parent.mkdir()
    (repo / "in" / "seed" / "detector1.json").rename(moved)
    locations = tmp_path / "locations.json"
    locations.write_text(json.dumps({"seed.detector-1": "ingested/seed-one.json"}))
    argv = [
        "--graph",
        "g",
        "--quantum",
        "0",
        "--repo",
        str(repo),
        "--manifest-dir",
        str(tmp_path),
        "--input-locations",
        str(locations),
    ]
    assert main(argv, StandInBackend(repo, DETECTORS)) == 0
    assert read(repo, "made", "detector1") == 11


def no_work_on(backend: StandInBackend, detector: int) -> None:
    task = backend.tasks["make"]
    original = task.runQuantum

    def maybe(quantum, butler):
        if quantum.dataId["detector"] == detector:
            raise NoWorkFound(f"nothing on detector {detector}")
        original(quantum, butler)

    task.runQuantum = maybe


def test_no_work_is_an_outcome_consumers_run_without_it(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    no_work_on(backend, 2)
    result = job(backend, repo, tmp_path, [0, 1, 2, 3, 4])
    # make(2) had no work; double(2) lost its only input so has none either; total gathers what exists
    assert result.no_work == [1, 3] and result.ran == [0, 2, 4] and not result.failed
    assert result.exit_code == exit_codes.SUCCESS
    assert read(repo, "total", "all") == 22
    assert is_tombstone(repo / RUN / "made" / "detector2.json")
    assert is_tombstone(repo / RUN / "doubled" / "detector2.json")
    again = job(StandInBackend(repo, DETECTORS), repo, tmp_path, [0, 1, 2, 3, 4])
    assert again.skipped_done == [0, 1, 2, 3, 4]  # no-work quanta are done too


def test_no_work_in_an_earlier_job_is_seen_by_later_jobs(repo, tmp_path):
    backend = StandInBackend(repo, DETECTORS)
    no_work_on(backend, 2)
    assert job(backend, repo, tmp_path, [0, 1], "makers").no_work == [1]
    later = job(StandInBackend(repo, DETECTORS), repo, tmp_path, [2, 3, 4], "rest")
    assert later.no_work == [3] and later.ran == [2, 4]
    assert read(repo, "total", "all") == 22


def test_missing_produced_input_without_tombstone_is_retryable(repo, tmp_path):
    result = job(
        StandInBackend(repo, DETECTORS), repo, tmp_path, [2]
    )  # make(1) never ran: no file, no tombstone
    assert result.failed == {2: exit_codes.MISSING_INPUT}


def test_graph_file_problems_map_to_exit_codes(tmp_path):
    from supertask.graph.quantum_graph import QuantumGraph

    graph = tmp_path / "g.qgraph"
    QuantumGraph(stand_in_quanta(DETECTORS), pipelineYaml="tasks: {}", metadata={"output_run": RUN}).save(
        graph
    )
    truncated = tmp_path / "t.qgraph"
    truncated.write_bytes(graph.read_bytes()[:200])

    def code(graph_file: Path, quantum: str) -> int:
        argv = [
            "--graph",
            str(graph_file),
            "--quantum",
            quantum,
            "--repo",
            str(tmp_path),
            "--manifest-dir",
            str(tmp_path),
        ]
        return main(argv)

    assert code(graph, "99") == exit_codes.USAGE
    assert code(truncated, "0") == exit_codes.DATA_ERROR
    assert code(tmp_path / "absent.qgraph", "0") == exit_codes.MISSING_INPUT


def _checks_file(repo: Path, tmp_path: Path, lfn: str, relative: str) -> Path:
    from bps.staging import checksum_file

    path = repo / relative
    checks = tmp_path / "checks.json"
    checks.write_text(json.dumps({lfn: [path.stat().st_size, checksum_file(path)]}))
    return checks


@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_a_corrupted_input_fails_stage_in_with_the_dataset_named_not_inside_the_task(
    repo, tmp_path, caplog, damage
):
    relative = "in/seed/detector1.json"
    checks = _checks_file(repo, tmp_path, "seed.detector-1", relative)
    data = (repo / relative).read_bytes()
    (repo / relative).write_bytes(data[:-3] if damage == "truncated" else data[:-1] + b"\x00")
    argv = ["--graph", "g", "--quantum", "0", "--repo", str(repo), "--manifest-dir", str(tmp_path)]
    with caplog.at_level("ERROR"):
        code = main([*argv, "--input-checks", str(checks)], StandInBackend(repo, DETECTORS))
    assert code == exit_codes.DATA_ERROR  # not retried: the same bytes would fail again
    message = caplog.text
    assert "seed {'detector': 1}" in message and "does not match its registration" in message
    assert ("bytes, registered" if damage == "truncated" else "checksum") in message
    assert "restore it from a copy" in message


def test_an_intact_input_passes_its_checks(repo, tmp_path):
    checks = _checks_file(repo, tmp_path, "seed.detector-1", "in/seed/detector1.json")
    argv = ["--graph", "g", "--quantum", "0", "--repo", str(repo), "--manifest-dir", str(tmp_path)]
    assert main([*argv, "--input-checks", str(checks)], StandInBackend(repo, DETECTORS)) == 0
    assert read(repo, "made", "detector1") == 11


def test_an_input_checks_file_this_node_cannot_see_is_a_warning_not_a_failure(repo, tmp_path, caplog):
    argv = ["--graph", "g", "--quantum", "0", "--repo", str(repo), "--manifest-dir", str(tmp_path)]
    with caplog.at_level("WARNING"):
        code = main([*argv, "--input-checks", str(tmp_path / "absent.json")], StandInBackend(repo, DETECTORS))
    assert code == 0
    assert "not visible here" in caplog.text


class _LookalikeNoWork(Exception):
    """Named like supertask's NoWorkFound, but another type."""


_LookalikeNoWork.__name__ = "NoWorkFound"


class _BadThreshold(FieldValidationError):
    """An invalid config value, under another name."""


class _GoneFile(FileNotFoundError):
    pass


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoWorkFound("none"), exit_codes.SUCCESS),
        (_LookalikeNoWork("a name is not a type"), exit_codes.UNEXPECTED),
        (_BadThreshold("threshold must be positive"), exit_codes.CONFIG_ERROR),
        (_GoneFile("calib vanished"), exit_codes.MISSING_INPUT),
        (KeyError("bug"), exit_codes.UNEXPECTED),
    ],
)
def test_a_task_exception_maps_to_an_exit_code_by_its_type_not_its_name(repo, tmp_path, error, code):
    backend = StandInBackend(repo, DETECTORS)

    def raise_it(quantum, butler):
        raise error

    backend.tasks["make"].runQuantum = raise_it
    assert job(backend, repo, tmp_path, [0]).exit_code == code
