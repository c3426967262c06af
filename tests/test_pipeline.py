"""Tests of supertask.pipeline: building, ordering, overrides, instruments, YAML format and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

from tutorial_tasks import (  # noqa: E402
    BrightestPixelDetectionTask,
    CalibrateConfig,
    CalibrateTask,
    IsrTask,
    ThresholdDetectionTask,
    VisitSummaryTask,
)

from supertask.config import FrozenConfigError  # noqa: E402
from supertask.pipeline import Pipeline, PipelineError  # noqa: E402

DATA = Path(__file__).parent / "data"
TUTORIAL = DATA / "pipeline_tutorial.yaml"


def make_pipeline(order=("isr", "calibrate", "visitSummary")) -> Pipeline:
    classes = {"isr": IsrTask, "calibrate": CalibrateTask, "visitSummary": VisitSummaryTask}
    pipeline = Pipeline("tutorial", inputs=["raw"])
    for label in order:
        pipeline.addTask(classes[label], label)
    return pipeline


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- building in Python ------------------------------------------------------------------------
def test_add_task_defaults_label_and_copies_config():
    config = CalibrateConfig()
    config.photoCalib = 2.0
    pipeline = Pipeline()
    taskDef = pipeline.addTask(CalibrateTask, config=config)
    assert list(pipeline) == ["calibrate"] and taskDef.taskClass is CalibrateTask
    config.photoCalib = 3.0
    assert pipeline["calibrate"].config.photoCalib == 2.0


def test_add_task_errors():
    pipeline = make_pipeline()
    with pytest.raises(PipelineError, match="label already used"):
        pipeline.addTask(IsrTask, "isr")
    with pytest.raises(PipelineError, match="needs a IsrConfig"):
        pipeline.addTask(IsrTask, "isr2", config=CalibrateConfig())
    with pytest.raises(PipelineError, match="not a SuperTask"):
        pipeline.addTask(ThresholdDetectionTask, "detect")
    with pytest.raises(PipelineError, match="no task labelled 'calbrate'.*Did you mean 'calibrate'"):
        pipeline["calbrate"]


def test_remove_task_drops_it_from_subsets():
    pipeline = make_pipeline()
    pipeline.subsets["step1"] = ["isr", "calibrate"]
    del pipeline["isr"]
    assert list(pipeline) == ["calibrate", "visitSummary"]
    assert pipeline.subsets["step1"] == ["calibrate"]


# -- order ---------------------------------------------------------------------------------------
def test_check_order_and_stable_sort_order():
    pipeline = make_pipeline(order=("visitSummary", "calibrate", "isr"))
    assert not pipeline.checkOrder()
    pipeline.sortOrder()
    assert list(pipeline) == ["isr", "calibrate", "visitSummary"]
    assert pipeline.checkOrder()


def test_sort_order_keeps_independent_tasks_in_place():
    pipeline = make_pipeline()
    other = CalibrateConfig()
    for field in ("postISRCCD", "calexp", "src"):
        getattr(other, field).name = f"{field}2"
    pipeline.addTask(CalibrateTask, "calibrate2", config=other)
    pipeline.inputs.append("postISRCCD2")
    pipeline.sortOrder()
    assert list(pipeline) == ["isr", "calibrate", "visitSummary", "calibrate2"]


def test_cycle_is_an_error_naming_the_cycle():
    pipeline = make_pipeline(order=("isr", "calibrate"))
    pipeline["isr"].config.raw.name = "calexp"  # isr now reads what calibrate writes
    with pytest.raises(PipelineError, match="cycle") as info:
        pipeline.sortOrder()
    assert "isr" in str(info.value) and "calibrate" in str(info.value)


# -- dataset flow -------------------------------------------------------------------------------
def test_dataset_types_classifies_inputs_intermediates_outputs():
    flow = make_pipeline().datasetTypes()
    assert list(flow.inputs) == ["raw"]
    assert list(flow.intermediates) == ["postISRCCD", "src"]
    assert list(flow.outputs) == ["calexp", "visitSummary"]
    assert flow.producers["src"] == "calibrate" and flow.consumers["src"] == ["visitSummary"]
    assert flow.outputs["visitSummary"].units == ("instrument", "visit")
    assert set(flow.produced) == {"postISRCCD", "src", "calexp", "visitSummary"}


def test_dataset_types_follow_renames():
    pipeline = make_pipeline()
    pipeline.applyConfigOverrides({"calibrate": "src.name=sources"})
    flow = pipeline.datasetTypes()
    assert "sources" in flow.outputs and "src" in flow.inputs


# -- overrides ------------------------------------------------------------------------------------
def test_apply_config_overrides_accepts_dicts_strings_files(tmp_path):
    py = write(tmp_path, "over.py", "config.photoCalib = 3.0\n")
    yml = write(tmp_path, "over.yaml", "detection:\n  threshold: 7.0\n")
    pipeline = make_pipeline()
    pipeline.applyConfigOverrides(
        {
            "calibrate": [{"detection.threshold": 6.0}, str(py), "src.name=sources", yml],
            "isr": {"biasLevel": 5},
        }
    )
    config = pipeline["calibrate"].config
    assert (config.photoCalib, config.detection.threshold, config.src.name) == (3.0, 7.0, "sources")
    assert pipeline["isr"].config.biasLevel == 5.0


def test_apply_config_overrides_errors_name_label():
    pipeline = make_pipeline()
    with pytest.raises(PipelineError, match="task 'calibrate'.*photoCalib"):
        pipeline.applyConfigOverrides({"calibrate": {"photoCalib": "bright"}})
    with pytest.raises(PipelineError, match="Did you mean 'isr'"):
        pipeline.applyConfigOverrides({"irs": {"biasLevel": 1.0}})


def test_apply_config_strings_from_command_line():
    pipeline = make_pipeline()
    pipeline.applyConfigStrings(["calibrate:detection.threshold=0.5", "isr:biasLevel=1e2"])
    assert pipeline["calibrate"].config.detection.threshold == 0.5
    assert pipeline["isr"].config.biasLevel == 100.0
    with pytest.raises(PipelineError, match="label:field"):
        pipeline.applyConfigStrings(["biasLevel=3"])


# -- instruments -----------------------------------------------------------------------------------
def test_for_instrument_applies_its_overrides_only():
    pipeline = Pipeline.fromFile(TUTORIAL)
    demo = pipeline.forInstrument("DemoCam")
    assert demo.instrument == "DemoCam"
    assert demo["isr"].config.biasLevel == 100.0
    assert demo["calibrate"].config.detection.target is BrightestPixelDetectionTask
    assert demo["calibrate"].config.detection.threshold == 2.0
    other = pipeline.forInstrument("OtherCam")
    assert other["isr"].config.biasLevel == 90.0
    assert other["calibrate"].config.detection.target is ThresholdDetectionTask
    assert pipeline["isr"].config.biasLevel == 90.0  # the generic pipeline is untouched


def test_for_instrument_errors():
    pipeline = Pipeline.fromFile(TUTORIAL)
    with pytest.raises(PipelineError, match="Did you mean 'DemoCam'.*empty entry"):
        pipeline.forInstrument("DemoCm")
    with pytest.raises(PipelineError, match="already specialised for instrument 'DemoCam'"):
        pipeline.forInstrument("DemoCam").forInstrument("OtherCam")


def test_instrument_key_in_file_specialises_on_load(tmp_path):
    path = write(tmp_path, "pipeline_demo.yaml", f"imports: [{TUTORIAL}]\ninstrument: DemoCam\n")
    pipeline = Pipeline.fromFile(path)
    assert pipeline.instrument == "DemoCam" and pipeline["isr"].config.biasLevel == 100.0


def test_bad_instrument_override_reported_at_load(tmp_path):
    text = "inputs: [raw]\ntasks:\n  isr:\n    class: tutorial_tasks.IsrTask\n    instrumentOverrides:\n      DemoCam: {biasLevl: 1}\n"
    with pytest.raises(
        PipelineError, match="task 'isr': instrumentOverrides.DemoCam.*Did you mean 'biasLevel'"
    ):
        Pipeline.fromFile(write(tmp_path, "p.yaml", text))


# -- file format -------------------------------------------------------------------------------------
def test_from_file_expands_imports_config_files_and_subsets():
    pipeline = Pipeline.fromFile(TUTORIAL)
    assert list(pipeline) == ["isr", "calibrate", "visitSummary"]
    assert pipeline.inputs == ["raw"]
    assert pipeline["isr"].config.biasLevel == 90.0
    assert pipeline["calibrate"].config.photoCalib == 1.25  # from the config file
    assert pipeline["calibrate"].config.detection.threshold == 4.0  # inline config wins over the file
    assert pipeline.subsets == {"step1": ["isr", "calibrate"], "step2": ["visitSummary"]}
    assert pipeline.source == str(TUTORIAL)


def test_yaml_round_trip_is_exact_and_deterministic(tmp_path):
    for pipeline in (Pipeline.fromFile(TUTORIAL), Pipeline.fromFile(TUTORIAL).forInstrument("DemoCam")):
        text = pipeline.toYaml()
        again = Pipeline.fromYaml(text)
        assert again == pipeline
        assert again.toYaml() == text
        path = tmp_path / "written.yaml"
        pipeline.write(path)
        assert Pipeline.fromFile(path) == pipeline


def test_written_yaml_contains_every_resolved_override():
    pipeline = Pipeline.fromFile(TUTORIAL)
    pipeline.applyConfigStrings(["visitSummary:skipDetectors=[3]"])
    text = pipeline.toYaml()
    assert "configFiles" not in text and "imports" not in text
    assert "photoCalib: 1.25" in text and "skipDetectors:\n      - 3" in text


def test_pipeline_rebuilds_in_another_process_from_yaml_alone(tmp_path):
    pipeline = Pipeline.fromFile(TUTORIAL).forInstrument("DemoCam")
    pipeline.applyConfigStrings(["calibrate:photoCalib=0.5"])
    path = tmp_path / "elsewhere" / "job.yaml"
    path.parent.mkdir()
    path.write_text(pipeline.toYaml())
    code = (
        "import sys\nfrom supertask.pipeline import Pipeline\n"
        "p = Pipeline.fromYaml(open(sys.argv[1]).read())\n"
        "print(' '.join(t.config.digest() for t in p.makeTasks()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES), "PYTHONHASHSEED": "7"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert out == [task.config.digest() for task in pipeline.makeTasks()]


def test_make_tasks_in_order_with_frozen_copies():
    pipeline = make_pipeline(order=("visitSummary", "isr", "calibrate"))
    tasks = pipeline.makeTasks(butler=None)
    assert [t.label for t in tasks] == ["isr", "calibrate", "visitSummary"]
    assert isinstance(tasks[1].detection, ThresholdDetectionTask)
    with pytest.raises(FrozenConfigError):
        tasks[0].config.biasLevel = 1.0
    pipeline["isr"].config.biasLevel = 1.0  # the pipeline itself stays editable
    assert tasks[0].config.biasLevel == 100.0


def test_subset_turns_outside_products_into_inputs():
    pipeline = Pipeline.fromFile(TUTORIAL)
    step2 = pipeline.subset("step2")
    assert list(step2) == ["visitSummary"] and step2.inputs == ["raw", "src"]
    step2.validate()
    with pytest.raises(PipelineError, match="no subset named 'stepl'. Did you mean 'step[12]'"):
        pipeline.subset("stepl")


def test_import_exclusions(tmp_path):
    path = write(tmp_path, "p.yaml", f"imports:\n  - location: {TUTORIAL}\n    exclude: [visitSummary]\n")
    pipeline = Pipeline.fromFile(path)
    assert list(pipeline) == ["isr", "calibrate"]
    assert "step2" not in pipeline.subsets
    bad = write(tmp_path, "bad.yaml", f"imports:\n  - location: {TUTORIAL}\n    exclude: [visitSumary]\n")
    with pytest.raises(
        PipelineError, match="bad.yaml: .*excludes 'visitSumary'.*Did you mean 'visitSummary'"
    ):
        Pipeline.fromFile(bad)


def test_importing_file_can_override_imported_task_config(tmp_path):
    path = write(
        tmp_path, "p.yaml", f"imports: [{TUTORIAL}]\ntasks:\n  isr:\n    config: {{biasLevel: 10.0}}\n"
    )
    assert Pipeline.fromFile(path)["isr"].config.biasLevel == 10.0
    clash = write(
        tmp_path,
        "c.yaml",
        f"imports: [{TUTORIAL}]\ntasks:\n  isr:\n    class: tutorial_tasks.CalibrateTask\n",
    )
    with pytest.raises(PipelineError, match="c.yaml: task 'isr': already defined by an import"):
        Pipeline.fromFile(clash)


# -- bad input -------------------------------------------------------------------------------------------
def test_unknown_task_class_names_file_label_and_fix(tmp_path):
    path = write(tmp_path, "p.yaml", "inputs: [raw]\ntasks:\n  isr:\n    class: tutorial_tasks.IsrTsk\n")
    with pytest.raises(PipelineError) as info:
        Pipeline.fromFile(path)
    message = str(info.value)
    assert str(path) in message and "task 'isr'" in message and "Did you mean 'IsrTask'" in message
    path = write(tmp_path, "q.yaml", "tasks:\n  isr:\n    class: no_such_package.IsrTask\n")
    with pytest.raises(PipelineError, match="q.yaml: task 'isr': cannot import .*PYTHONPATH"):
        Pipeline.fromFile(path)


def test_two_tasks_writing_same_dataset_type(tmp_path):
    text = (
        "inputs: [raw]\ntasks:\n  isr: tutorial_tasks.IsrTask\n  calibrate: tutorial_tasks.CalibrateTask\n"
        "  calibrateAgain: tutorial_tasks.CalibrateTask\n"
    )
    with pytest.raises(PipelineError) as info:
        Pipeline.fromFile(write(tmp_path, "p.yaml", text))
    message = str(info.value)
    assert "p.yaml: task 'calibrateAgain': writes dataset type 'calexp'" in message
    assert "'calibrate' also writes" in message and "rename the output" in message


def test_input_nobody_writes_and_not_declared(tmp_path):
    text = "tasks:\n  isr: tutorial_tasks.IsrTask\n  calibrate: tutorial_tasks.CalibrateTask\n"
    with pytest.raises(PipelineError) as info:
        Pipeline.fromFile(write(tmp_path, "p.yaml", text))
    message = str(info.value)
    assert "p.yaml: task 'isr': reads dataset type 'raw'" in message and "'inputs:'" in message
    # the same file with the overall input declared is fine
    Pipeline.fromFile(write(tmp_path, "ok.yaml", "inputs: [raw]\n" + text))


def test_declared_input_that_a_task_writes(tmp_path):
    text = "inputs: [raw, postISRCCD]\ntasks:\n  isr: tutorial_tasks.IsrTask\n"
    with pytest.raises(PipelineError, match="task 'isr': writes 'postISRCCD'.*remove it from the top-level"):
        Pipeline.fromFile(write(tmp_path, "p.yaml", text))


def test_inconsistent_dataset_type_definitions(tmp_path):
    text = "inputs: [raw]\ntasks:\n  isr: tutorial_tasks.IsrTask\n  calibrate:\n    class: tutorial_tasks.CalibrateTask\n    config: {postISRCCD.storageClass: NumpyArray}\n"
    with pytest.raises(PipelineError, match="'postISRCCD'.*storage class 'NumpyArray'.*rename one"):
        Pipeline.fromFile(write(tmp_path, "p.yaml", text))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("tasks:\n  isr: [unclosed\n", r"p.yaml, line \d+: malformed pipeline YAML"),
        (
            "tasks:\n  isr: tutorial_tasks.IsrTask\n  isr: tutorial_tasks.IsrTask\n",
            r"line 3: .*duplicate key 'isr'",
        ),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("taks:\n  isr: tutorial_tasks.IsrTask\n", "unknown key 'taks'.*Did you mean 'tasks'"),
        (
            "tasks:\n  isr:\n    clas: tutorial_tasks.IsrTask\n",
            "unknown key 'clas' in task 'isr'.*Did you mean 'class'",
        ),
        ("tasks:\n  isr:\n    config: {biasLevel: 1}\n", "task 'isr': no 'class'"),
        (
            "inputs: [raw]\ntasks:\n  isr:\n    class: tutorial_tasks.IsrTask\n    config: {biasLevel: -1}\n",
            "task 'isr': .*biasLevel.*it must be >= 0.*tasks.isr.config",
        ),
        (
            "inputs: [raw]\ntasks:\n  isr: tutorial_tasks.IsrTask\nsubsets:\n  s: [irs]\n",
            "subset 's' names unknown task 'irs'",
        ),
    ],
)
def test_malformed_files_name_file_and_problem(tmp_path, text, expected):
    path = write(tmp_path, "p.yaml", text)
    with pytest.raises(PipelineError, match=expected):
        Pipeline.fromFile(path)


def test_config_file_error_names_both_files(tmp_path):
    write(tmp_path, "over.py", "config.photoCalib = 1.0\nconfig.detection.treshold = 1.0\n")
    path = write(
        tmp_path,
        "p.yaml",
        "tasks:\n  calibrate:\n    class: tutorial_tasks.CalibrateTask\n    configFiles: [over.py]\n",
    )
    with pytest.raises(PipelineError) as info:
        Pipeline.fromFile(path, validate=False)
    assert "p.yaml: task 'calibrate'" in str(info.value) and "over.py, line 2" in str(info.value)


def test_import_cycle_is_reported(tmp_path):
    write(tmp_path, "a.yaml", "imports: [b.yaml]\n")
    write(tmp_path, "b.yaml", "imports: [a.yaml]\n")
    with pytest.raises(PipelineError, match="imports form a cycle"):
        Pipeline.fromFile(tmp_path / "a.yaml")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(PipelineError, match="cannot read pipeline file .*nope.yaml"):
        Pipeline.fromFile(tmp_path / "nope.yaml")


def test_local_task_class_cannot_be_written():
    class LocalTask(IsrTask):
        pass

    pipeline = Pipeline(inputs=["raw"])
    pipeline.addTask(LocalTask, "isr")
    with pytest.raises(PipelineError, match="defined inside a function"):
        pipeline.toYaml()


def test_retarget_from_command_line_and_signature_check_in_files(tmp_path):
    pipeline = make_pipeline()
    pipeline.applyConfigStrings(["calibrate:detection._target=tutorial_tasks.BrightestPixelDetectionTask"])
    assert pipeline["calibrate"].config.detection.target is BrightestPixelDetectionTask
    assert "_target: tutorial_tasks.BrightestPixelDetectionTask" in pipeline.toYaml()
    text = (
        "inputs: [raw]\ntasks:\n  calibrate:\n    class: tutorial_tasks.CalibrateTask\n"
        "    config:\n      detection: {_target: tutorial_tasks.IsrTask}\n"
    )
    with pytest.raises(
        PipelineError, match="p.yaml: task 'calibrate': cannot retarget detection.*run signatures differ"
    ):
        Pipeline.fromFile(write(tmp_path, "p.yaml", text), validate=False)


def test_the_yaml_format_module_does_not_import_the_pipeline_class_at_run_time():
    # core -> yaml_io only: yaml_io fills the class it is given, so the two modules form no cycle
    import ast

    import supertask.pipeline.yaml_io as yaml_io

    tree = ast.parse(Path(yaml_io.__file__).read_text())
    type_checking_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    runtime_imports = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and id(node) not in type_checking_only
    ]
    assert "core" not in runtime_imports and "supertask.pipeline.core" not in runtime_imports
