"""Tests of the ``supertask`` command group and ``supertask pipeline show``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from supertask.cli.main import LazyGroup, main  # noqa: E402
from supertask.pipeline import Pipeline  # noqa: E402

TUTORIAL = Path(__file__).parent / "data" / "pipeline_tutorial.yaml"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})


def test_show_prints_tasks_datasets_and_full_configs():
    result = invoke("pipeline", "show", str(TUTORIAL))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "tutorial_tasks.CalibrateTask" in out and "instrument, visit, detector" in out
    assert "intermediate" in out and "(repository)" in out
    assert "detection.threshold" in out and "4.0" in out
    assert "photoCalib" in out and "1.25" in out
    assert out.index("isr ") < out.index("calibrate ") < out.index("visitSummary ")


def test_show_applies_instrument_then_config_overrides():
    result = invoke(
        "pipeline",
        "show",
        str(TUTORIAL),
        "--instrument",
        "DemoCam",
        "-c",
        "calibrate:detection.threshold=9.5",
        "--yaml",
    )
    assert result.exit_code == 0, result.output
    shown = Pipeline.fromYaml(result.output)
    assert shown.instrument == "DemoCam"
    assert shown["isr"].config.biasLevel == 100.0
    assert shown["calibrate"].config.detection.threshold == 9.5  # the command line wins


def test_show_writes_dot_file(tmp_path):
    dot = tmp_path / "pipeline.dot"
    result = invoke("pipeline", "show", str(TUTORIAL), "--dot", str(dot))
    assert result.exit_code == 0, result.output
    text = dot.read_text()
    assert text.startswith("digraph pipeline {") and text.rstrip().endswith("}")
    assert '"dataset:raw" -> "task:isr";' in text
    assert '"task:calibrate" -> "dataset:src";' in text
    assert '"dataset:src" -> "task:visitSummary";' in text


def test_show_subset():
    result = invoke("pipeline", "show", str(TUTORIAL), "--subset", "step2", "--yaml")
    assert result.exit_code == 0, result.output
    assert list(Pipeline.fromYaml(result.output)) == ["visitSummary"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["-c", "calibrate:photoCalib=bright"], "task 'calibrate'"),
        (["-c", "calibrte:photoCalib=2"], "Did you mean 'calibrate'"),
        (["-c", "photoCalib=2"], "label:field"),
        (["--instrument", "NoCam"], "no task has instrumentOverrides for 'NoCam'"),
    ],
)
def test_show_bad_options_give_one_line_errors(args, expected):
    result = invoke("pipeline", "show", str(TUTORIAL), *args)
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output


def test_show_bad_file_names_file_and_label(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("inputs: [raw]\ntasks:\n  isr:\n    class: tutorial_tasks.NoSuchTask\n")
    result = invoke("pipeline", "show", str(path))
    assert result.exit_code == 1
    assert str(path) in result.output and "task 'isr'" in result.output
    result = invoke("pipeline", "show", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 1 and "cannot read pipeline file" in result.output


def test_help_lists_lazy_commands_without_importing_them():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom supertask.cli.main import main\n"
        "out = CliRunner().invoke(main, ['--help']).output\n"
        "print(all(n in out for n in ('pipeline', 'qgraph', 'run', 'demo-data', 'repo', 'query')))\n"
        "print(sorted(m for m in sys.modules if m.startswith('supertask.cli.') or m in ('rich', 'pydantic')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["True", "['supertask.cli.main']"]


def test_missing_command_module_gives_clear_error():
    @click.group(cls=LazyGroup)
    def cli():
        pass

    cli.add_lazy_command("ghost", "supertask.cli.no_such_module:ghost", "A command not installed.")
    runner = CliRunner()
    help_text = runner.invoke(cli, ["--help"]).output
    assert "ghost" in help_text and "A command not installed." in help_text
    result = runner.invoke(cli, ["ghost", "--anything"])
    assert result.exit_code == 1
    assert "'supertask ghost' is not available" in result.output and "no_such_module" in result.output
    with pytest.raises(ValueError, match="module:attribute"):
        cli.add_lazy_command("bad", "no_colon")


def test_lazy_command_is_loaded_on_use():
    @click.group(cls=LazyGroup)
    def cli():
        pass

    cli.add_lazy_command("pipe", "supertask.cli.pipeline_commands:pipeline", "Pipelines.")
    result = CliRunner().invoke(cli, ["pipe", "show", "--help"])
    assert result.exit_code == 0 and "--instrument" in result.output
