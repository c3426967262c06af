"""`bps report` on the files real Pegasus 5.1.2 and HTCondor 25.14.0 wrote for the demo tile.

``tests/data/real-pegasus/<scenario>/`` holds what Pegasus's own tools wrote in two runs of the
demo's Pegasus workflow on a real pool (see its README): ``jobstate.log`` (pegasus-monitord),
``braindump.yml`` and the planned ``.dag`` (pegasus-plan), and the project's files of that run
(``run_record.json``, the finalize summary). Those runs used the earlier layout, in which the final
job was a child of the compute jobs but not of the stage-out jobs:

- ``pegasus_local``: started with ``plan.sh`` (no run recorded), DAGMan said Success, but the
  final job ran while the coadd outputs were still being staged: 80 of 254 outputs unregistered;
- ``pegasus_condorio``: started with ``bps submit``; every output registered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bps.wms.pegasus.service import PegasusService

try:
    from tests.support.pegasus_dag import ancestors, check_plan, dag_nodes, dag_parents, transfer_inputs
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support.pegasus_dag import ancestors, check_plan, dag_nodes, dag_parents, transfer_inputs

DATA = Path(__file__).resolve().parent / "data" / "real-pegasus"


def _submit_dir(tmp_path: Path, scenario: str, record: str, summary: str) -> Path:
    """A submit directory holding the real run's files where Pegasus and bps put them."""
    source = DATA / scenario
    submit = tmp_path / "submit"
    run_dir = submit / "pegasus" / "submit" / "run"
    run_dir.mkdir(parents=True)

    def place(name: str, target: Path) -> None:
        target.write_text((source / name).read_text().replace("{submit_dir}", str(submit)))

    place(record, submit / "run_record.json")
    place(summary, submit / "finalize_summary.json")
    place("job_map.json", submit / "pegasus" / "job_map.json")
    for name in ("jobstate.log", "braindump.yml"):
        place(name, run_dir / name)
    dag = next(source.glob("*.dag"))
    shutil.copyfile(dag, run_dir / dag.name)
    # the transformation catalog the project wrote for that run: run_quantum and bps
    (submit / "pegasus" / "transformations.yml").write_text(
        json.dumps({"transformations": [{"name": "run_quantum"}, {"name": "bps"}]})
    )
    return submit


def test_report_of_the_real_plan_sh_run_finds_the_run_and_says_80_missing_outputs_are_a_failure(tmp_path):
    submit = _submit_dir(
        tmp_path, "pegasus_local", "run_record.orig.json", "finalize_summary.in_workflow.json"
    )
    assert "run_dir" not in json.loads((submit / "run_record.json").read_text())  # plan.sh records nothing
    report = PegasusService().report(submit)

    # DAGMan said Success (DAGMAN_FINISHED 0), finalize exited 0, yet 80 outputs were not registered
    assert "DAGMAN_FINISHED 0" in (DATA / "pegasus_local" / "jobstate.log").read_text()
    assert report.state == "failed"
    assert any("80 expected outputs not registered" in m for m in report.messages)
    assert any("found from its braindump.yml" in m for m in report.messages)
    assert report.run_id == "9a893045-104e-43a8-964f-52ab9785af61"

    # every one of the 41 DAG nodes is accounted for, Pegasus's own jobs apart from ours
    assert not [m for m in report.messages if "is not a job of this workflow" in m]
    totals = report.totals()
    assert (
        totals["succeeded"] == len(dag_nodes(next((DATA / "pegasus_local").glob("*.dag")).read_text())) == 41
    )
    assert report.counts["(pegasus clean_up)"]["succeeded"] == 4
    assert report.counts["(pegasus stage_out)"]["succeeded"] == 4
    assert report.counts["(pegasus stage_in)"]["succeeded"] == 2
    assert report.counts["(pegasus create_dir)"]["succeeded"] == 1
    assert report.counts["(pegasus cleanup)"]["succeeded"] == 1
    assert {label: report.counts[label]["succeeded"] for label in ("isr", "visit", "coadd", "finalize")} == {
        "isr": 6,
        "visit": 6,
        "coadd": 16,
        "finalize": 1,
    }


