"""The local workflow system's scheduling, with shell jobs instead of run_quantum: fast and exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bps import exit_codes
from bps.wms.base import WmsError, read_run_record, write_run_record
from bps.wms.local import LocalService
from bps.workflow import GenericWorkflow, Job, RetryPolicy
from bps.workflow_io import save_workflow


def shell_job(name: str, label: str, script: str, retries: int = 0, throttle: str | None = None) -> Job:
    return Job(
        name=name,
        label=label,
        quantum_ids=[],
        arguments=["-c", script],
        executable="sh",
        retry=RetryPolicy(retries=retries),
        throttle=throttle,
    )


def workflow(tmp_path: Path, jobs: list[tuple[Job, list[str]]], final: bool = True, **kw) -> GenericWorkflow:
    wf = GenericWorkflow(name="t", submit_dir=str(tmp_path), graph_file="g", repo="r", output_run="o", **kw)
    for job, parents in jobs:
        wf.add_job(job, parents)
    if final:
        wf.final = shell_job("finalize", "finalize", f"echo final >> {tmp_path}/final.txt")
    save_workflow(wf, tmp_path / "workflow.json")
    return wf


def states(tmp_path: Path) -> dict[str, dict]:
    return read_run_record(tmp_path)["jobs"]


def test_throttle_caps_concurrent_jobs_of_a_label(tmp_path):
    log = tmp_path / "spans.txt"
    script = f"echo start $(date +%s%N) >> {log}; sleep 0.2; echo end $(date +%s%N) >> {log}"
    jobs = [(shell_job(f"a{i}", "a", script, throttle="a"), []) for i in range(3)]
    workflow(tmp_path, jobs, throttles={"a": 1})
    LocalService(jobs=3, progress=False).submit(tmp_path)
    events = [(int(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines())]
    running = peak = 0
    for _, kind in sorted(events):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 1 and len(events) == 6


def test_parallel_jobs_overlap_without_throttle(tmp_path):
    log = tmp_path / "spans.txt"
    script = f"echo start $(date +%s%N) >> {log}; sleep 0.3; echo end $(date +%s%N) >> {log}"
    workflow(tmp_path, [(shell_job(f"a{i}", "a", script), []) for i in range(2)])
    LocalService(jobs=2, progress=False).submit(tmp_path)
    events = sorted((int(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    assert [kind for _, kind in events][:2] == ["start", "start"]


def test_retryable_failure_is_retried_and_succeeds(tmp_path):
    counter = tmp_path / "count"
    script = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ]"  # fails once, then succeeds
    workflow(tmp_path, [(shell_job("flaky", "a", script, retries=2), [])])
    LocalService(progress=False).submit(tmp_path)
    info = states(tmp_path)["flaky"]
    assert info["state"] == "succeeded" and info["attempts"] == 2


def test_no_retry_exit_code_fails_at_once_skips_children_and_final_still_runs(tmp_path):
    bad = shell_job("bad", "a", f"exit {exit_codes.CONFIG_ERROR}", retries=3)
    child = shell_job("child", "b", "true")
    other = shell_job("other", "a", "true")
    workflow(tmp_path, [(bad, []), (other, []), (child, ["bad"])])
    LocalService(progress=False).submit(tmp_path)
    s = states(tmp_path)
    assert s["bad"]["state"] == "failed" and s["bad"]["attempts"] == 1
    assert s["child"]["state"] == "skipped" and s["other"]["state"] == "succeeded"
    assert (tmp_path / "final.txt").read_text() == "final\n"
    report = LocalService().report(tmp_path)
    assert report.state == "failed" and report.counts["b"]["skipped"] == 1
    (failure,) = report.failures
    assert failure.name == "bad" and "configuration" in failure.reason


def test_no_work_exit_lets_children_run(tmp_path):
    marker = tmp_path / "child-ran"
    workflow(
        tmp_path,
        [
            (shell_job("empty", "a", f"exit {exit_codes.TASK_NO_WORK}"), []),
            (shell_job("child", "b", f"touch {marker}"), ["empty"]),
        ],
    )
    LocalService(progress=False).submit(tmp_path)
    assert marker.exists() and states(tmp_path)["empty"]["exit_code"] == exit_codes.TASK_NO_WORK


def test_signal_death_is_retried(tmp_path):
    counter = tmp_path / "count"
    script = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ] || kill -9 $$"
    workflow(tmp_path, [(shell_job("oom", "a", script, retries=1), [])])
    LocalService(progress=False).submit(tmp_path)
    assert states(tmp_path)["oom"]["state"] == "succeeded"


def test_restart_refuses_a_run_that_is_still_going(tmp_path):
    workflow(tmp_path, [(shell_job("a", "a", "true"), [])])
    write_run_record(
        tmp_path, wms="local", state="running", pid=os.getpid(), jobs={"a": {"state": "running"}}
    )
    with pytest.raises(WmsError, match="still running"):
        LocalService(progress=False).restart(tmp_path)
