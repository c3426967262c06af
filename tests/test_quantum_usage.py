"""Each quantum's own peak memory and wall time, in its job's manifest and in the run's usage log (`bps.usage`)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from support.toy_pipeline import StandInBackend, StandInTask, write_stand_in_seeds

from bps import exit_codes
from bps.run_quantum import run_job
from bps.staging import Manifest, manifest_path, read_manifest, write_manifest
from bps.usage import (
    USAGE_LOG,
    QuantumUsage,
    append_usage,
    read_usage,
    read_usage_log,
    usage_log_path,
)
from supertask.report.memory import cells, memory_by_label

DETECTORS = (1, 2, 3)
BIG_MB = 300
needs_clear_refs = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs"
)


class HungryTask(StandInTask):
    """``make`` that holds ``BIG_MB`` of touched memory while it runs on detector 1."""

    def runQuantum(self, quantum: Any, butler: Any) -> None:
        block = None
        if quantum.dataId.get("detector") == 1:
            block = bytearray(BIG_MB * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
        super().runQuantum(quantum, butler)
        del block


def shared_job(tmp_path: Path, backend: StandInBackend, ids: list[int], name: str) -> Any:
    return run_job(
        "g.qgraph",
        ids,
        repo=str(backend.repo),
        job=name,
        manifest_dir=tmp_path / "submit" / "manifests",
        scratch=str(tmp_path / "scratch"),
        backend=backend,
    )


@pytest.fixture
def backend(tmp_path: Path) -> StandInBackend:
    return StandInBackend(write_stand_in_seeds(tmp_path / "repo", DETECTORS), DETECTORS)


@needs_clear_refs
def test_a_small_quantum_after_a_big_one_in_the_same_process_reports_its_own_peak(tmp_path, backend):
    backend.tasks["make"] = HungryTask("make")
    result = shared_job(tmp_path, backend, [0, 1], "make_both")  # detector 1 (big), then 2, one process
    assert result.exit_code == exit_codes.SUCCESS
    manifest = read_manifest(manifest_path(tmp_path / "submit" / "manifests", "make_both"))
    big, small = manifest.usage[0], manifest.usage[1]
    assert big.peak_memory_mb > BIG_MB and big.own_peak
    # the process's high-water mark (ru_maxrss) would still say more than BIG_MB
    assert small.peak_memory_mb < big.peak_memory_mb - BIG_MB * 2 / 3 and small.own_peak
    assert (big.label, big.job, small.quantum) == ("make", "make_both", 1)
    assert big.wall_s > 0 and big.started <= small.started


def test_every_quantum_a_job_runs_is_in_its_manifest_and_in_the_runs_usage_log(tmp_path, backend):
    assert shared_job(tmp_path, backend, [0, 1, 2], "make").exit_code == exit_codes.SUCCESS
    assert shared_job(tmp_path, backend, [3, 4, 5, 6], "rest").exit_code == exit_codes.SUCCESS
    log = read_usage_log(tmp_path / "submit" / "manifests" / USAGE_LOG)
    assert sorted(r.quantum for r in log) == list(range(7))
    manifest = read_manifest(manifest_path(tmp_path / "submit" / "manifests", "rest"))
    assert sorted(manifest.usage) == [3, 4, 5, 6]
    assert {r for r in log if r.job == "rest"} == set(manifest.usage.values())
    assert sorted(read_usage(tmp_path / "submit")) == sorted(log)  # the manifests add nothing new


def test_a_failed_attempt_is_in_the_usage_log_with_its_exit_code_not_in_the_manifest(tmp_path):
    backend = StandInBackend(
        write_stand_in_seeds(tmp_path / "repo", DETECTORS), DETECTORS, fail={"make": {2}}
    )
    result = shared_job(tmp_path, backend, [0, 1], "make")
    (code,) = result.failed.values()
    assert list(result.failed) == [1] and code != exit_codes.SUCCESS
    log = read_usage_log(tmp_path / "submit" / "manifests" / USAGE_LOG)
    assert {(r.quantum, r.exit_code) for r in log} == {(0, 0), (1, code)}
    assert sorted(read_manifest(manifest_path(tmp_path / "submit" / "manifests", "make")).usage) == [0]


def test_a_rerun_skips_recorded_quanta_and_adds_no_usage_for_them(tmp_path, backend):
    shared_job(tmp_path, backend, [0, 1], "make")
    shared_job(tmp_path, backend, [0, 1], "make")
    assert len(read_usage(tmp_path / "submit")) == 2


def test_manifests_bring_back_what_transfer_jobs_could_not_log(tmp_path):
    manifests = tmp_path / "submit" / "manifests"
    manifests.mkdir(parents=True)
    logged = QuantumUsage("a", 0, "make", 100.0, 1.0, 1000.0)
    append_usage(usage_log_path(manifests), logged)  # job a ran with shared staging: it logged
    transferred = QuantumUsage("b", 1, "make", 200.0, 2.0, 1001.0)
    write_manifest(manifest_path(manifests, "a"), Manifest("a", "run", "/r", {0: []}, usage={0: logged}))
    write_manifest(manifest_path(manifests, "b"), Manifest("b", "run", "/r", {1: []}, usage={1: transferred}))
    assert sorted(read_usage(tmp_path / "submit")) == [logged, transferred]  # each attempt once


def test_the_manifests_of_jobs_in_the_usage_log_are_not_read(tmp_path):
    manifests = tmp_path / "submit" / "manifests"
    manifests.mkdir(parents=True)
    logged = QuantumUsage("a", 0, "make", 100.0, 1.0, 1000.0)
    append_usage(usage_log_path(manifests), logged)
    unlogged = QuantumUsage("a", 1, "make", 100.0, 1.0, 1001.0)  # only there if the manifest were read
    write_manifest(manifest_path(manifests, "a"), Manifest("a", "run", "/r", {1: []}, usage={1: unlogged}))
    assert read_usage(tmp_path / "submit") == [logged]


def test_a_manifest_keeps_usage_through_json_and_reads_one_written_without_it(tmp_path):
    usage = QuantumUsage("j", 3, "isr", 812.5, 4.25, 1700000000.125, 0, False)
    manifest = Manifest("j", "run", "/root", {3: []}, usage={3: usage})
    write_manifest(tmp_path / "j.manifest.json", manifest)
    assert read_manifest(tmp_path / "j.manifest.json") == manifest
    (tmp_path / "old.manifest.json").write_text(
        '{"version": 2, "job": "o", "output_run": "r", "root": "/", "quanta": {}}'
    )
    assert read_manifest(tmp_path / "old.manifest.json").usage == {}


def _append_many(path: str, writer: int, count: int) -> None:
    for i in range(count):
        # long labels: lines far larger than a pipe's atomic size still arrive whole
        append_usage(path, QuantumUsage(f"job{writer}", i, "x" * 3000, float(i), 0.5, float(writer)))


def test_many_concurrent_writers_lose_no_record_of_each_other(tmp_path):
    path = str(tmp_path / USAGE_LOG)
    writers, each = 12, 150
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_append_many, args=(path, w, each)) for w in range(writers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    records = read_usage_log(path)
    assert len(records) == writers * each
    assert {(r.job, r.quantum) for r in records} == {
        (f"job{w}", i) for w in range(writers) for i in range(each)
    }
    assert len(Path(path).read_bytes().splitlines()) == writers * each  # no line torn or merged


def test_a_line_cut_short_by_a_killed_job_is_skipped_and_the_rest_read(tmp_path):
    path = tmp_path / USAGE_LOG
    append_usage(path, QuantumUsage("a", 0, "make", 10.0, 1.0, 5.0))
    with open(path, "ab") as f:
        f.write(b'{"job":"b","quantum":1,"lab')
    append_usage(path, QuantumUsage("c", 2, "make", 30.0, 1.0, 6.0))
    assert [r.job for r in read_usage_log(path)] == ["a", "c"]


def test_memory_by_label_sets_the_request_beside_median_and_largest_use():
    peaks = [("isr", 100.0), ("isr", 300.0), ("isr", 200.0), ("coadd", 900.0)]
    rows = memory_by_label(peaks, {"isr": 2048.0})
    assert [(r.label, r.quanta, r.requested_mb, r.median_mb, r.max_mb) for r in rows] == [
        ("coadd", 1, None, 900.0, 900.0),
        ("isr", 3, 2048.0, 200.0, 300.0),
    ]
    assert rows[1].unused_fraction == pytest.approx(1 - 300 / 2048)
    assert cells(rows[1]) == ("isr", "3", "2048", "200", "300", "85%")
    assert cells(rows[0])[2::3] == ("-", "-")  # no request known for coadd: no share unused