def test_report_of_the_real_bps_submit_run_with_every_output_registered_is_a_success(tmp_path):
    submit = _submit_dir(tmp_path, "pegasus_condorio", "run_record.json", "finalize_summary.final.json")
    report = PegasusService().report(submit)
    assert json.loads((submit / "finalize_summary.json").read_text())["missing"] == 0
    assert report.state == "succeeded"
    assert report.totals()["succeeded"] == 41
    assert report.counts["(pegasus clean_up)"]["succeeded"] == 4
    assert not [m for m in report.messages if "is not a job" in m or "found from" in m]


def test_the_real_flat_plans_ordered_finalize_after_the_compute_jobs_but_not_after_stage_out():
    # what the earlier layout gave on the real planner: the defect the sub-workflow removes
    for scenario in ("pegasus_local", "pegasus_condorio"):
        dag = next((DATA / scenario).glob("*.dag"))
        before_final = ancestors(dag_parents(dag.read_text()), "bps_finalize")
        stage_outs = {n for n in dag_nodes(dag.read_text()) if n.startswith("stage_out_")}
        assert stage_outs and not stage_outs & before_final
    # and Pegasus copied every output listed as an input into the final job's sandbox
    sub = (DATA / "pegasus_condorio" / "jobs" / "bps_finalize.sub").read_text()
    assert len(transfer_inputs(sub)) > 250


def test_the_real_planner_wrote_the_memory_profiles_unchanged_and_a_restart_can_rewrite_them(tmp_path):
    try:
        from tests.support import memory_classads as ads
    except ImportError:
        from support import memory_classads as ads
    from bps.wms.pegasus.service import _rewrite_submit_lines

    jobs = DATA / "pegasus_condorio" / "jobs"
    planned = json.loads((jobs / "coadd_0_demo_skymap_0.profiles.json").read_text())["profiles"]["condor"]
    text = (jobs / "run_quantum_coadd_0_demo_skymap_0.sub").read_text()
    lines = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    assert {key: lines[key] for key in planned} == planned
    # what `bps restart` does to a job that grew to 8192 MB, on the file the planner wrote
    sub = tmp_path / "job.sub"
    sub.write_text(text)
    grown = {key: value.replace("2048", "8192") for key, value in planned.items()}
    _rewrite_submit_lines(sub, grown)
    rewritten = sub.read_text().splitlines()
    assert len(rewritten) == len(text.splitlines())
    assert (
        ads.first_start(ads.expand_submit("\n".join(f"{k} = {v}" for k, v in grown.items()))).request_mb
        == 8192
    )
    assert [line for line in rewritten if line.startswith("request_memory")] == [
        f"request_memory = {grown['request_memory']}"
    ]


@pytest.mark.pegasus_planner
@pytest.mark.skipif(shutil.which("pegasus-exitcode") is None, reason="pegasus-exitcode is not on PATH")
@pytest.mark.parametrize(("exit_code", "node_fails"), [(0, False), (69, True)])
def test_pegasus_fails_the_final_node_when_finalize_exits_outputs_missing(tmp_path, exit_code, node_fails):
    """The final node's POST script is Pegasus's pegasus-exitcode on the job's kickstart record."""
    from bps import exit_codes

    assert exit_codes.OUTPUTS_MISSING == 69
    record = (DATA / "pegasus_local" / "jobs" / "bps_finalize.out.000").read_text()
    assert "raw: 0\n      regular_exitcode: 0\n" in record
    out = tmp_path / "bps_finalize.out"
    out.write_text(
        record.replace("raw: 0\n", f"raw: {exit_code << 8}\n").replace(
            "regular_exitcode: 0\n", f"regular_exitcode: {exit_code}\n"
        )
    )
    proc = subprocess.run(
        ["pegasus-exitcode", "-n", "-N", "-r", str(exit_code), str(out)], capture_output=True, text=True
    )
    assert (proc.returncode != 0) == node_fails, proc.stdout + proc.stderr


