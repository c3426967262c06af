"""The option objects of a request: `PlanRequest` (what to plan) and `RunOptions` (how to run).

Each refused value or combination has its own message naming the option; the command
line, ``bps prepare`` and the Python functions build the same objects from the same
options (the command line's refusals name the flag).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.toy_pipeline import SEEDS_RUN
from support.toy_steps import make_toy_repo

import supertask
from supertask.cli.main import main
from supertask.execution.existing_outputs import OutputPolicy
from supertask.options import DEFAULT_MAX_ROWS, OptionsError, PlanRequest, RunOptions, split_keywords


@pytest.mark.parametrize(
    ("keywords", "option", "message"),
    [
        ({"output_run": ""}, "output_run", "an output RUN collection is required"),
        ({"output_run": "  "}, "output_run", "an output RUN collection is required"),
        (
            {"output_run": "r", "bind": {"v": 3}},
            "bind",
            "bind values for ['v'] are given without an expression",
        ),
        ({"output_run": "r", "where": "  ", "bind": {"v": 3}}, "bind", "without an expression"),
        ({"output_run": "r", "where": 3}, "where", "expected an expression string"),
        ({"output_run": "r", "bind": [("v", 3)], "where": "visit = :v"}, "bind", "expected a mapping"),
        (
            {"output_run": "r", "input_collections": "DemoCam/defaults"},
            "input_collections",
            "use ['DemoCam/defaults']",
        ),
        (
            {"output_run": "r", "input_collections": ["a", ""]},
            "input_collections",
            "non-empty strings, got ''",
        ),
        ({"output_run": "r", "skip_existing_in": "done"}, "skip_existing_in", "use ['done']"),
        ({"output_run": "r", "max_rows": -1}, "max_rows", "a row count of 0 or more"),
        ({"output_run": "r", "max_rows": 2.5}, "max_rows", "a row count of 0 or more"),
        ({"output_run": "r", "skip_existing": "yes"}, "skip_existing", "expected True or False"),
        ({"output_run": "r", "clobber_outputs": 1}, "clobber_outputs", "expected True or False"),
    ],
)
def test_plan_request_refuses_each_bad_value_naming_the_option(keywords, option, message):
    with pytest.raises(OptionsError, match="^" + option) as caught:
        PlanRequest(**keywords)
    assert caught.value.option == option and message in caught.value.message


@pytest.mark.parametrize(
    ("keywords", "option", "message"),
    [
        ({"processes": 0}, "processes", "must be at least 1, got 0"),
        ({"processes": 1.5}, "processes", "must be at least 1"),
        ({"timeout": 0}, "timeout", "above 0"),
        ({"timeout": -3.0}, "timeout", "above 0"),
        ({"fail_fast": "no"}, "fail_fast", "expected True or False"),
        ({"extend_run": None}, "extend_run", "expected True or False"),
        ({"skip_existing_in": "done"}, "skip_existing_in", "use ['done']"),
    ],
)
def test_run_options_refuse_each_bad_value_naming_the_option(keywords, option, message):
    with pytest.raises(OptionsError, match="^" + option) as caught:
        RunOptions(**keywords)
    assert message in caught.value.message


def test_skip_and_clobber_options_combine_skipping_whole_quanta_and_clobbering_partial_ones():
    # Not a conflict: complete quanta are skipped, the partial outputs of failed ones unregistered.
    request = PlanRequest(output_run="r", extend_run=True, skip_existing=True, clobber_outputs=True)
    assert request.policy == OutputPolicy(skip_existing=True, extend_run=True, clobber_outputs=True)
    assert request.skip_collections("r") == ["r"]


def test_plan_request_normalises_what_means_the_same():
    request = PlanRequest(
        output_run="r", where="", input_collections=["a", "b"], skip_existing_in=["c"], max_rows=0
    )
    assert request.where is None and request.max_rows is None
    assert request.input_collections == ("a", "b") and request.skip_existing_in == ("c",)
    assert PlanRequest(output_run="r").max_rows == DEFAULT_MAX_ROWS
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.output_run = "other"  # type: ignore[misc]


def test_run_options_compare_without_their_progress_callback():
    assert RunOptions(processes=2, progress=print) == RunOptions(processes=2)


def test_keywords_build_the_object_and_refuse_mixing_or_misspelling(monkeypatch):
    from supertask.graph import builder

    with pytest.raises(TypeError, match="give one of the two"):
        builder.build_quantum_graph(None, None, PlanRequest(output_run="r"), where="x")
    with pytest.raises(TypeError, match="unknown option 'wehre' \\(did you mean 'where'\\?\\)"):
        builder.build_quantum_graph(None, None, output_run="r", wehre="visit = 1")
    with pytest.raises(OptionsError, match="output_run: an output RUN collection is required"):
        builder.build_quantum_graph(None, None, where="visit = 1")
    with pytest.raises(TypeError, match="unknown option 'procesess'"):
        supertask.run_pipeline("p.yaml", "repo", output_run="r", procesess=2)
    with pytest.raises(OptionsError, match="processes: must be at least 1"):
        supertask.run_pipeline("p.yaml", "repo", output_run="r", processes=0)


def test_split_keywords_gives_the_output_policy_to_both_objects():
    plan, run = split_keywords(
        {
            "output_run": "r",
            "where": "visit = 1",
            "processes": 3,
            "skip_existing_in": ["done"],
            "clobber_outputs": True,
        },
        "run_pipeline",
    )
    assert plan == PlanRequest(
        output_run="r", where="visit = 1", skip_existing_in=("done",), clobber_outputs=True
    )
    assert run == RunOptions(processes=3, skip_existing_in=("done",), clobber_outputs=True)


# -- the command line and the Python API build the same objects --------------------------------


class Captured(BaseException):
    """Raised by the stand-ins once they have what they were given (past the CLI's error handler)."""


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path]:
    return make_toy_repo(tmp_path, f"sqlite:///{tmp_path / 'registry.sqlite3'}")


