"""Tests of pipeline steps (ordered subsets with sharding units) and of selecting part of a pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from supertask.pipeline import Pipeline, PipelineError  # noqa: E402
from supertask.pipeline.steps import Step, select, shard_units_of, split_pipeline_spec  # noqa: E402
from supertask.repo.units import Universe  # noqa: E402

DEMO = EXAMPLES / "demo_pipeline.yaml"

TASKS = """\
inputs: [raw]
tasks:
  isr: tutorial_tasks.IsrTask
  calibrate: tutorial_tasks.CalibrateTask
  visitSummary: tutorial_tasks.VisitSummaryTask
subsets:
  step1: [isr, calibrate]
  step2: [visitSummary]
"""


def load(tmp_path: Path, text: str) -> Pipeline:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return Pipeline.fromFile(path)


def test_steps_are_read_in_order_and_written_back(tmp_path):
    pipeline = load(
        tmp_path, TASKS + "steps:\n  - {subset: step1, units: [visit]}\n  - {subset: step2, units: [visit]}\n"
    )
    assert pipeline.steps == [Step("step1", ("visit",)), Step("step2", ("visit",))]
    again = Pipeline.fromYaml(pipeline.toYaml())
    assert again.steps == pipeline.steps and again == pipeline


def test_demo_pipeline_declares_its_steps():
    pipeline = Pipeline.fromFile(DEMO)
    assert [(s.subset, s.units) for s in pipeline.steps] == [
        ("singleFrame", ("visit",)),
        ("coadd", ("tract",)),
    ]


def test_a_task_per_exposure_can_be_sharded_by_visit_but_a_gathering_one_not():
    universe = Universe.default()
    per_exposure = shard_units_of(("instrument", "exposure", "detector"), universe)
    assert {"visit", "exposure", "detector", "instrument", "physical_filter", "band"} <= per_exposure
    per_patch = shard_units_of(("skymap", "tract", "patch", "band"), universe)
    assert "visit" not in per_patch and "tract" in per_patch


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("steps: {subset: step1}\n", "'steps' must be a list of steps in run order"),
        ("steps:\n  - step1\n", "step 1 must be a mapping with 'subset' and 'units'"),
        ("steps:\n  - {units: [visit]}\n", "step 1 must be a mapping with 'subset' and 'units'"),
        (
            "steps:\n  - {subset: step1, unit: [visit]}\n",
            "unknown key 'unit' in step 1.*Did you mean 'units'",
        ),
        ("steps:\n  - {subset: [step1], units: [visit]}\n", "step 1: 'subset' must be the name of a subset"),
        ("steps:\n  - {subset: step1, units: visit: 1}\n", "malformed pipeline YAML"),
        (
            "steps:\n  - {subset: stepl, units: [visit]}\n  - {subset: step2, units: [visit]}\n",
            "step 1 names unknown subset 'stepl'. Did you mean 'step[12]'.*define it under 'subsets:'",
        ),
        (
            "steps:\n  - {subset: step1, units: [visit]}\n  - {subset: step1, units: [visit]}\n",
            "subset 'step1' is declared as a step twice",
        ),
        (
            "steps:\n  - {subset: step1, units: [visit]}\n",
            "task 'visitSummary' is in no step.*add it to the subset of a step",
        ),
        (
            "steps:\n  - {subset: step2, units: [visit]}\n  - {subset: step1, units: [visit]}\n",
            "step 'step2' \\(task 'visitSummary'\\) reads 'src', which task 'calibrate' of the later step "
            "'step1' writes; put 'step1' before 'step2'",
        ),
        (
            "steps:\n  - {subset: step1}\n  - {subset: step2, units: [visit]}\n",
            "step 'step1' has no 'units': name the units it is sharded over",
        ),
        (
            "steps:\n  - {subset: step1, units: [vist]}\n  - {subset: step2, units: [visit]}\n",
            "step 'step1' is sharded over unknown unit 'vist'. Did you mean 'visit'",
        ),
        (
            "steps:\n  - {subset: step1, units: [detector]}\n  - {subset: step2, units: [detector]}\n",
            "step 'step2' is sharded over 'detector', but task 'visitSummary' \\(quanta per instrument, visit\\) "
            "cannot be split by 'detector'.*\\('visitSummary': band, exposure, instrument, physical_filter, visit\\)",
        ),
    ],
)
def test_step_errors_name_the_step_and_the_fix(tmp_path, steps, expected):
    with pytest.raises(PipelineError, match=expected):
        load(tmp_path, TASKS + steps)


def test_a_task_in_two_steps_is_refused(tmp_path):
    text = TASKS.replace("step2: [visitSummary]", "step2: [calibrate, visitSummary]")
    with pytest.raises(PipelineError, match="task 'calibrate' is in step 'step1' and in step 'step2'"):
        load(
            tmp_path,
            text + "steps:\n  - {subset: step1, units: [visit]}\n  - {subset: step2, units: [visit]}\n",
        )


def test_steps_are_not_imported(tmp_path):
    load(
        tmp_path, TASKS + "steps:\n  - {subset: step1, units: [visit]}\n  - {subset: step2, units: [visit]}\n"
    )
    importer = tmp_path / "importer.yaml"
    importer.write_text("imports: [p.yaml]\n")
    pipeline = Pipeline.fromFile(importer)
    assert pipeline.steps == [] and set(pipeline.subsets) == {"step1", "step2"}


def test_split_pipeline_spec():
    assert split_pipeline_spec("a/p.yaml") == ("a/p.yaml", None)
    assert split_pipeline_spec("a/p.yaml#coadd") == ("a/p.yaml", "coadd")
    assert split_pipeline_spec("a/p.yaml#isr, calibrate") == ("a/p.yaml", "isr, calibrate")


def test_selecting_a_step_makes_earlier_steps_outputs_inputs_and_drops_steps():
    pipeline = Pipeline.fromFile(DEMO)
    coadd = select(pipeline, "coadd")
    assert list(coadd) == ["makeWarp", "assembleCoadd", "detectCoadd"]
    assert "calexp" in coadd.inputs and coadd.steps == []
    coadd.validate()
    labels = select(pipeline, "isr,calibrate")
    assert list(labels) == ["isr", "calibrate"] and labels.steps == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "an empty selection after '#': give a subset or step name \\(subsets: singleFrame, coadd\\)"),
        ("cooadd", "no subset, step or task labelled 'cooadd'. Did you mean 'coadd'.*task labels: isr,"),
        ("isr,calibrat", "no subset, step or task labelled 'calibrat'. Did you mean 'calibrate'"),
    ],
)
def test_selection_errors(name, expected):
    with pytest.raises(PipelineError, match=expected):
        select(Pipeline.fromFile(DEMO), name)


def test_pipeline_show_lists_steps_and_selects_a_part():
    from click.testing import CliRunner

    from supertask.cli.main import main

    shown = CliRunner().invoke(main, ["pipeline", "show", str(DEMO)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert (
        "Steps, in run order: singleFrame (sharded over visit) -> coadd (sharded over tract)" in shown.output
    )
    part = CliRunner().invoke(main, ["pipeline", "show", f"{DEMO}#coadd", "--yaml"])
    assert part.exit_code == 0, part.output
    assert list(Pipeline.fromYaml(part.output)) == ["makeWarp", "assembleCoadd", "detectCoadd"]
    clash = CliRunner().invoke(main, ["pipeline", "show", f"{DEMO}#coadd", "--subset", "singleFrame"])
    assert clash.exit_code == 2 and "selects 'coadd' but --subset says 'singleFrame'" in clash.output


def test_sharding_units_are_checked_from_files_not_from_a_graphs_pipeline_text(tmp_path):
    """A batch job rebuilds its tasks from the graph's pipeline text: no universe on its start-up path."""
    text = TASKS + "steps:\n  - {subset: step1, units: [visit]}\n  - {subset: step2, units: [detector]}\n"
    pipeline = Pipeline.fromYaml(text)  # the order and membership checks only
    assert [s.units for s in pipeline.steps] == [("visit",), ("detector",)]
    with pytest.raises(PipelineError, match="step 'step2' is sharded over 'detector'"):
        load(tmp_path, text)
    from click.testing import CliRunner

    from supertask.cli.main import main

    (tmp_path / "p.yaml").write_text(text)
    shown = CliRunner().invoke(main, ["pipeline", "show", str(tmp_path / "p.yaml")])
    assert shown.exit_code == 1 and "step 'step2' is sharded over 'detector'" in shown.output


def test_rebuilding_a_stepped_pipeline_from_text_does_not_load_the_universe():
    import subprocess

    code = (
        "import sys; sys.path.insert(0, 'examples'); from supertask.pipeline import Pipeline; "
        f"p = Pipeline.fromFile({str(DEMO)!r}); import supertask.repo.units as u; u._DEFAULT = None; "
        "Pipeline.fromYaml(p.toYaml()); print(u._DEFAULT is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