# -- the sub-workflow layout, run by real Pegasus 5.1.2 on a real HTCondor pool -----------------

RUNS = Path(__file__).resolve().parent / "data" / "real-pegasus-runs"
COMPUTE_RUN = "00/00/demo_tile0-pegasus-compute_compute_workflow"


def _run_submit_dir(tmp_path: Path, scenario: str) -> Path:
    """A submit directory with the run's files where Pegasus and bps left them."""
    source = RUNS / scenario
    submit = tmp_path / "submit"
    run_dir = submit / "pegasus" / "submit" / "run"
    compute = run_dir / (COMPUTE_RUN + ".000")
    compute.mkdir(parents=True)
    (run_dir / COMPUTE_RUN).symlink_to(compute.name)

    def place(name: str, target: Path) -> None:
        target.write_text((source / name).read_text().replace("{submit_dir}", str(submit)))

    for name in ("run_record.json", "finalize_summary.json"):
        place(name, submit / name)
    place("job_map.json", submit / "pegasus" / "job_map.json")
    for name in ("jobstate.log", "braindump.yml"):
        place(name, run_dir / name)
        place(f"compute/{name}", compute / name)
    (submit / "pegasus" / "transformations.yml").write_text(
        json.dumps({"transformations": [{"name": "run_quantum"}, {"name": "bps"}]})
    )
    return submit


def _events(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] != "INTERNAL":
            rows.append((int(fields[0]), fields[1], fields[2]))
    return rows


@pytest.mark.parametrize("scenario", sorted(p.name for p in RUNS.iterdir() if p.is_dir()))
def test_real_run_finalize_started_after_the_last_stage_out_and_registered_every_output(tmp_path, scenario):
    source = RUNS / scenario
    compute_events = _events(source / "compute" / "jobstate.log")
    top_events = _events(source / "jobstate.log")
    staged_out = max(
        t
        for t, node, event in compute_events
        if node.startswith("stage_out_") and event == "POST_SCRIPT_SUCCESS"
    )
    (started,) = [t for t, node, event in top_events if node == "bps_finalize" and event == "EXECUTE"]
    assert started >= staged_out
    assert "DAGMAN_FINISHED 0" in (source / "jobstate.log").read_text()
    summary = json.loads((source / "finalize_summary.json").read_text())
    assert (summary["registered"], summary["missing"], summary["rejected"]) == (254, 0, [])
    # the same datasets and checksums as the local run of the same graph (demo/tile0-batch)
    checks = (source / "checksums.txt").read_text()
    assert "demo/tile0-pegasus: 254 datasets" in checks and "same checksums: True" in checks
    # the DAGs that ran: every stage-out before the final job, which transferred nothing
    check_plan(
        next(source.glob("*.dag")).read_text(),
        next((source / "compute").glob("*.dag")).read_text(),
        (source / "bps_finalize.sub").read_text(),
    )


@pytest.mark.parametrize("scenario", sorted(p.name for p in RUNS.iterdir() if p.is_dir()))
def test_report_of_a_real_sub_workflow_run_counts_every_node_and_calls_it_a_success(tmp_path, scenario):
    submit = _run_submit_dir(tmp_path, scenario)
    report = PegasusService().report(submit)
    assert report.state == "succeeded"
    nodes = len(dag_nodes(next((RUNS / scenario).glob("*.dag")).read_text())) + len(
        dag_nodes(next((RUNS / scenario / "compute").glob("*.dag")).read_text())
    )
    assert report.totals()["succeeded"] == nodes == 39
    # the sub-workflow's node has no POST script: its JOB_SUCCESS is its end
    assert report.counts["(pegasus sub-workflow)"]["succeeded"] == 1
    assert report.counts["finalize"]["succeeded"] == 1
    assert {label: report.counts[label]["succeeded"] for label in ("isr", "visit", "coadd")} == {
        "isr": 6,
        "visit": 6,
        "coadd": 16,
    }
    assert not [m for m in report.messages if "is not a job" in m]
