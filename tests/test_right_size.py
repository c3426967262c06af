"""``bps prepare --resources-from DIR``: memory requests per task label from the peaks earlier runs measured."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.right_size import STEP_MB, choose, quantile
from bps.wms.base import read_run_record
from bps.workflow import GenericWorkflow

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


def _peaks(submit_dir, prefix: str) -> list[float]:
    return [
        i["peak_memory_mb"] for n, i in read_run_record(submit_dir)["jobs"].items() if n.startswith(prefix)
    ]


def test_prepare_sets_each_labels_memory_from_the_peaks_of_an_earlier_run_and_says_so(earlier_run):
    toy, first = earlier_run
    config = toy.submit_yaml("second", right_sizing={"min_samples": 3})
    result = CliRunner().invoke(bps_main, ["prepare", str(config), "--resources-from", str(first)])
    assert result.exit_code == 0, result.output
    wf = GenericWorkflow.load(submit_dir_of(config) / "workflow.json")
    peaks = _peaks(first, "make_")
    assert len(peaks) == 5
    expected = max(STEP_MB, math.ceil(np.quantile(peaks, 0.95) * 1.2 / STEP_MB) * STEP_MB)
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "make"} == {expected}
    assert expected < 2048  # the default it replaced: a toy job needs far less
    # one ``total`` peak is fewer than min_samples: its request stays the default
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "total"} == {2048}
    text = result.output
    assert "right-sized from 6 measured peaks in 1 earlier run" in text
    assert f"make: memory_mb = {expected} (p95 of 5 peaks" in text
    assert "total: unchanged (1 peaks, fewer than right_sizing.min_samples = 3)" in text
    saved = (submit_dir_of(config) / "submit_config.yaml").read_text()
    assert f"resources.labels.make.memory_mb: {expected}  # right-sized from earlier runs" in saved


def test_a_memory_request_the_user_set_wins_over_history(earlier_run):
    toy, first = earlier_run
    config = toy.submit_yaml("explicit", resources={"labels": {"make": {"memory_mb": 3000}}})
    result = CliRunner().invoke(bps_main, ["prepare", str(config), "--resources-from", str(first)])
    assert result.exit_code == 0, result.output
    wf = GenericWorkflow.load(submit_dir_of(config) / "workflow.json")
    assert {j.resources.memory_mb for j in wf.jobs.values() if j.label == "make"} == {3000}
    assert f"make: unchanged (set in {config})" in result.output


def test_the_submit_key_works_like_the_option_with_paths_relative_to_the_file(earlier_run):
    toy, first = earlier_run
    relative = first.relative_to(toy.root)
    config = toy.submit_yaml("by_key", right_sizing={"runs": [str(relative)], "margin": 2.0})
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code == 0, result.output
    wf = GenericWorkflow.load(submit_dir_of(config) / "workflow.json")
    peaks = _peaks(first, "make_")
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
