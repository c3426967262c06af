"""The HTML run report: what it draws, what the runners record for it, and the two commands that write it.

``test_run_report_browser.py`` loads the same reports in a real browser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.toy_pipeline import SEEDS_RUN, ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.html_report import label_edges
from bps.wms.base import read_run_record
from bps.wms.local import LocalService
from bps.workflow_io import load_workflow
from supertask.cli.main import main as supertask_main
from supertask.peak_memory import PeakMemory
from supertask.report import FailureRecord, JobRecord, RunSummary, render_html
from supertask.report.charts import _lanes

RUN = "u/test/report"
TOY = ToyPipeline(run=RUN, detectors=(1, 2, 3, 4, 5), seed_scale=10, multiplier=2)
BAR = re.compile(r'<rect class="bar" data-label="([^"]*)" data-job="([^"]*)"')


def summary(jobs: list[JobRecord], failures: list[FailureRecord] = ()) -> RunSummary:
    counts: dict[str, dict[str, int]] = {}
    for job in jobs:
        per_label = counts.setdefault(job.label, {})
        per_label[job.state] = per_label.get(job.state, 0) + 1
    return RunSummary(
        title="t",
        runner="test",
        state="failed" if failures else "succeeded",
        states=("succeeded", "failed", "running", "pending"),
        counts=counts,
        jobs=jobs,
        failures=list(failures),
        label_edges=[("isr", "calibrate")],
        provenance={"output run": "u/me/x", "pipeline": "tasks:\n  isr: {}\n"},
    )


def test_timeline_draws_one_bar_per_started_job_and_none_for_jobs_never_started():
    jobs = [JobRecord(f"isr_{i}", "isr", "succeeded", 100.0 + i, 101.5 + i, 50.0) for i in range(5)]
    jobs.append(JobRecord("calibrate_0", "calibrate", "failed", 107.0, 109.0, 80.0))
    jobs.append(JobRecord("calibrate_1", "calibrate", "pending"))
    page = render_html(summary(jobs))
    bars = BAR.findall(page)
    assert sorted(name for _, name in bars) == sorted(j.name for j in jobs if j.start is not None)
    assert "1 jobs have no recorded start" in page


def test_a_job_still_running_is_drawn_up_to_the_latest_time_known():
    jobs = [
        JobRecord("done", "isr", "succeeded", 100.0, 160.0),
        JobRecord("busy", "isr", "running", 130.0, None),
    ]
    page = render_html(summary(jobs))
    (busy,) = re.findall(r'<rect class="bar"[^>]*data-job="busy"[^>]*><title>([^<]*)</title>', page)
    assert busy.endswith("30.0 s so far")


def test_jobs_that_overlap_in_time_get_separate_lanes_and_jobs_in_sequence_share_one():
    a = JobRecord("a", "x", "succeeded", 0.0, 10.0)
    b = JobRecord("b", "x", "succeeded", 5.0, 15.0)  # overlaps a
    c = JobRecord("c", "x", "succeeded", 10.0, 20.0)  # starts when a ends
    lanes = _lanes([a, b, c])
    assert lanes[0] != lanes[1]
    assert lanes[2] == lanes[0]
    assert max(lanes) == 1


def test_log_tails_and_names_are_escaped_so_a_log_cannot_inject_markup():
    evil = "</pre><script>alert('x')</script>"
    jobs = [JobRecord(f"job<{evil}>", "isr", "failed", 1.0, 2.0)]
    page = render_html(summary(jobs, [FailureRecord("job", "isr", "exit 1", "/log", evil)]))
    assert "<script>alert" not in page
    assert page.count("<script>") == 1  # the page's own script
    assert "&lt;/pre&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_the_page_is_self_contained_nothing_is_fetched_at_view_time():
    jobs = [JobRecord("isr_0", "isr", "succeeded", 1.0, 2.0, 10.0, 100.0)]
    page = render_html(summary(jobs))
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@import" not in page and "<link" not in page


def test_requested_memory_is_drawn_beside_the_memory_used():
    jobs = [JobRecord("isr_0", "isr", "succeeded", 1.0, 2.0, 60.0, 2048.0)]
    page = render_html(summary(jobs))
    assert 'class="requested"' in page and "asked 2048" in page


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_peak_memory_is_each_pieces_own_peak_not_the_process_high_water_mark():
    peak = PeakMemory()
    peak.start()
    block = bytearray(300 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    first = peak.stop()
    del block
    peak.start()
    second = peak.stop()
    assert not peak.per_process
    assert first > 300
    assert second < first - 200  # the process's high-water mark would still say > 300 MB


def toy_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_detector: int = -1):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    return toy, TOY.write_graph(tmp_path / "g.qgraph", toy.seeds, fail_detector)


def test_supertask_run_html_draws_every_quantum_it_ran_with_its_failure(tmp_path, monkeypatch):
    toy, graph = toy_graph(tmp_path, monkeypatch, fail_detector=3)
    html = tmp_path / "out" / "run.html"
    result = CliRunner().invoke(
        supertask_main, ["run", str(toy.repo), "--qgraph", str(graph), "-j", "2", "--html", str(html)]
    )
    assert result.exit_code == 1, result.output  # detector 3 fails
    page = html.read_text()
    bars = BAR.findall(page)
    # five make quanta ran (one failed); total was never started: upstream failed
    assert sorted(label for label, _ in bars) == ["make"] * 5
    assert "make fails on purpose" in page  # the log tail
    assert "skipped upstream" in page and "u/test/report" in page
    assert 'data-label="make"' in page and 'data-label="total"' in page
    assert "<title>make → total</title>" in page  # the pipeline picture's edge
    assert SEEDS_RUN in page  # provenance: the input collections of the graph


def test_executor_records_start_end_and_own_peak_memory_of_each_quantum(tmp_path, monkeypatch):
    from supertask.execution import run_graph
    from supertask.graph.quantum_graph import QuantumGraph
    from supertask.repo.butler import Butler

    toy, graph_file = toy_graph(tmp_path, monkeypatch)
    butler = Butler(toy.repo, collections=[SEEDS_RUN])
    result = run_graph(butler, QuantumGraph.load(graph_file), RUN, processes=2)
    assert result.ok
    assert sorted(r.label for r in result.quanta) == ["make"] * 5 + ["total"]
    for r in result.quanta:
        assert r.state == "succeeded"
        assert 0 < r.start <= r.end
        assert r.peak_memory_mb is not None and r.peak_memory_mb > 1


def test_local_runs_record_start_end_and_peak_memory_of_every_job(tmp_path, monkeypatch):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("plain", resources={"labels": {"total": {"memory_mb": 1500}}})
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    assert result.exit_code == 0, result.output
    submit_dir = submit_dir_of(config)
    jobs = read_run_record(submit_dir)["jobs"]
    assert len(jobs) == 5 + 1 + 1
    for info in jobs.values():
        assert info["start"] <= info["end"]
        assert info["peak_memory_mb"] > 1
    report = LocalService().report(submit_dir)
    by_name = {j.name: j for j in report.jobs}
    assert set(by_name) == set(jobs)
    assert {j.request_memory_mb for j in report.jobs if j.label == "total"} == {1500}
    # the text report puts each label's largest peak beside its request
    text = CliRunner().invoke(bps_main, ["report", str(submit_dir)]).output
    assert "peak MB" in text and "asked MB" in text
    total_peak = max(j.peak_memory_mb for j in report.jobs if j.label == "total")
    jobs_table = text.split("memory per task label")[0]  # the per-quantum table follows (below)
    (row,) = [line for line in jobs_table.splitlines() if line.startswith("│ total ") and "1500" in line]
    assert f"{total_peak:.0f}" in row


def test_bps_report_sets_each_task_labels_request_beside_what_its_quanta_used(tmp_path, monkeypatch):
    from bps.usage import read_usage

    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("asked", resources={"labels": {"total": {"memory_mb": 1500}}})
    assert CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"]).exit_code == 0
    submit_dir = submit_dir_of(config)
    peaks = {
        label: sorted(r.peak_memory_mb for r in read_usage(submit_dir) if r.label == label)
        for label in ("make", "total")
    }
    assert len(peaks["make"]) == 5 and len(peaks["total"]) == 1
    text = CliRunner().invoke(bps_main, ["report", str(submit_dir)]).output
    table = text.split("memory per task label")[1]
    for label, asked in (("make", 2048), ("total", 1500)):
        (row,) = [line for line in table.splitlines() if line.startswith(f"│ {label} ")]
        cells = [c.strip() for c in row.strip("│").split("│")]
        largest = peaks[label][-1]
        unused = f"{1 - largest / asked:.0%}"
        assert cells == [
            label,
            str(len(peaks[label])),
            str(asked),
            f"{peaks[label][len(peaks[label]) // 2]:.0f}",
            f"{largest:.0f}",
            unused,
        ]
    html = tmp_path / "r.html"
    assert CliRunner().invoke(bps_main, ["report", str(submit_dir), "--html", str(html)]).exit_code == 0
    page = html.read_text()
    assert "Memory requested and used per task label" in page
    assert f"<td>1500</td><td>{peaks['total'][0]:.0f}</td>" in page


def test_bps_report_html_shows_each_job_the_failures_and_the_pipeline_down_to_the_final_job(
    tmp_path, monkeypatch
):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("failing", fail_detector=2, retry={"retries": 0})
    CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    submit_dir = submit_dir_of(config)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(bps_main, ["report", str(submit_dir), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert f"run report: {html}" in result.output
    page = html.read_text()
    ran = {n for n, i in read_run_record(submit_dir)["jobs"].items() if i.get("start")}
    assert {name for _, name in BAR.findall(page)} == ran
    assert len(BAR.findall(page)) == len(ran) == 5 + 1  # 5 make jobs and the final job; total skipped
    assert "make fails on purpose" in page
    wf = load_workflow(submit_dir / "workflow.json")
    assert label_edges(wf) == [("make", "total"), ("total", wf.final.label)]
    assert json.loads((submit_dir / "run_record.json").read_text())["state"] == "failed"


def test_bps_report_html_to_an_unwritable_place_is_a_one_line_error(tmp_path, monkeypatch):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    config = toy.submit_yaml("plain")
    CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        bps_main, ["report", str(submit_dir_of(config)), "--html", str(blocker / "r.html")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "r.html" in result.output
    assert len(result.output.strip().splitlines()[-1]) > 0 and "error" in result.output.splitlines()[-1]


def test_supertask_run_refuses_an_unwritable_report_path_before_running_anything(tmp_path, monkeypatch):
    toy, graph = toy_graph(tmp_path, monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(
        supertask_main, ["run", str(toy.repo), "--qgraph", str(graph), "--html", str(blocker / "r.html")]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "--html" in result.output
    assert not (toy.repo / RUN).exists()  # nothing ran


# -- HTCondor: the times and memory of each node, from the event log real HTCondor 25.14.0 wrote ---


def _event_log_by_hand(path: Path) -> dict[int, dict[str, object]]:
    """Cluster -> first execute time, last terminate time and memory usage, read from the log's text."""
    import time as _time

    out: dict[int, dict[str, object]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"(\d{3}) \((\d+)\.\d+\.\d+\) (\S+ \S+) ", line)
        if m:
            code, cluster = int(m.group(1)), int(m.group(2))
            when = _time.mktime(_time.strptime(m.group(3), "%Y-%m-%d %H:%M:%S"))
            entry = out.setdefault(cluster, {})
            if code == 1:
                entry.setdefault("start", when)
            elif code in (5, 9):
                entry["end"] = when
            current = (code, cluster)
            continue
        usage = re.match(r"\s+Memory \(MB\)\s+:\s+(\d+)\s+(\d+)", line)
        if usage and current and current[0] == 5:
            out[current[1]]["memory"] = int(usage.group(1))
    return out


