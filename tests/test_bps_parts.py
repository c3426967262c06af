"""``bps`` with part of a pipeline (``pipeline: FILE#NAME`` / ``subset:``) and with a saved graph
retargeted to another RUN (``output_run`` differing from the graph's), through the local WMS,
on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest_repo import db_url, postgres_schema_url  # noqa: F401
from support.toy_pipeline import SEEDS_RUN, registered_in, use_toy_tasks
from support.toy_steps import DETECTORS, make_toy_repo

from bps.cli import main as bps_main
from bps.config import ConfigError, load_config
from bps.prepare import PrepareError, prepare
from supertask.graph.quantum_graph import QuantumGraph


@pytest.fixture
def toy(tmp_path, db_url, monkeypatch) -> tuple[Path, Path]:  # noqa: F811
    use_toy_tasks(monkeypatch)
    return make_toy_repo(tmp_path, db_url)


def submit_yaml(tmp_path: Path, name: str, **values) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"submit_dir": str(tmp_path / "submit" / name), **values}))
    return path


def ok(*args: object):
    from supertask.cli.main import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def bps(*args) -> object:
    return CliRunner().invoke(bps_main, [str(a) for a in args])


def test_bps_plans_and_runs_one_step_of_a_pipeline(toy, tmp_path):
    repo, pipeline = toy
    config = submit_yaml(
        tmp_path,
        "step1",
        pipeline=f"{pipeline}#perDetector",
        repo=str(repo),
        input_collections=[SEEDS_RUN],
        output_run="u/step1",
    )
    result = bps("submit", config, "-j", "2")
    assert result.exit_code == 0, result.output
    assert registered_in(repo, "u/step1", "made") == {d: {"detector": d, "value": d * 20} for d in DETECTORS}
    assert registered_in(repo, "u/step1", "total") == {}
    config2 = submit_yaml(
        tmp_path,
        "step2",
        pipeline=str(pipeline),
        repo=str(repo),
        input_collections=["u/step1", SEEDS_RUN],
        output_run="u/step2",
    )
    result = bps("submit", config2, "--subset", "gather", "-j", "2")
    assert result.exit_code == 0, result.output
    assert registered_in(repo, "u/step2", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}


def test_subset_errors(toy, tmp_path):
    repo, pipeline = toy
    common = {"repo": str(repo), "input_collections": [SEEDS_RUN], "output_run": "u/x"}
    mismatch = load_config(
        submit_yaml(tmp_path, "a", pipeline=f"{pipeline}#gather", subset="perDetector", **common), {}
    )
    with pytest.raises(
        PrepareError, match="selects 'gather' but subset is 'perDetector': give one of the two"
    ):
        prepare(mismatch)
    unknown = load_config(submit_yaml(tmp_path, "b", pipeline=f"{pipeline}#gathr", **common), {})
    with pytest.raises(PrepareError, match="no subset, step or task labelled 'gathr'. Did you mean 'gather'"):
        prepare(unknown)
    result = bps("prepare", submit_yaml(tmp_path, "c", pipeline=f"{pipeline}#gathr", **common))
    assert result.exit_code == 1 and "bps: error:" in result.output and "Traceback" not in result.output
    graph = tmp_path / "g.qgraph"
    ok("qgraph", repo, "-p", pipeline, "-i", SEEDS_RUN, "-o", "u/g", "--save", graph)
    with pytest.raises(
        ConfigError, match="subset .* selects part of a pipeline to plan, but qgraph is a graph"
    ):
        load_config(submit_yaml(tmp_path, "d", qgraph=str(graph), subset="gather", repo=str(repo)), {})


def test_a_saved_graph_is_retargeted_to_the_output_run(toy, tmp_path):
    repo, pipeline = toy
    graph = tmp_path / "full.qgraph"
    ok("qgraph", repo, "-p", pipeline, "-i", SEEDS_RUN, "-o", "u/full", "--save", graph)
    config = submit_yaml(tmp_path, "again", qgraph=str(graph), repo=str(repo))
    result = bps("submit", config, "--output-run", "u/again", "-j", "2")
    assert result.exit_code == 0, result.output
    assert registered_in(repo, "u/again", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
    assert registered_in(repo, "u/full", "total") == {}
    copy = tmp_path / "submit" / "again" / "u_again.qgraph"
    assert QuantumGraph.readHeader(copy)["metadata"]["output_run"] == "u/again"
    assert QuantumGraph.readHeader(copy)["metadata"]["retargeted_from"] == "u/full"
    assert QuantumGraph.readHeader(graph)["metadata"]["output_run"] == "u/full"  # the saved file is unchanged
    # the RUN now holds the graph's outputs: retargeting to it again is refused, before anything runs
    config2 = submit_yaml(tmp_path, "twice", qgraph=str(graph), repo=str(repo), output_run="u/again")
    result = bps("prepare", config2)
    assert result.exit_code == 1, result.output
    assert f"cannot retarget graph {graph} to RUN 'u/again'" in result.output
    assert "Traceback" not in result.output


def test_bps_help_says_a_saved_graph_is_retargeted():
    text = bps("prepare", "--help").output
    assert "retargeted" in text and "--subset" in text
