"""The demo is the separate demo_drp package: its command, its pipeline, and what became of the old names.

``tests/data/demo_tile0_planned_before_demo_drp.qgraph`` is a graph saved by the
software before the move (one exposure, ``tract = 0 AND detector = 0``, output run
``u/old``): its pipeline names ``supertask.demo.tasks.*``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from supertask.cli.main import main
from supertask.config import import_class
from supertask.config.config import MOVED_MODULES

ROOT = Path(__file__).resolve().parents[1]
OLD_GRAPH = ROOT / "tests" / "data" / "demo_tile0_planned_before_demo_drp.qgraph"
BIN = Path(sys.executable).parent


def test_a_class_path_of_the_old_demo_is_refused_with_its_new_name():
    with pytest.raises(ImportError) as info:
        import_class("supertask.demo.tasks.CalibrateTask", what="task class")
    message = str(info.value)
    assert "'demo_drp.tasks.CalibrateTask'" in message and "plan the graph again" in message
    assert "\n" not in message
    assert "supertask.demo." in MOVED_MODULES
    assert import_class("demo_drp.tasks.CalibrateTask").__module__ == "demo_drp.tasks"


@pytest.fixture(scope="module")
def old_repo(tmp_path_factory) -> Path:
    from demo_drp.data import make_demo_repo

    root = tmp_path_factory.mktemp("old") / "repo"
    make_demo_repo(root, n_exposures=1).close()
    return root


def test_a_graph_saved_before_the_move_is_refused_by_supertask_run_in_one_line(old_repo):
    result = subprocess.run(
        [str(BIN / "supertask"), "run", str(old_repo), "--qgraph", str(OLD_GRAPH)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "'demo_drp.tasks.IsrTask'" in errors[0] and "plan the graph again" in errors[0]


def test_a_graph_saved_before_the_move_fails_a_batch_job_without_retry(old_repo, tmp_path):
    result = subprocess.run(
        [str(BIN / "run_quantum"), "--graph", str(OLD_GRAPH), "--quantum", "0", "--repo", str(old_repo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 78, result.stderr  # invalid configuration: retrying cannot help
    assert "Traceback" not in result.stderr
    assert "'demo_drp.tasks.IsrTask'" in result.stderr and "plan the graph again" in result.stderr


def test_the_demo_data_command_comes_from_the_demo_package_through_an_entry_point():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.strip().startswith("demo-data"))
    assert "DemoCam" in line  # its own help, read from the command demo_drp declares
    command = main.get_command(None, "demo-data")  # type: ignore[arg-type]
    assert command is not None and command.callback.__module__ == "demo_drp.cli"


def test_commands_of_the_core_win_over_a_plugin_of_the_same_name(monkeypatch):
    from supertask.cli.main import LAZY_COMMANDS, LazyGroup

    class Entry:
        name, value = "run", "demo_drp.cli:demo_data"

    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [Entry()])
    group = LazyGroup(lazy_commands=LAZY_COMMANDS, plugin_group="supertask.commands")
    group._read_plugins()
    assert group.lazy_commands["run"][0] == LAZY_COMMANDS["run"][0]


def test_the_example_pipeline_is_the_one_the_package_ships():
    from demo_drp.main_job import PIPELINE

    assert (ROOT / "examples" / "demo_pipeline.yaml").resolve() == PIPELINE.resolve()
    assert "demo_drp.tasks.IsrTask" in PIPELINE.read_text()


def test_the_core_imports_nothing_of_the_demo():
    importers = [
        str(path.relative_to(ROOT))
        for package in ("supertask", "bps")
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import demo_drp", "from demo_drp"))
    ]
    assert importers == []