def test_htcondor_report_carries_each_nodes_times_and_memory_as_the_real_event_log_says(tmp_path):
    from support.real_htcondor import DATA_25140, scenario

    from bps.wms.htcondor.eventlog import read_event_log
    from bps.wms.htcondor.layout import find_dag
    from bps.wms.htcondor.report import build_report

    submit = scenario("demo-success", tmp_path, data=DATA_25140)
    layout = find_dag(submit)
    report = build_report(submit)
    by_hand = _event_log_by_hand(layout.nodes_log)
    history = read_event_log(layout.nodes_log)
    assert len(report.jobs) == 29
    for job in report.jobs:
        expected = by_hand[history[job.name].clusters[-1]]
        assert (job.start, job.end) == (expected["start"], expected["end"]), job.name
        assert job.peak_memory_mb == (expected["memory"] or None)
        assert job.request_memory_mb and job.request_memory_mb >= 1
    html = tmp_path / "condor.html"
    result = CliRunner().invoke(bps_main, ["report", str(submit), "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert len(BAR.findall(html.read_text())) == 29


# -- Pegasus: each job's times from the jobstate.log real Pegasus 5.1.2 wrote -----------------------


def test_pegasus_report_carries_each_jobs_times_as_the_real_jobstate_log_says(tmp_path):
    from test_pegasus_real_runs import RUNS, _run_submit_dir

    from bps.wms.pegasus.service import PegasusService

    submit = _run_submit_dir(tmp_path, "pegasus_local")
    report = PegasusService().report(submit)
    by_hand: dict[str, dict[str, int]] = {}
    for log in (RUNS / "pegasus_local" / "jobstate.log", RUNS / "pegasus_local" / "compute" / "jobstate.log"):
        for line in log.read_text().splitlines():
            t, node, event = line.split()[:3]
            entry = by_hand.setdefault(node, {})
            if event == "EXECUTE":
                entry.setdefault("start", int(t))
            elif event == "JOB_TERMINATED":
                entry["end"] = int(t)
    timed = [j for j in report.jobs if j.start is not None]
    assert len(timed) == len(report.jobs) > 20  # every job of the finished run ran
    job_map = json.loads((submit / "pegasus" / "job_map.json").read_text())
    # Pegasus names a job's DAG node <transformation>_<id>: run_quantum for quanta, bps for the final job
    node_of = {
        entry["name"]: next(f"{t}_{pid}" for t in ("run_quantum", "bps") if f"{t}_{pid}" in by_hand)
        for pid, entry in job_map.items()
    }
    checked = 0
    for job in report.jobs:
        node = node_of.get(job.name, job.name)
        if node in by_hand:
            assert (job.start, job.end) == (by_hand[node]["start"], by_hand[node]["end"]), job.name
            checked += 1
    assert checked == len(report.jobs)


def test_report_heading_keeps_a_long_submit_dir_path_on_one_line(capsys, monkeypatch):
    """The heading names the submit directory whole, however narrow the table under it."""
    from bps.cli import _print_report
    from bps.wms.base import RunReport
    from supertask.states import RunState

    monkeypatch.setenv("COLUMNS", "80")
    submit_dir = (
        "/tmp/pytest-of-someone/pytest-1012/popen-gw1/test_a_rather_long_name0/submit/[run]/cancelled"
    )
    report = RunReport(submit_dir=submit_dir, wms="parsl", state=RunState.RUNNING)
    report.add("make", "running", 2)
    _print_report(report)
    out = capsys.readouterr().out
    assert f"{submit_dir} (parsl, running)" in out.splitlines()
