"""Run, job and quantum states are enums whose members are their text.

Files on disk (run records, manifests, reports) must keep the text they had when the
states were bare strings, and files written before must still read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.toy_pipeline import ToyPipeline

from bps.wms.base import RUN_RECORD, STATES, RunReport, read_run_record
from bps.wms.local import LocalService
from supertask.states import JobState, QuantumState, RunState, parse_state

# the text of every state as the files of earlier versions hold it
OLD_JOB_STATES = ("succeeded", "failed", "running", "idle", "held", "pending", "skipped")
OLD_QUANTUM_STATES = (
    "succeeded",
    "no_work",
    "failed",
    "timed_out",
    "skipped_upstream",
    "skipped_existing",
    "not_run",
    "running",
)
OLD_RUN_STATES = (
    "prepared",
    "starting",
    "submitted",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "unknown",
)


@pytest.mark.parametrize(
    ("kind", "texts"),
    [(JobState, OLD_JOB_STATES), (QuantumState, OLD_QUANTUM_STATES), (RunState, OLD_RUN_STATES)],
)
def test_each_state_is_its_text_in_json_formatting_and_comparison(kind, texts):
    assert [m.value for m in kind] == list(texts)
    for member, text in zip(kind, texts, strict=True):
        assert member == text and hash(member) == hash(text)
        assert f"{member}" == str(member) == text
        assert json.dumps({member: member}) == json.dumps({text: text})
        assert kind(text) is member


def test_report_states_keep_their_display_order():
    assert STATES == tuple(JobState) and [str(s) for s in STATES] == list(OLD_JOB_STATES)


def test_parse_state_refuses_unknown_text_naming_where_and_the_valid_values():
    assert parse_state(RunState, "cancelled") is RunState.CANCELLED
    for bad in ("finished", None, 3):
        with pytest.raises(ValueError) as err:
            parse_state(JobState, bad, "the run record")
        message = str(err.value)
        assert "\n" not in message
        assert f"unknown JobState {bad!r} in the run record" in message
        assert "expected one of: succeeded, failed, running, idle, held, pending, skipped" in message


def test_report_counts_plain_text_states_under_their_members():
    report = RunReport(submit_dir="x", wms="local")
    report.add("make", "succeeded", 2)
    report.add("make", JobState.SUCCEEDED)
    report.add("make", "held")
    assert report.totals() == {**dict.fromkeys(OLD_JOB_STATES, 0), "succeeded": 3, "held": 1}
    assert all(type(k) is JobState for k in report.counts["make"])
    with pytest.raises(ValueError, match="unknown JobState 'finished' in the jobs of 'make'"):
        report.add("make", "finished")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    toy = ToyPipeline(run="u/test/states", detectors=(1, 2), seed_scale=10, multiplier=2)
    return toy.set_up(tmp_path, monkeypatch, compute_site="local")


def test_a_run_record_keeps_plain_text_and_an_old_one_reads_into_members(toy):
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    config = toy.submit_yaml("plain")
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "1"])
    assert result.exit_code == 0, result.output
    submit_dir = Path(config.parent / "submit" / "plain")
    text = (submit_dir / RUN_RECORD).read_text()
    record = json.loads(text)
    # the record holds the states' text, exactly as when they were bare strings
    assert '"state": "succeeded"' in text and "JobState" not in text and "RunState" not in text
    assert {type(info["state"]) for info in record["jobs"].values()} == {str}
    # a record written before the enums (plain strings, one job failed) reads into members
    name = sorted(record["jobs"])[0]
    record["state"] = "failed"
    record["jobs"][name].update(state="failed", exit_code=1, attempts=1)
    (submit_dir / RUN_RECORD).write_text(json.dumps(record))
    report = LocalService().report(submit_dir)
    assert report.state is RunState.FAILED
    assert report.totals()["failed"] == 1 and report.totals()["succeeded"] == len(record["jobs"]) - 1
    assert {type(job.state) for job in report.jobs} == {JobState}
    assert [f.name for f in report.failures] == [name]
    assert read_run_record(submit_dir)["state"] == "failed"
