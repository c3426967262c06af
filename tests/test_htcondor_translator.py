"""The DAG and submit files written by the HTCondor translator."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import htcondor2
import pytest
from support.dagman_runner import parse_dag
from support.htcondor_workflows import FAKE_JOB, diamond, pool_site

from bps import exit_codes
from bps.wms.htcondor.layout import find_dag
from bps.wms.htcondor.quoting import split_arguments
from bps.wms.htcondor.translator import NodeOverrides, write_dag
from bps.workflow import Job, Resources, RetryPolicy


def _many(tmp_path: Path, n: int, staging: str = "shared"):
    wf = diamond(tmp_path, staging)
    for i in range(n):
        wf.add_job(
            Job(
                f"extra_{i}",
                "calibrate",
                [100 + i],
                ["--graph", wf.graph_file, "--quantum", str(100 + i)],
                executable=FAKE_JOB,
                log_subdir=f"visit-{i % 3}",
            )
        )
    return wf


def test_one_submit_description_per_label_not_per_job(tmp_path):
    wf = _many(tmp_path, 40)
    layout = write_dag(wf)
    subs = sorted(p.name for p in layout.submit_dir.glob("*.sub"))
    assert subs == ["bps_final.sub", "calibrate.sub", "coadd.sub", "detect.sub"]
    dag = parse_dag(layout.dag)
    assert len(dag.nodes) == len(wf.jobs) == 44
    assert {n.submit for n in dag.nodes.values()} == {
        str(layout.submit_dir / name) for name in ("calibrate.sub", "coadd.sub", "detect.sub")
    }


def test_edges_and_final_node_follow_the_workflow(tmp_path):
    wf = diamond(tmp_path)
    dag = parse_dag(write_dag(wf).dag)
    assert dag.nodes["coadd_0"].parents == {"calibrate_1", "calibrate_2"}
    assert dag.nodes["detect_0"].parents == {"coadd_0"}
    assert dag.final is not None and dag.final.submit == str(Path(wf.submit_dir).absolute() / "bps_final.sub")
    assert dag.final.retries == 0


def test_the_final_node_has_no_retry_priority_or_category_line(tmp_path):
    # Real DAGMan refuses them: "ERROR: RETRY node bps_final can not have a retry specification".
    wf = diamond(tmp_path, site=pool_site(max_jobs_per_label={"finalize": 1}))
    wf.final = replace(wf.final, retry=RetryPolicy(retries=2), priority=5)
    text = write_dag(wf).dag.read_text()
    lines = [line.split()[:2] for line in text.splitlines() if line and not line.startswith("#")]
    assert [cmd for cmd, node in lines if node == "bps_final"] == ["FINAL"]


def test_the_final_node_retries_in_its_cluster_but_never_an_outcome(tmp_path):
    # bps finalize is idempotent: a registry briefly down is worth a retry; missing outputs,
    # a failed DAG or rejected files are outcomes.
    wf = diamond(tmp_path)
    wf.final = replace(wf.final, retry=RetryPolicy(retries=2))
    sub = htcondor2.Submit((write_dag(wf).submit_dir / "bps_final.sub").read_text())
    assert sub["max_retries"] == "2"
    until = sub["retry_until"]
    for code in (
        exit_codes.OUTPUTS_MISSING,
        exit_codes.WORKFLOW_FAILED,
        exit_codes.DATA_ERROR,
        exit_codes.USAGE,
    ):
        assert f"ExitCode =?= {code}" in until
    assert f"ExitCode =?= {exit_codes.TEMPORARY}" not in until


def test_the_final_job_is_told_the_dag_status_and_failed_count(tmp_path):
    wf = diamond(tmp_path)
    sub = htcondor2.Submit((write_dag(wf).submit_dir / "bps_final.sub").read_text())
    sub["DAG_STATUS"], sub["FAILED_COUNT"] = "2", "1"  # what DAGMan defines for the node
    args = split_arguments(sub.expand("arguments").strip('"'))
    assert args[-4:] == ["--dag-status", "2", "--failed-count", "1"]


@pytest.mark.parametrize("staging", ["shared", "transfer"])
def test_every_submit_description_parses_with_htcondor2(tmp_path, staging):
    layout = write_dag(diamond(tmp_path, staging))
    for sub in layout.submit_dir.glob("*.sub"):
        desc = htcondor2.Submit(sub.read_text())
        for key in ("executable", "arguments", "request_memory", "request_cpus", "output", "error"):
            assert key in desc, f"{sub.name} lacks {key}"
        assert desc["output"] == desc["error"], "stdout and stderr must be merged"
        assert desc["getenv"].lower() == "false"


def test_vars_expand_to_the_exact_job_arguments(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_2": ["--note", 'it\'s a "quoted" value', "back\\slash"]})
    layout = write_dag(wf)
    dag = parse_dag(layout.dag)
    for name in ("calibrate_1", "calibrate_2"):
        node = dag.nodes[name]
        sub = htcondor2.Submit((layout.submit_dir / node.submit).read_text())
        for key, value in node.vars.items():
            sub[key] = value
        args = split_arguments(sub.expand("arguments").strip('"'))
        assert args == wf.jobs[name].arguments + ["--repo", wf.repo]


def test_transfer_mode_ships_the_graph_and_inputs_and_brings_outputs_to_staged(tmp_path):
    wf = diamond(tmp_path, "transfer")
    layout = write_dag(wf)
    dag = parse_dag(layout.dag)
    sub = htcondor2.Submit(layout.submit_file("coadd").read_text())
    for key, value in dag.nodes["coadd_0"].vars.items():
        sub[key] = value
    inputs = sub.expand("transfer_input_files").split(",")
    assert inputs == [wf.graph_file] + [str(layout.staged / f.lfn) for f in wf.jobs["coadd_0"].inputs]
    # Outputs (or their tombstones, for no work) come back under their logical names.
    assert sub.expand("transfer_output_files") == "coadd.skymap-demo.tract-0"
    assert sub["initialdir"] == str(layout.staged)
    assert sub["when_to_transfer_output"] == "ON_SUCCESS"
    # The job itself runs, with no wrapper in between.
    assert sub["executable"] == FAKE_JOB
    args = split_arguments(sub.expand("arguments").strip('"'))
    assert args[:2] == ["--graph", "pipeline.qgraph"]
    assert args[-4:] == ["--inputs-dir", ".", "--outputs-dir", "."]
    # Overall inputs are linked under their logical names to their datastore files.
    link = layout.input_links / wf.jobs["calibrate_1"].inputs[0].lfn
    assert link.resolve() == (Path(wf.repo) / wf.jobs["calibrate_1"].inputs[0].path).resolve()


def test_no_node_has_a_dagman_retry_or_script_retries_stay_in_the_cluster(tmp_path):
    wf = diamond(tmp_path)
    wf.jobs["coadd_0"] = replace(wf.jobs["coadd_0"], retry=RetryPolicy(retries=0))
    layout = write_dag(wf)
    text = layout.dag.read_text()
    assert not re.search(r"^(RETRY|SCRIPT) ", text, re.M)
    dag = parse_dag(layout.dag)
    sub = htcondor2.Submit(layout.submit_file("calibrate").read_text())
    assert sub.expand("max_retries") == "2"
    until = sub["retry_until"]
    assert all(f"ExitCode =?= {c}" in until for c in exit_codes.NO_RETRY)
    assert f"ExitCode =?= {exit_codes.TEMPORARY}" not in until
    # A node with other retries than its label gets them through VARS.
    assert dag.nodes["coadd_0"].vars.get("bps_retries") in (None, "0")
    coadd = htcondor2.Submit(layout.submit_file("coadd").read_text())
    for key, value in dag.nodes["coadd_0"].vars.items():
        coadd[key] = value
    assert coadd.expand("max_retries") == "0"


def test_a_node_with_other_retries_than_its_label_gets_them_through_vars(tmp_path):
    wf = diamond(tmp_path)
    wf.jobs["calibrate_2"] = replace(wf.jobs["calibrate_2"], retry=RetryPolicy(retries=5))
    layout = write_dag(wf)
    dag = parse_dag(layout.dag)
    assert dag.nodes["calibrate_2"].vars["bps_retries"] == "5"
    assert "bps_retries" not in dag.nodes["calibrate_1"].vars


def test_transfer_node_without_outputs_names_the_explicit_empty_list(tmp_path):
    # An empty transfer_output_files would make HTCondor bring back every new file.
    wf = diamond(tmp_path, "transfer")
    wf.jobs["detect_0"] = replace(wf.jobs["detect_0"], outputs=[])
    layout = write_dag(wf)
    dag = parse_dag(layout.dag)
    sub = htcondor2.Submit(layout.submit_file("detect").read_text())
    for key, value in dag.nodes["detect_0"].vars.items():
        sub[key] = value
    assert sub.expand("transfer_output_files") == '""'


def test_transfer_mode_writes_no_job_wrapper_and_no_side_directory(tmp_path):
    # No work travels as tombstones in place of outputs: nothing else to set up.
    layout = write_dag(diamond(tmp_path, "transfer"))
    assert sorted(p.name for p in layout.submit_dir.iterdir() if p.suffix == ".sh") == []
    assert list(layout.staged.iterdir()) == []


def test_throttles_priority_and_categories(tmp_path):
    wf = diamond(tmp_path, site=pool_site(max_jobs_per_label={"coadd": 1}))
    wf.throttles = {"io": 3}
    wf.jobs["calibrate_1"] = replace(wf.jobs["calibrate_1"], throttle="io", priority=7)
    dag = parse_dag(write_dag(wf).dag)
    assert dag.maxjobs == {"io": 3, "coadd": 1}
    assert dag.nodes["calibrate_1"].category == "io" and dag.nodes["calibrate_1"].priority == 7
    assert dag.nodes["coadd_0"].category == "coadd"
    assert dag.nodes["calibrate_2"].category is None


def test_node_status_file_is_periodic_and_dagman_config_takes_site_values(tmp_path):
    wf = diamond(
        tmp_path, site=pool_site(dagman_config={"DAGMAN_MAX_JOBS_IDLE": 50, "DAGMAN_MAX_POST_SCRIPTS": 8})
    )
    layout = write_dag(wf)
    text = layout.dag.read_text()
    assert re.search(r"^NODE_STATUS_FILE \S+ \d+$", text, re.M) and "ALWAYS-UPDATE" not in text
    assert f"CONFIG {layout.config}\n" in text
    config = layout.config.read_text()
    assert "DAGMAN_MAX_JOBS_IDLE = 50" in config and "DAGMAN_MAX_POST_SCRIPTS = 8" in config


def test_dagman_config_leaves_the_log_scan_interval_to_the_site(tmp_path):
    layout = write_dag(diamond(tmp_path))
    assert not re.search(r"^DAGMAN_USER_LOG_SCAN_INTERVAL", layout.config.read_text(), re.M)
    site = pool_site(dagman_config={"DAGMAN_USER_LOG_SCAN_INTERVAL": 1})
    layout = write_dag(diamond(tmp_path / "site", site=site))
    assert "DAGMAN_USER_LOG_SCAN_INTERVAL = 1" in layout.config.read_text()


def test_every_file_the_dag_names_is_absolute_so_submit_works_from_any_directory(tmp_path):
    layout = write_dag(diamond(tmp_path))
    named = []
    for line in layout.dag.read_text().splitlines():
        t = line.split()
        if t and t[0] in ("CONFIG", "NODE_STATUS_FILE"):
            named.append(t[1])
        elif t and t[0] in ("JOB", "FINAL"):
            named.append(t[2])
    assert named and all(Path(p).is_absolute() for p in named)
    assert all(Path(p).parent == layout.submit_dir for p in named)


def test_per_node_resources_appear_only_when_they_differ_from_the_label(tmp_path):
    wf = diamond(tmp_path)
    wf.jobs["calibrate_2"] = replace(wf.jobs["calibrate_2"], resources=Resources(memory_mb=2048, cpus=2))
    layout = write_dag(wf, node_overrides=NodeOverrides(memory_mb={"calibrate_1": 6000}))
    dag = parse_dag(layout.dag)
    assert dag.nodes["calibrate_1"].vars["bps_memory"] == "6000"
    assert dag.nodes["calibrate_2"].vars["bps_cpus"] == "2"
    assert "bps_memory" not in dag.nodes["coadd_0"].vars
    sub = htcondor2.Submit(layout.submit_file("calibrate").read_text())
    sub["bps_memory"] = "6000"
    assert "6000" in sub.expand("request_memory")


def test_final_job_resources_and_site_settings_reach_the_submit_files(tmp_path):
    site = pool_site()
    site = replace(
        site,
        accounting_group="group_survey.ops",
        project="DRP-2026",
        requirements="(OpSysMajorVer == 9)",
        environment={"DAF_CACHE": "/scratch/cache dir"},
    )
    wf = diamond(tmp_path, site=site)
    layout = write_dag(wf)
    final = htcondor2.Submit(layout.final_submit_file.read_text())
    assert final["request_memory"] == "1024"
    job = htcondor2.Submit(layout.submit_file("detect").read_text())
    assert job["accounting_group"] == "group_survey.ops"
    assert job["MY.ProjectName"] == '"DRP-2026"'
    assert job["requirements"] == "(OpSysMajorVer == 9)"
    env = dict(x.split("=", 1) for x in split_arguments(job["environment"].strip('"')))
    assert env["DAF_CACHE"] == "/scratch/cache dir"
    assert env["PATH"].startswith(str(Path(site.python).parent))


def test_log_directories_per_label_and_unit_exist_before_jobs_run(tmp_path):
    layout = write_dag(diamond(tmp_path))
    for d in ("calibrate/visit-1", "calibrate/visit-2", "coadd/tract-0", "detect/tract-0", "final"):
        assert (layout.submit_dir / "logs" / d).is_dir()
    assert not (layout.submit_dir / "jobs").exists()


def test_jobs_without_a_log_subdir_log_under_jobs_per_label_and_unit(tmp_path):
    wf = diamond(tmp_path)
    wf.jobs["coadd_0"] = replace(wf.jobs["coadd_0"], log_subdir="")
    dag = parse_dag(write_dag(wf).dag)
    assert dag.nodes["coadd_0"].vars["bps_log"] == "jobs/coadd/tract-0/coadd_0"
    assert dag.nodes["calibrate_1"].vars["bps_log"] == "logs/calibrate/visit-1/calibrate_1"


def test_site_template_directory_overrides_a_shipped_template(tmp_path):
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "dagman.config").write_text("# site dagman config\nDAGMAN_MAX_JOBS_IDLE = @max_jobs_idle\n")
    layout = write_dag(diamond(tmp_path, site=pool_site(templates_dir=str(custom))))
    assert layout.config.read_text().startswith("# site dagman config")


def test_a_site_template_with_an_unknown_placeholder_is_refused(tmp_path):
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "final.sub").write_text("executable = @interpreter\nqueue\n")
    with pytest.raises(ValueError, match="@interpreter"):
        write_dag(diamond(tmp_path, site=pool_site(templates_dir=str(custom))))


def test_job_names_that_collide_as_node_names_are_refused(tmp_path):
    wf = diamond(tmp_path)
    wf.add_job(Job("a b", "x", [1], []))
    wf.add_job(Job("a_b", "x", [2], []))
    with pytest.raises(ValueError, match="both become DAG node"):
        write_dag(wf)


def test_find_dag_explains_an_unprepared_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared for HTCondor"):
        find_dag(tmp_path)


def test_a_label_walltime_limits_execution(tmp_path):
    wf = diamond(tmp_path)
    for name in ("detect_0",):
        wf.jobs[name] = replace(wf.jobs[name], resources=Resources(walltime_s=3600))
    layout = write_dag(wf)
    assert htcondor2.Submit(layout.submit_file("detect").read_text())["allowed_execute_duration"] == "3600"
    assert "allowed_execute_duration" not in htcondor2.Submit(layout.submit_file("coadd").read_text())


def test_arguments_shared_by_a_label_are_written_once_in_its_submit_description(tmp_path):
    wf = diamond(tmp_path, extra={"calibrate_1": ["--tail", "x"], "calibrate_2": ["--tail", "x"]})
    layout = write_dag(wf)
    dag = parse_dag(layout.dag)
    sub = htcondor2.Submit(layout.submit_file("calibrate").read_text())
    assert sub["arguments"].startswith(f'"--graph {wf.graph_file} --quantum $(bps_args) --tail x --repo')
    assert dag.nodes["calibrate_1"].vars["bps_args"].startswith("1 --in=raw.")
    assert "--tail" not in dag.nodes["calibrate_1"].vars["bps_args"]
