"""Prepare-time checks: what a real HTCondor pool would refuse, reported with the fix."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from support.htcondor_workflows import diamond, pool_site

from bps.wms.base import WmsError
from bps.wms.htcondor import checks
from bps.wms.htcondor.service import HTCondorService
from bps.workflow import Resources


def test_submit_directory_under_tmp_is_refused_with_the_fix():
    problems = checks.check_not_tmp(Path("/tmp/run1/submit"))
    assert len(problems) == 1 and "strict mode" in problems[0] and "skip_checks" in problems[0]
    assert checks.check_not_tmp(Path("/home/ops/runs/1")) == []


def test_root_owned_directory_not_writable_by_the_job_user_is_refused(tmp_path):
    target = tmp_path / "submit"
    target.mkdir()
    target.chmod(0o755)
    if os.stat(target).st_uid == 0:
        assert "never run as root" in checks.check_job_user_access([target])[0]
        target.chmod(0o777)
    assert checks.check_job_user_access([target]) == []


def test_missing_or_relative_python_is_refused():
    site = pool_site()
    assert checks.check_python(site) == []
    assert checks.check_python(replace(site, python="")) == []  # the interpreter running bps
    assert "absolute" in checks.check_python(replace(site, python="python3"))[0]
    assert "not an executable" in checks.check_python(replace(site, python="/nonexistent/bin/python"))[0]


def test_environment_values_that_rely_on_the_submitter_environment_are_refused():
    site = replace(pool_site(), environment={"A": "$ENV(HOME)/x", "B": "/literal"})
    problems = checks.check_environment(site)
    assert len(problems) == 1 and problems[0].startswith("environment variable A=")


def test_a_final_job_larger_than_any_slot_is_refused_with_the_setting_to_change(tmp_path):
    wf = diamond(tmp_path)
    wf.final = replace(wf.final, resources=Resources(memory_mb=32768, cpus=16))
    with pytest.raises(WmsError) as err:
        HTCondorService().prepare(wf)
    message = str(err.value)
    assert "label 'finalize' asks for cpus=16" in message and "max_cpus" in message
    assert "memory_mb=32768" in message and "max_memory_mb" in message


def test_prepare_lists_every_problem_at_once(tmp_path):
    site = replace(pool_site(), python="/nonexistent/python", environment={"X": "${HOME}"}, condor={})
    wf = diamond(tmp_path, site=site)
    with pytest.raises(WmsError) as err:
        HTCondorService().prepare(wf)
    message = str(err.value)
    assert (
        "strict mode" in message
        and "/nonexistent/python is not an executable" in message
        and "environment variable X" in message
    )


def test_root_owned_submit_directory_is_a_warning_at_prepare_and_an_error_at_submit(tmp_path, monkeypatch):
    from bps.wms.htcondor import service as service_mod

    wf = diamond(tmp_path, site=pool_site(skip_checks=["tmp_node_log"]))
    monkeypatch.setattr(service_mod, "job_user_warnings", lambda wf, d: ["owned by root; chown it"])
    svc = HTCondorService()
    svc.prepare(wf)
    assert "warning: owned by root; chown it" in svc.report(Path(wf.submit_dir)).messages
    monkeypatch.setattr(service_mod, "_import_htcondor", lambda: object())
    with pytest.raises(WmsError, match="cannot submit: owned by root"):
        svc.submit(Path(wf.submit_dir))


def test_unknown_check_names_in_skip_checks_are_refused(tmp_path):
    wf = diamond(tmp_path, site=pool_site(skip_checks=["tmp"]))
    with pytest.raises(ValueError, match="unknown checks"):
        checks.check_workflow(wf, tmp_path)


def test_a_submit_directory_under_tmp_is_refused_before_the_graph_is_read(tmp_path):
    """Site mistakes cost a second, not the reading of a large graph: this one is not even a graph."""
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    not_a_graph = tmp_path / "huge.qgraph"
    not_a_graph.write_bytes(b"\0" * 1024)
    config = tmp_path / "bps.yaml"
    config.write_text(
        f"repo: {tmp_path / 'repo'}\nqgraph: {not_a_graph}\noutput_run: u/x\nwms: htcondor\n"
        f"compute_site: htcondor_shared\nsubmit_dir: {Path('/tmp') / tmp_path.name / 'submit'}\n"
    )
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code != 0
    assert "strict mode" in result.output and "qgraph" not in result.output.lower()
    assert not (Path("/tmp") / tmp_path.name / "submit").exists()


def test_memory_policy_must_name_a_pool_policy(tmp_path):
    ok = pool_site(memory_policy="startd")
    assert checks.check_memory_policy(ok) == []
    (problem,) = checks.check_memory_policy(pool_site(memory_policy="cgroups"))
    assert "condor.memory_policy 'cgroups'" in problem and "system_periodic_hold" in problem
    with pytest.raises(WmsError, match="memory_policy"):
        HTCondorService().precheck(pool_site(memory_policy="cgroups"), tmp_path / "submit")


def test_submit_directory_with_a_blank_is_refused_since_the_dag_names_files_absolutely(tmp_path):
    (problem,) = checks.check_dag_path(tmp_path / "my runs" / "submit")
    assert "blank" in problem
    assert checks.check_dag_path(tmp_path / "runs") == []


def test_the_site_memory_policy_chooses_the_hold_codes_of_the_submit_description(tmp_path):
    from bps.wms.htcondor.translator import write_dag

    layout = write_dag(diamond(tmp_path, site=pool_site(memory_policy="startd")))
    text = layout.submit_file("calibrate").read_text()
    assert "HoldReasonCode =?= 21 && HoldReasonSubCode =?= 102" in text
    assert "HoldReasonCode =?= 34" not in text and "periodic_hold" not in text
    layout = write_dag(diamond(tmp_path / "job", site=pool_site(memory_policy="job")))
    assert "periodic_hold_subcode = 34" in layout.submit_file("calibrate").read_text()
