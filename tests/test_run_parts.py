"""Running part of a pipeline or of a saved graph from the command line, on SQLite and PostgreSQL.

- ``qgraph``/``run`` with ``-p FILE#STEP`` or ``--subset``: a pipeline run step by step, each
  step into its own RUN, the next reading it;
- ``run --qgraph FILE -o RUN``: a saved graph retargeted to another RUN;
- ``run --qgraph FILE --quantum ID``: one quantum alone, its inputs read from the registry.

The toy tasks of ``support.toy_pipeline``: ``make`` per detector, ``total`` gathering them all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest_repo import db_url, postgres_schema_url  # noqa: F401
from support.toy_pipeline import SEEDS_RUN, registered_in
from support.toy_steps import DETECTORS, make_toy_repo

from supertask.cli.main import main
from supertask.graph.quantum_graph import QuantumGraph
from supertask.repo.butler import Butler


@pytest.fixture
def toy(tmp_path, db_url) -> tuple[Path, Path]:  # noqa: F811
    """`make_toy_repo` on each backend."""
    return make_toy_repo(tmp_path, db_url)


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


def ok(*args: str):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def test_a_pipeline_runs_step_by_step_each_step_into_its_own_run(toy, tmp_path):
    repo, pipeline = toy
    ok(
        "qgraph",
        repo,
        "-p",
        f"{pipeline}#perDetector",
        "-i",
        SEEDS_RUN,
        "-o",
        "u/step1",
        "--save",
        tmp_path / "1.qgraph",
    )
    assert {q.taskLabel for q in QuantumGraph.load(tmp_path / "1.qgraph")} == {"make"}
    ok("run", repo, "--qgraph", tmp_path / "1.qgraph")
    assert registered_in(repo, "u/step1", "made") == {d: {"detector": d, "value": d * 20} for d in DETECTORS}
    # the second step reads the first step's RUN; --subset is the same as FILE#NAME
    ok("run", repo, "-p", pipeline, "--subset", "gather", "-i", f"u/step1,{SEEDS_RUN}", "-o", "u/step2")
    assert registered_in(repo, "u/step2", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
    assert registered_in(repo, "u/step2", "made") == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "{p}#gather", "--subset", "perDetector"], "selects 'gather' but --subset says 'perDetector'"),
        (["-p", "{p}#gathr"], "no subset, step or task labelled 'gathr'. Did you mean 'gather'"),
        (
            ["-p", "{p}", "--subset", "gathr"],
            "no subset, step or task labelled 'gathr'. Did you mean 'gather'",
        ),
        (["-p", "{p}#"], "an empty selection after '#'"),
        (["-p", "{p}.missing#gather"], "cannot read pipeline file .*toy.yaml.missing"),
    ],
)
def test_selection_errors_are_one_line(toy, tmp_path, args, expected):
    repo, pipeline = toy
    args = [a.format(p=pipeline) for a in args]
    for command in (["qgraph", repo, "--save", tmp_path / "x.qgraph"], ["run", repo]):
        result = cli(*command, *args, "-i", SEEDS_RUN, "-o", "u/x")
        assert result.exit_code != 0
        assert "Traceback" not in result.output
        assert re.search(expected, result.output), result.output


def saved_graph(repo: Path, pipeline: Path, tmp_path: Path, run: str = "u/full") -> Path:
    path = tmp_path / "full.qgraph"
    ok("qgraph", repo, "-p", pipeline, "-i", SEEDS_RUN, "-o", run, "--save", path)
    return path


def test_run_of_a_saved_graph_rejects_subset(toy, tmp_path):
    repo, pipeline = toy
    graph = saved_graph(repo, pipeline, tmp_path)
    result = cli("run", repo, "--qgraph", graph, "--subset", "gather")
    assert result.exit_code == 2 and "a saved graph is planned already" in result.output


def test_a_saved_graph_runs_retargeted_to_another_run(toy, tmp_path):
    repo, pipeline = toy
    graph = saved_graph(repo, pipeline, tmp_path)
    ok("run", repo, "--qgraph", graph, "-o", "u/again")
    assert registered_in(repo, "u/again", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
    assert registered_in(repo, "u/full", "total") == {}
    assert QuantumGraph.readHeader(graph)["metadata"]["output_run"] == "u/full"  # the file is unchanged
    butler = Butler(repo, writeable=False)
    assert butler.registry.getRunProvenance("u/again")["pipeline"] == QuantumGraph.load(graph).pipelineYaml
    butler.close()


def test_run_help_says_a_saved_graph_can_be_retargeted():
    text = cli("run", "--help").output
    assert "retargeted" in text and "--quantum" in text


def test_one_quantum_runs_alone_once_its_inputs_are_registered(toy, tmp_path):
    repo, pipeline = toy
    graph_file = saved_graph(repo, pipeline, tmp_path)
    graph = QuantumGraph.load(graph_file)
    total = next(q for q in graph if q.taskLabel == "total")
    makes = [q for q in graph if q.taskLabel == "make"]
    early = cli("run", repo, "--qgraph", graph_file, "--quantum", total.id)
    assert early.exit_code == 1 and "Traceback" not in early.output
    assert (
        f"quantum {total.id} (total {{'instrument': 'Cam'}}) reads inputs that are not registered"
        in early.output
    )
    assert (
        f"made by quantum {makes[0].id}, make" in early.output
        and "Run the quanta that make them first" in early.output
    )
    for q in makes:
        result = ok("run", repo, "--qgraph", graph_file, "--quantum", q.id)
        assert f"quantum {q.id} of {graph_file}: make" in result.output
    assert registered_in(repo, "u/full", "total") == {}
    ok("run", repo, "--qgraph", graph_file, "--quantum", total.id)
    assert registered_in(repo, "u/full", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
    # the quantum's log is named by its id in the saved graph, as in a run of the whole graph
    assert (repo / "u/full" / "logs" / "total" / f"{total.id:07d}.log").exists()
    again = cli("run", repo, "--qgraph", graph_file, "--quantum", total.id)
    assert again.exit_code == 1 and "already" in again.output and "Traceback" not in again.output


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["--quantum", "99"], "the graph has no quantum 99: ids run from 0 to 3", 1),
        (["--quantum", "-1"], "the graph has no quantum -1", 1),
    ],
)
def test_one_quantum_errors(toy, tmp_path, args, expected, code):
    repo, pipeline = toy
    graph_file = saved_graph(repo, pipeline, tmp_path)
    result = cli("run", repo, "--qgraph", graph_file, *args)
    assert result.exit_code == code and expected in result.output, result.output


def test_quantum_needs_a_saved_graph(toy):
    repo, pipeline = toy
    result = cli("run", repo, "-p", pipeline, "-i", SEEDS_RUN, "-o", "u/x", "--quantum", "0")
    assert (
        result.exit_code == 2
        and "--quantum ID runs one quantum of a saved graph: give --qgraph FILE" in result.output
    )


def test_run_of_a_saved_graph_without_an_output_run_asks_for_one(toy, tmp_path):
    repo, pipeline = toy
    graph = QuantumGraph.load(saved_graph(repo, pipeline, tmp_path))
    del graph.metadata["output_run"]
    bare = tmp_path / "bare.qgraph"
    graph.save(bare)
    for extra in ([], ["--quantum", "0"]):
        result = cli("run", repo, "--qgraph", bare, *extra)
        assert result.exit_code == 2, result.output
        assert "names no output run: give one with -o RUN" in result.output
        assert "Traceback" not in result.output
    ok("run", repo, "--qgraph", bare, "-o", "u/named")
    assert registered_in(repo, "u/named", "total") == {None: {"sum": sum(d * 20 for d in DETECTORS)}}