@pytest.fixture
def captured(monkeypatch) -> dict[str, Any]:
    """Stand-ins for planning and running that record the option objects they receive."""
    from supertask import execution
    from supertask.graph import builder

    seen: dict[str, Any] = {}

    def plan(pipeline: Any, butler: Any, request: PlanRequest | None = None, **keywords: Any) -> Any:
        seen["plan"] = request
        if "stop_after_plan" in seen:
            raise Captured
        graph = type("Graph", (), {"__len__": lambda self: 0, "save": lambda self, path: None})()
        return graph, type("Report", (), {"lines": lambda self: []})()

    def run(
        butler: Any, graph: Any, output_run: Any = None, options: RunOptions | None = None, **kw: Any
    ) -> Any:
        seen["run"] = options
        raise Captured

    monkeypatch.setattr(builder, "build_quantum_graph", plan)
    monkeypatch.setattr(execution, "run_graph", run)
    return seen


def cli(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "200"})


PLANNING_ARGS = [
    "-i", f"{SEEDS_RUN},other", "-o", "u/me/r", "-d", "detector > :d", "--bind", "d=1",
    "--skip-existing-in", "done", "--clobber-outputs", "--extend-run", "--max-rows", "0", "--restrict-inputs",
]  # fmt: skip
API_KEYWORDS: dict[str, Any] = {
    "input_collections": [SEEDS_RUN, "other"],
    "output_run": "u/me/r",
    "where": "detector > :d",
    "bind": {"d": 1},
    "skip_existing_in": ["done"],
    "clobber_outputs": True,
    "extend_run": True,
    "max_rows": None,
    "expand_inputs": False,
}


def _no_command_line(options: Any) -> Any:
    return dataclasses.replace(options, command_line="")


