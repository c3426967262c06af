"""`bps prepare` imports the task classes with the jobs' interpreter and environment (`bps.job_environment`).

A task package on the submitter's ``PYTHONPATH`` only: HTCondor jobs (``getenv = false``)
and Pegasus jobs do not see it and every job would fail with exit 78 (seen on a real
HTCondor 25.14.0 pool: docs/bps.md), so prepare refuses naming the fix; visible to the
jobs (site environment, ``getenv``, installed) it passes; an interpreter that is not on
the submit host is a warning saying what was not checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline

from bps import job_environment as je
from bps.cli import main as bps_main
from bps.wms.base import get_service
from bps.workflow import SiteConfig

CLASS = "stpeer_envcheck.IsrLikeTask"
TOY = ToyPipeline(run="u/test/envcheck", detectors=(1, 2), seed_scale=10, multiplier=2)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A task package ``stpeer_envcheck`` on the submitter's PYTHONPATH (and sys.path) only."""
    root = tmp_path / "pkgs"
    (root / "stpeer_envcheck").mkdir(parents=True)
    (root / "stpeer_envcheck" / "__init__.py").write_text(
        "from supertask.supertask import SuperTask\n\nclass IsrLikeTask(SuperTask):\n    pass\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    monkeypatch.syspath_prepend(str(root))
    return root


def _condor(**kwargs) -> SiteConfig:
    return SiteConfig(name="pool", wms="htcondor", **kwargs)


def test_htcondor_jobs_do_not_see_the_submitters_pythonpath_so_the_check_refuses_with_the_fix(package):
    env = get_service("htcondor").job_environment(_condor())
    assert "PYTHONPATH" not in env.env
    outcome = je.check_task_imports(env, {"isr": CLASS})
    assert outcome.warning is None
    assert outcome.error is not None and "\n" not in outcome.error
    assert outcome.error.startswith(f"jobs cannot import task class {CLASS} (label isr): no such module")
    assert "would fail with exit 78" in outcome.error
    assert f"site: {{environment: {{PYTHONPATH: {package.resolve()}}}}}" in outcome.error
    assert f"{sys.executable if env.python == sys.executable else env.python} -m pip install" in outcome.error


def test_htcondor_jobs_that_get_the_package_in_the_site_environment_pass(package):
    env = get_service("htcondor").job_environment(_condor(environment={"PYTHONPATH": str(package)}))
    assert je.check_task_imports(env, {"isr": CLASS}).error is None


@pytest.mark.parametrize("getenv", ["true", "PYTHONPATH", "PYTHON*"])
def test_htcondor_getenv_passes_the_submitters_pythonpath_through_dagman(package, getenv):
    env = get_service("htcondor").job_environment(_condor(condor={"submit": {"getenv": getenv}}))
    assert env.env["PYTHONPATH"] == str(package)
    assert je.check_task_imports(env, {"isr": CLASS}) == je.ImportCheck()


def test_htcondor_getenv_of_other_variables_does_not_pass_pythonpath(package):
    env = get_service("htcondor").job_environment(_condor(condor={"submit": {"getenv": "HOME, LANG"}}))
    assert "PYTHONPATH" not in env.env
    assert je.check_task_imports(env, {"isr": CLASS}).error is not None


def test_htcondor_skip_checks_task_imports_turns_the_check_off():
    assert get_service("htcondor").job_environment(_condor(condor={"skip_checks": ["task_imports"]})) is None


def test_an_interpreter_absent_from_the_submit_host_is_a_warning_naming_what_was_not_checked(package):
    env = je.JobEnvironment(python="/cvmfs/sw/bin/python3", env={}, origin="HTCondor")
    outcome = je.check_task_imports(env, {"isr": CLASS, "calibrate": CLASS})
    assert outcome.error is None
    assert outcome.warning == (
        "the jobs' interpreter /cvmfs/sw/bin/python3 is not on this host: could not check that jobs can import "
        f"the task classes {CLASS}; a job that cannot fails with exit 78"
    )


def test_an_interpreter_without_supertask_is_refused_as_unable_to_import_bps(tmp_path, package):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = je.JobEnvironment(python=str(bare / "bin" / "python"), env={}, origin="HTCondor")
    outcome = je.check_task_imports(env, {"isr": CLASS})
    assert outcome.error is not None and "cannot import bps (ModuleNotFoundError" in outcome.error
    assert "install supertask into the jobs' software area" in outcome.error


def test_every_failing_class_is_named_once_with_all_its_labels(package):
    env = get_service("htcondor").job_environment(_condor())
    outcome = je.check_task_imports(env, {"a": CLASS, "b": CLASS, "c": "stpeer_missing.Task"})
    assert sorted(outcome.failed) == [CLASS, "stpeer_missing.Task"]
    assert f"{CLASS} (labels a, b)" in outcome.error and "stpeer_missing.Task (label c)" in outcome.error


PEGASUS_PLANS = Path(__file__).parent / "data" / "real-pegasus-plans" / "planner-env"


def _planned_names(name: str) -> set[str]:
    line = (PEGASUS_PLANS / f"{name}.environment").read_text().split("=", 1)[1].strip().strip('"')
    return {item.split("=", 1)[0] for item in line.split()}


def test_pegasus_local_site_jobs_get_the_planners_pythonpath_as_the_real_planner_writes(package):
    assert {"PATH", "PYTHONPATH"} <= _planned_names("create_dir_tiny_0_local")
    site = SiteConfig(name="peg", wms="pegasus", pegasus={"execution_site": "local"})
    env = get_service("pegasus").job_environment(site)
    assert env.env["PYTHONPATH"] == str(package) and env.env["PATH"] == os.environ["PATH"]
    assert je.check_task_imports(env, {"isr": CLASS}).error is None


def test_pegasus_pool_site_jobs_get_no_pythonpath_and_are_refused(package):
    assert not {"PATH", "PYTHONPATH"} & _planned_names("count_ID0000002")
    site = SiteConfig(
        name="peg", wms="pegasus", pegasus={"execution_site": "condorpool", "data_configuration": "condorio"}
    )
    env = get_service("pegasus").job_environment(site)
    assert "PYTHONPATH" not in env.env and "PATH" not in env.env
    outcome = je.check_task_imports(env, {"isr": CLASS})
    assert outcome.error is not None and "Pegasus on site 'condorpool'" in outcome.error


def test_parsl_jobs_inherit_the_submitters_environment_and_pass(package):
    env = get_service("parsl").job_environment(SiteConfig(name="parsl_local", wms="parsl"))
    assert env.env["PYTHONPATH"] == str(package)
    assert je.check_task_imports(env, {"isr": CLASS}).error is None


def test_local_jobs_are_checked_in_this_process_without_a_subprocess(package, monkeypatch):
    env = get_service("local").job_environment(SiteConfig())

    def no_subprocess(*args, **kwargs):
        raise AssertionError("the local check must not start a subprocess")

    monkeypatch.setattr(je.subprocess, "Popen", no_subprocess)
    assert je.check_task_imports(env, {"isr": CLASS}).error is None
    assert "stpeer_missing.Task" in je.check_task_imports(env, {"x": "stpeer_missing.Task"}).failed


def test_one_subprocess_checks_all_classes(package, monkeypatch):
    calls = []
    real = subprocess.Popen

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(je.subprocess, "Popen", counting)
    env = get_service("htcondor").job_environment(_condor(environment={"PYTHONPATH": str(package)}))
    classes = {"a": CLASS, "b": CLASS, "c": "supertask.supertask.SuperTask"}
    assert je.check_task_imports(env, classes).error is None
    assert len(calls) == 1


def test_the_check_runs_while_the_caller_goes_on(package):
    env = get_service("htcondor").job_environment(_condor())
    pending = je.start_task_import_check(env, {"isr": CLASS})
    assert pending._process is not None  # started, not waited for
    assert pending.result().error is not None and pending.result() is pending.result()


def test_task_classes_are_read_from_the_resolved_pipeline_without_importing():
    classes = je.task_classes(TOY.pipeline_yaml())
    assert set(classes) == {"make", "total"} and classes["make"].endswith(".MakeTask")


# -- through bps prepare ---------------------------------------------------------------------------


def _toy_htcondor(tmp_path: Path, monkeypatch, environment: dict[str, str] | None = None) -> Path:
    """A toy repository and graph, and an HTCondor submit YAML; the toy tasks on the submitter's PYTHONPATH only."""
    from support.toy_pipeline import use_toy_tasks

    path = use_toy_tasks(monkeypatch)
    seeds = TOY.make_repo(tmp_path / "repo")
    graph = TOY.write_graph(tmp_path / "toy.qgraph", seeds)
    submit = tmp_path / "bps.yaml"
    site = {"condor": {"skip_checks": ["tmp_node_log", "job_user"]}}
    if environment is not None:
        site["environment"] = {k: v.replace("{toy}", path) for k, v in environment.items()}
    import yaml

    submit.write_text(
        yaml.safe_dump(
            {
                "repo": str(tmp_path / "repo"),
                "qgraph": str(graph),
                "output_run": TOY.run,
                "wms": "htcondor",
                "compute_site": "htcondor_shared",
                "submit_dir": str(tmp_path / "submit"),
                "site": site,
            }
        )
    )
    return submit


def test_bps_prepare_refuses_a_graph_whose_tasks_htcondor_jobs_cannot_import(tmp_path, monkeypatch):
    submit = _toy_htcondor(tmp_path, monkeypatch)
    result = CliRunner().invoke(bps_main, ["prepare", str(submit)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "jobs cannot import task classes" in result.output and "PYTHONPATH" in result.output
    assert not (tmp_path / "submit" / "workflow.json").exists()


def test_bps_prepare_passes_when_the_site_gives_jobs_the_package(tmp_path, monkeypatch):
    submit = _toy_htcondor(tmp_path, monkeypatch, environment={"PYTHONPATH": "{toy}"})
    result = CliRunner().invoke(bps_main, ["prepare", str(submit)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "submit" / "workflow.json").exists()


# -- against what a real HTCondor 25.14.0 pool did ---------------------------------------------------

REAL = Path(__file__).parent / "data" / "real-htcondor-25.14.0" / "task-import"


def test_the_real_pools_jobs_failed_with_exit_78_and_the_check_reports_the_same_import_failure(
    tmp_path, monkeypatch
):
    """The pool's jobs got the environment `job_environment` computes, and failed as the check says."""
    dagman = (REAL / "dagman.out.excerpt").read_text()
    assert dagman.count("failed with status 78") >= 2
    job_log = (REAL / "isr_0_100_DemoCam.out").read_text()
    real_reason = job_log.split("task 'isr': ", 1)[1].split(" (exit 78")[0]

    sub = dict(
        line.split(" = ", 1) for line in (REAL / "isr.sub.excerpt").read_text().splitlines() if " = " in line
    )
    venv = str(Path(sys.executable).parent.parent)
    real_env = dict(
        item.split("=", 1) for item in sub["environment"].strip('"').replace("{venv}", venv).split()
    )
    assert sub["getenv"] == "false"

    root = tmp_path / "pkgs"
    (root / "stpeer_demo").mkdir(parents=True)
    (root / "stpeer_demo" / "__init__.py").write_text(
        "from supertask.supertask import SuperTask\n\nclass IsrLikeTask(SuperTask):\n    pass\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(root))
    env = get_service("htcondor").job_environment(_condor())
    if (Path(venv) / "pyvenv.cfg").exists():
        assert env.env == real_env  # what the real pool's jobs were given, variable for variable
    outcome = je.check_task_imports(env, {"isr": "stpeer_demo.IsrLikeTask"})
    assert outcome.failed == {"stpeer_demo.IsrLikeTask": real_reason}
    assert "exit 78" in outcome.error


def test_bps_prepare_warns_and_goes_on_when_the_jobs_interpreter_is_not_on_this_host(tmp_path, monkeypatch):
    submit = _toy_htcondor(tmp_path, monkeypatch)
    import yaml

    config = yaml.safe_load(submit.read_text())
    config["site"]["python"] = "/cvmfs/sw/venv/bin/python"
    config["site"]["condor"]["skip_checks"].append("python")  # the workers have it, this host does not
    submit.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(bps_main, ["prepare", str(submit)])
    assert result.exit_code == 0, result.output
    assert (
        "the jobs' interpreter /cvmfs/sw/venv/bin/python is not on this host: could not check that jobs can "
        "import the task classes" in result.output
    )
    assert (tmp_path / "submit" / "workflow.json").exists()
