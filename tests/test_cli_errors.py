"""Bad input on the command line is one line naming the problem and the fix, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_drp.data import make_demo_repo

from supertask.cli.main import main as supertask_cli

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-cli-errors") / "repo"
    make_demo_repo(root, n_exposures=2)
    return root


def _error_line(result) -> str:
    """The one line the command printed about the error (fails the test on a traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def random_bytes_pipeline(tmp_path) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(bytes(range(256)) + os.urandom(64))
    return path


def test_pipeline_file_of_random_bytes_is_one_line_naming_the_file(random_bytes_pipeline, repo, tmp_path):
    show = CliRunner().invoke(supertask_cli, ["pipeline", "show", str(random_bytes_pipeline)])
    assert "is not a pipeline YAML file" in _error_line(show)
    plan = CliRunner().invoke(
        supertask_cli,
        ["qgraph", str(repo), "-p", str(random_bytes_pipeline), "-i", "DemoCam/defaults", "-o", "u/x",
         "--save", str(tmp_path / "g.qgraph")],
    )  # fmt: skip
    assert str(random_bytes_pipeline) in _error_line(plan)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "description: nothing here\n"])
def test_pipeline_without_tasks_is_an_error_not_an_empty_plan(text, repo, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    show = CliRunner().invoke(supertask_cli, ["pipeline", "show", str(path)])
    assert "has no tasks" in _error_line(show)
    plan = CliRunner().invoke(
        supertask_cli,
        ["qgraph", str(repo), "-p", str(path), "-i", "DemoCam/defaults", "-o", "u/x",
         "--save", str(tmp_path / "g.qgraph")],
    )  # fmt: skip
    line = _error_line(plan)
    assert "has no tasks" in line and "SELECT" not in plan.output


def test_unknown_input_collection_names_it_and_the_close_match(repo, tmp_path):
    plan = CliRunner().invoke(
        supertask_cli,
        ["qgraph", str(repo), "-p", str(PIPELINE), "-i", "DemoCam/defaultz", "-o", "u/x",
         "--save", str(tmp_path / "g.qgraph")],
    )  # fmt: skip
    line = _error_line(plan)
    assert "'DemoCam/defaultz' does not exist" in line and "did you mean 'DemoCam/defaults'" in line


def test_a_thousand_or_terms_on_the_command_line_are_rows_not_a_database_error(repo):
    where = " OR ".join(f"visit = {v}" for v in range(1200))
    result = CliRunner().invoke(supertask_cli, ["query", "data-ids", str(repo), "visit", "--where", where])
    assert result.exit_code == 0, result.output
    assert "data IDs" in result.output and "OperationalError" not in result.output


def test_an_unexpected_error_is_one_line_with_the_way_to_the_traceback(repo, monkeypatch):
    from supertask.repo.registry import Registry

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(Registry, "queryDataIds", broken)
    result = CliRunner().invoke(supertask_cli, ["query", "data-ids", str(repo), "visit"])
    line = _error_line(result)
    assert "ZeroDivisionError: boom" in line and "--log-level DEBUG" in line
