"""Tests of supertask.task: Task construction, subtasks, logger hierarchy, metadata, Struct."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from tutorial_tasks import (  # noqa: E402
    BrightestPixelDetectionTask,
    CalibrateConfig,
    CalibrateTask,
    ThresholdDetectionTask,
)

from supertask.config import FrozenConfigError  # noqa: E402
from supertask.task import Struct, Task, TaskError  # noqa: E402


def test_struct_holds_named_results():
    result = Struct(a=1, b=[2])
    assert result.a == 1 and result.b == [2]
    assert result.getDict() == {"a": 1, "b": [2]}
    assert result == Struct(a=1, b=[2]) and result != Struct(a=2, b=[2])


def test_task_defaults_name_and_config():
    task = ThresholdDetectionTask()
    assert task.getName() == "detection" and task.getFullName() == "detection"
    assert task.config.threshold == 5.0
    assert task.config.frozen


def test_task_rejects_config_of_wrong_class():
    with pytest.raises(TaskError, match="needs a DetectionConfig"):
        ThresholdDetectionTask(config=CalibrateConfig())


def test_subtask_gets_config_logger_and_is_retargetable(caplog):
    config = CalibrateConfig()
    config.detection.threshold = 1.0
    task = CalibrateTask(config=config, name="calib")
    assert isinstance(task.detection, ThresholdDetectionTask)
    assert task.detection.config.threshold == 1.0
    assert task.detection.getFullName() == "calib.detection"
    assert task.log.name == "supertask.calib"
    assert task.detection.log.name == "supertask.calib.detection"
    with caplog.at_level(logging.DEBUG, logger="supertask"):
        task.run([[0.0, 3.0], [2.0, 0.5]])
    assert any(r.name == "supertask.calib" and "found 2 sources" in r.getMessage() for r in caplog.records)

    config = CalibrateConfig()
    config.detection.retarget(BrightestPixelDetectionTask)
    config.detection.threshold = 1.0
    task = CalibrateTask(config=config)
    assert isinstance(task.detection, BrightestPixelDetectionTask)
    assert task.run([[0.0, 3.0], [2.0, 0.5]]).src == [(0, 1)]


def test_metadata_is_collected_per_task():
    task = CalibrateTask()
    task.config.detection  # noqa: B018
    task.run([[10.0, 0.0]])
    full = task.getFullMetadata()
    assert full["calibrate.detection"]["nPeaks"] == 1
    task.metadata.add("timings", 1.5)
    task.metadata.add("timings", 2.5)
    assert full["calibrate"]["timings"] == [1.5, 2.5]


def test_config_frozen_after_construction_including_subtasks():
    task = CalibrateTask()
    with pytest.raises(FrozenConfigError):
        task.config.photoCalib = 2.0
    with pytest.raises(FrozenConfigError):
        task.detection.config.threshold = 2.0


def test_make_subtask_of_non_configurable_field_is_clear():
    task = CalibrateTask()
    with pytest.raises(TaskError, match="'photoCalib' is not a ConfigurableField"):
        task.makeSubtask("photoCalib")
    with pytest.raises(TaskError, match="Did you mean 'detection'"):
        task.makeSubtask("detectoin")


def test_task_without_name_is_refused():
    class Nameless(Task):
        pass

    with pytest.raises(TaskError, match="_DefaultName"):
        Nameless()


def test_base_run_is_not_implemented():
    class Empty(Task):
        _DefaultName = "empty"

    with pytest.raises(NotImplementedError, match="Empty must implement run"):
        Empty().run()