def test_qgraph_command_and_build_quantum_graph_build_the_same_request(toy, tmp_path, captured):
    repo, pipeline = toy
    captured["stop_after_plan"] = True
    with pytest.raises(Captured):
        cli("qgraph", repo, "-p", pipeline, *PLANNING_ARGS, "--save", tmp_path / "g.qgraph")
    from supertask.options import from_keywords

    assert captured["plan"].command_line  # the command line is recorded with the graph
    assert _no_command_line(captured["plan"]) == from_keywords(PlanRequest, None, API_KEYWORDS, "test")


def test_run_command_and_run_pipeline_build_the_same_options(toy, tmp_path, captured):
    repo, pipeline = toy
    with pytest.raises(Captured):
        cli("run", repo, "-p", pipeline, *PLANNING_ARGS, "-j", "3", "--timeout", "7.5", "--fail-fast")
    from_cli = _no_command_line(captured["plan"]), _no_command_line(captured["run"])
    assert captured["run"].progress is not None  # the command line's progress bar

    captured.clear()
    with pytest.raises(Captured):
        supertask.run_pipeline(pipeline, repo, processes=3, timeout=7.5, fail_fast=True, **API_KEYWORDS)
    assert (captured["plan"], captured["run"]) == from_cli
    assert from_cli[1] == RunOptions(
        processes=3,
        timeout=7.5,
        fail_fast=True,
        skip_existing_in=("done",),
        extend_run=True,
        clobber_outputs=True,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-j", "0"], "Invalid value for -j/--processes: must be at least 1, got 0"),
        (["--timeout", "0"], "Invalid value for --timeout: must be a number of seconds above 0"),
        (["--max-rows", "-2"], "Invalid value for --max-rows: expected a row count of 0 or more"),
        (
            ["--bind", "d=1"],
            "Invalid value for --bind: bind values for ['d'] are given without an expression",
        ),
    ],
)
def test_run_command_refuses_a_bad_option_with_its_flag_before_planning(toy, captured, args, message):
    repo, pipeline = toy
    result = cli("run", repo, "-p", pipeline, "-i", SEEDS_RUN, "-o", "u/me/r", *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "plan" not in captured  # nothing was planned


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        (["-d", "detector = 1"], "-d/--where"),
        (["--max-rows", "5", "--restrict-inputs"], "--max-rows, --restrict-inputs"),
        (["-c", "make:multiplier=3", "--instrument", "Cam"], "-c/--config, --instrument"),
    ],
)
def test_a_saved_graph_refuses_the_planning_options_it_would_ignore(toy, tmp_path, captured, args, flags):
    repo, _ = toy
    graph = tmp_path / "g.qgraph"
    graph.write_text("not read: refused before")
    result = cli("run", repo, "--qgraph", graph, *args)
    assert result.exit_code == 2, result.output
    assert f"{flags} select what to plan; a saved graph is planned already" in " ".join(result.output.split())


def test_run_pipeline_runs_from_the_option_objects_as_from_keywords(toy):
    repo, pipeline = toy
    request = PlanRequest(output_run="u/objects", input_collections=[SEEDS_RUN])
    by_objects = supertask.run_pipeline(pipeline, repo, request, RunOptions(processes=2))
    by_keywords = supertask.run_pipeline(
        pipeline, repo, output_run="u/keywords", input_collections=[SEEDS_RUN], processes=2
    )
    assert by_objects.ok and by_keywords.ok
    assert (
        by_objects.counts == by_keywords.counts
        and sum(c["succeeded"] for c in by_objects.counts.values()) > 0
    )
    with pytest.raises(TypeError, match="give one of the two"):
        supertask.run_pipeline(pipeline, repo, request, processes=2)


@pytest.mark.parametrize("command", ["qgraph", "run"])
def test_planning_without_an_output_run_is_refused_naming_the_flag(toy, tmp_path, captured, command):
    repo, pipeline = toy
    extra = ["--save", tmp_path / "g.qgraph"] if command == "qgraph" else []
    result = cli(command, repo, "-p", pipeline, "-i", SEEDS_RUN, *extra)
    assert result.exit_code == 2, result.output
    assert "Invalid value for -o/--output: an output RUN collection is required" in " ".join(
        result.output.split()
    )
    assert "plan" not in captured
