"""The ``repo`` and ``query`` commands."""

from __future__ import annotations

from click.testing import CliRunner
from conftest_repo import populate

from supertask.cli.repo_commands import query, repo
from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")


def _make(tmp_path):
    root = tmp_path / "repo"
    result = CliRunner().invoke(repo, ["create", str(root)])
    assert result.exit_code == 0, result.output
    butler = Butler(root, run="raw")
    populate(butler.registry)
    butler.registry.registerDatasetType(RAW)
    butler.registry.insertDatasets(
        RAW,
        "raw",
        [{"dataId": {"instrument": "Cam", "visit": v, "detector": 0}, "path": f"r{v}"} for v in range(6)],
    )
    return root


def test_create_twice_is_a_one_line_error(tmp_path):
    root = _make(tmp_path)
    result = CliRunner().invoke(repo, ["create", str(root)])
    assert result.exit_code == 1
    assert "already holds a repository" in result.output
    assert "Traceback" not in result.output


def test_query_data_ids_prints_the_matching_rows(tmp_path):
    root = _make(tmp_path)
    runner = CliRunner()
    result = runner.invoke(query, ["data-ids", str(root), "visit", "--where", "band = :b", "--bind", "b=r"])
    assert result.exit_code == 0, result.output
    assert "3 data IDs" in result.output
    count = runner.invoke(
        query, ["data-ids", str(root), "visit", "detector", "--where", "visit < 2", "--count"]
    )
    assert count.output.strip() == "8"


def test_query_datasets_prints_runs_and_ids(tmp_path):
    root = _make(tmp_path)
    result = CliRunner().invoke(
        query, ["datasets", str(root), "raw", "--collections", "raw", "--where", "visit > 3"]
    )
    assert result.exit_code == 0, result.output
    assert "2 raw datasets" in result.output


def test_bad_expression_is_reported_without_traceback(tmp_path):
    root = _make(tmp_path)
    result = CliRunner().invoke(query, ["data-ids", str(root), "visit", "--where", "visti = 3"])
    assert result.exit_code == 1
    assert "Unknown identifier" in result.output and "visit" in result.output
    assert "Traceback" not in result.output


def test_repo_info_lists_dataset_types(tmp_path):
    root = _make(tmp_path)
    result = CliRunner().invoke(repo, ["info", str(root)])
    assert result.exit_code == 0, result.output
    assert "raw" in result.output and "NumpyArray" in result.output


def test_query_data_ids_can_require_datasets(tmp_path):
    root = _make(tmp_path)
    runner = CliRunner()
    args = ["data-ids", str(root), "visit", "detector", "--count"]
    assert runner.invoke(query, args).output.strip() == "24"
    assert runner.invoke(query, [*args, "--datasets", "raw", "--collections", "raw"]).output.strip() == "6"
    missing = runner.invoke(query, [*args, "--datasets", "raw"])
    assert missing.exit_code == 2 and "--collections" in missing.output
