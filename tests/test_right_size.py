"""``bps prepare --resources-from DIR``: memory requests per task label from the peaks earlier runs measured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.right_size import STEP_MB, choose, quantile
from bps.usage import read_usage
from bps.workflow_io import load_workflow

RUN = "u/test/rightsize"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3, 4, 5), seed_scale=10, multiplier=2)


def test_quantile_agrees_with_numpy():
    values = [3.0, 1.0, 7.5, 2.0, 10.0, 4.0]
    for q in (0.0, 0.5, 0.9, 0.95, 1.0):
        assert quantile(values, q) == pytest.approx(np.quantile(values, q))


def test_a_request_is_the_quantile_times_the_margin_rounded_up_and_capped_by_the_site():
    assert choose([100.0] * 10, 0.95, 1.2, 16384) == (128, 100.0, False)  # 120 -> 128
    assert choose([10.0], 0.95, 1.2, 16384)[0] == STEP_MB  # never below one step
    memory, high, capped = choose([30000.0, 31000.0], 0.95, 1.2, 16384)
    assert memory == 16384 and capped and high > 30000


@pytest.fixture
def earlier_run(tmp_path, monkeypatch):
    """A finished local run of the toy (5 ``make`` jobs, 1 ``total``) and its measured peaks."""
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("first")
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    assert result.exit_code == 0, result.output
    return toy, submit_dir_of(config)


def _peaks(submit_dir, label: str) -> list[float]:
    """The own peak of every quantum of ``label`` the run's jobs recorded (`bps.usage`)."""
    return [r.peak_memory_mb for r in read_usage(submit_dir) if r.label == label and r.exit_code == 0]


def test_prepare_sets_each_labels_memory_from_the_peaks_of_an_earlier_run_and_says_so(earlier_run):
    toy, first = earlier_run
    config = toy.submit_yaml("second", right_sizing={"min_samples": 3})
    result = CliRunner().invoke(bps_main, ["prepare", str(config), "--resources-from", str(first)])
    assert result.exit_code == 0, result.output
    wf = load_workflow(submit_dir_of(config) / "workflow.json")
    peaks = _peaks(first, "make")
    assert len(peaks) == 5
    expected = max(STEP_MB, math.ceil(np.quantile(peaks, 0.95) * 1.2 / STEP_MB) * STEP_MB)
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "make"} == {expected}
    assert expected < 2048  # the default it replaced: a toy job needs far less
    # one ``total`` peak is fewer than min_samples: its request stays the default
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "total"} == {2048}
    text = result.output
    assert "right-sized from the measured peaks of 6 quanta of 1 earlier run" in text
    assert f"make: memory_mb = {expected} (p95 of 5 peaks" in text
    assert "total: unchanged (1 peaks, fewer than right_sizing.min_samples = 3)" in text
    saved = (submit_dir_of(config) / "submit_config.yaml").read_text()
    assert f"resources.labels.make.memory_mb: {expected}  # right-sized from earlier runs" in saved


def test_a_memory_request_the_user_set_wins_over_history(earlier_run):
    toy, first = earlier_run
    config = toy.submit_yaml("explicit", resources={"labels": {"make": {"memory_mb": 3000}}})
    result = CliRunner().invoke(bps_main, ["prepare", str(config), "--resources-from", str(first)])
    assert result.exit_code == 0, result.output
    wf = load_workflow(submit_dir_of(config) / "workflow.json")
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "make"} == {3000}
    assert f"make: unchanged (set in {config})" in result.output


def test_the_submit_key_works_like_the_option_with_paths_relative_to_the_file(earlier_run):
    toy, first = earlier_run
    relative = first.relative_to(toy.root)
    config = toy.submit_yaml("by_key", right_sizing={"runs": [str(relative)], "margin": 2.0})
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code == 0, result.output
    wf = load_workflow(submit_dir_of(config) / "workflow.json")
    peaks = _peaks(first, "make")
    expected = max(STEP_MB, math.ceil(np.quantile(peaks, 0.95) * 2.0 / STEP_MB) * STEP_MB)
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "make"} == {expected}


def test_a_directory_that_is_not_a_submit_directory_is_a_one_line_error(earlier_run, tmp_path):
    toy, _ = earlier_run
    config = toy.submit_yaml("bad")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(bps_main, ["prepare", str(config), "--resources-from", str(empty)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"bps: error: right_sizing.runs: {empty} is not a submit directory (no workflow.json): "
        "name the submit directory of an earlier run"
    )


# -- a right-sized workflow on a real HTCondor 25.14.0 pool (tests/data/real-htcondor-25.14.0/demo-rightsized) --


def _real_usage_by_node(nodes_log) -> dict[str, tuple[int, int]]:
    """Node -> (MemoryUsage, requested MB) of its termination, read from the event log's text."""
    import re

    node_of: dict[str, str] = {}
    usage: dict[str, tuple[int, int]] = {}
    cluster = None
    for line in nodes_log.read_text().splitlines():
        if m := re.match(r"(\d{3}) \((\d+)\.", line):
            cluster = (m.group(1), m.group(2))
        elif m := re.search(r'DAGNodeName = "([^"]+)"', line):
            node_of[cluster[1]] = m.group(1)
        elif (m := re.match(r"\s+Memory \(MB\)\s+:\s+(\d+)\s+(\d+)", line)) and cluster[0] == "005":
            usage[node_of[cluster[1]]] = (int(m.group(1)), int(m.group(2)))
    return usage


def test_right_sized_jobs_ran_on_a_real_pool_with_128_mb_and_each_used_less(tmp_path):
    from support.real_htcondor import DATA_25140, scenario

    from bps.wms.htcondor.layout import find_dag
    from bps.wms.htcondor.report import build_report

    submit = scenario("demo-rightsized", tmp_path, data=DATA_25140)
    usage = _real_usage_by_node(find_dag(submit).nodes_log)
    assert len(usage) == 29
    assert {asked for node, (_, asked) in usage.items() if node != "bps_final"} == {128}
    assert all(used < asked for used, asked in usage.values())
    report = build_report(submit)
    assert report.state == "succeeded" and report.totals()["succeeded"] == 29
    for job in report.jobs:
        used, asked = usage[job.name]
        assert job.peak_memory_mb == (used or None) and job.request_memory_mb == asked


def test_right_sizing_from_a_real_htcondor_run_uses_the_memory_htcondor_measured(tmp_path):
    from support.real_htcondor import DATA_25140, scenario

    from bps.right_size import peaks_by_label
    from bps.wms.htcondor.layout import find_dag

    submit = scenario("demo-rightsized", tmp_path, data=DATA_25140)
    usage = _real_usage_by_node(find_dag(submit).nodes_log)
    peaks = peaks_by_label([str(submit)])
    # clustered jobs: isr_*, visit_* (calibrate + makeWarp), coadd_* (assembleCoadd + detectCoadd);
    # a job HTCondor measured at 0 MB counts as not measured
    by_prefix = {
        prefix: sorted(float(u) for node, (u, _) in usage.items() if node.startswith(prefix) and u)
        for prefix in ("isr_", "visit_", "coadd_")
    }
    assert sorted(peaks["isr"]) == by_prefix["isr_"]
    assert sorted(peaks["calibrate"]) == sorted(peaks["makeWarp"]) == by_prefix["visit_"]
    assert sorted(peaks["assembleCoadd"]) == sorted(peaks["detectCoadd"]) == by_prefix["coadd_"]
    assert "finalize" not in peaks


def test_a_clustered_job_gives_each_task_label_the_peaks_of_its_own_quanta(tmp_path, monkeypatch):
    from bps.right_size import read_peaks

    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml(
        "clustered", clustering={"clusters": [{"name": "all", "labels": ["make", "total"]}]}
    )
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    assert result.exit_code == 0, result.output
    first = submit_dir_of(config)
    assert len(load_workflow(first / "workflow.json").jobs) == 1
    found = read_peaks([str(first)])
    # one job ran all six quanta: each label gets its quanta's own peaks, not the job's five or one times
    assert (found.quanta, found.jobs) == (6, 0)
    assert sorted(found.peaks["make"]) == sorted(_peaks(first, "make")) and len(found.peaks["make"]) == 5
    assert found.peaks["total"] == _peaks(first, "total")
