"""Tests of supertask.supertask: dataset declarations, default runQuantum, defineQuanta delegation."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from tutorial_tasks import CalibrateTask, IsrTask, VisitSummaryConfig, VisitSummaryTask  # noqa: E402

import supertask.supertask as supertask_module  # noqa: E402
from supertask.quantum import Quantum  # noqa: E402
from supertask.repo.dataid import DataId  # noqa: E402
from supertask.repo.dataset import Dataset, DatasetType  # noqa: E402
from supertask.supertask import Struct, SuperTask  # noqa: E402
from supertask.task import TaskError  # noqa: E402


class DictButler:
    """An in-memory stand-in for Butler: get/put keyed by (dataset type name, data ID)."""

    def __init__(self):
        self.store: dict[tuple[str, DataId], object] = {}
        self.gets: list[Dataset] = []

    def get(self, dataset: Dataset):
        self.gets.append(dataset)
        return self.store[dataset.key]

    def put(self, obj, dataset: Dataset):
        assert dataset.key not in self.store, f"{dataset} written twice"
        self.store[dataset.key] = obj


def _dataset(task: SuperTask, field: str, **dataId) -> Dataset:
    return Dataset(getattr(task.config, field).datasetType, DataId(dataId))


def test_quantum_is_reexported():
    assert supertask_module.Quantum is Quantum


def test_get_dataset_classes_follows_config():
    config = IsrTask.ConfigClass()
    config.postISRCCD.name = "isrImage"
    task = IsrTask(config=config)
    classes = task.getDatasetClasses()
    assert classes == {
        "inputs": {"raw": DatasetType("raw", ("instrument", "visit", "detector"), "Image")},
        "outputs": {"postISRCCD": DatasetType("isrImage", ("instrument", "visit", "detector"), "Image")},
    }
    assert task.getDatasetSchemas() == {}


def test_supertask_accepts_butler_argument_and_label():
    task = IsrTask(butler=object(), name="isrLabel")
    assert task.label == "isrLabel"
    assert task.log.name == "supertask.isrLabel"


def test_run_quantum_single_inputs_and_outputs():
    task = CalibrateTask()
    butler = DictButler()
    dataId = dict(instrument="DemoCam", visit=1, detector=2)
    image = _dataset(task, "postISRCCD", **dataId)
    butler.store[image.key] = [[0.0, 9.0]]
    quantum = Quantum(
        "calibrate",
        DataId(dataId),
        inputs={"postISRCCD": [image]},
        outputs={"calexp": [_dataset(task, "calexp", **dataId)], "src": [_dataset(task, "src", **dataId)]},
    )
    result = task.runQuantum(quantum, butler)
    assert butler.store[("calexp", DataId(dataId))] == [[0.0, 9.0]]
    assert butler.store[("src", DataId(dataId))] == [(0, 1)]
    assert result.src == [(0, 1)]


def test_run_quantum_gathering_input_is_dict_by_data_id():
    task = VisitSummaryTask()
    butler = DictButler()
    visit = dict(instrument="DemoCam", visit=7)
    inputs = []
    for detector, sources in ((1, [(0, 0)]), (2, [(1, 1), (2, 2)])):
        dataset = _dataset(task, "src", detector=detector, **visit)
        butler.store[dataset.key] = sources
        inputs.append(dataset)
    output = _dataset(task, "visitSummary", **visit)
    quantum = Quantum(
        "visitSummary", DataId(visit), inputs={"src": inputs}, outputs={"visitSummary": [output]}
    )
    task.runQuantum(quantum, butler)
    assert butler.store[output.key] == {"nSources": {1: 1, 2: 2}}


def test_run_quantum_scattering_output_is_put_per_data_id():
    from supertask.config import Config, DatasetField

    class SplitConfig(Config):
        visitImage = DatasetField(
            doc="d", units=("instrument", "visit"), storageClass="Image", name="visitImage"
        )
        piece = DatasetField(
            doc="d",
            units=("instrument", "visit", "detector"),
            storageClass="Image",
            name="piece",
            role="output",
        )

    class SplitTask(SuperTask):
        ConfigClass = SplitConfig
        _DefaultName = "split"
        quantumUnits = ("instrument", "visit")

        def run(self, visitImage):
            return Struct(piece={DataId(instrument="C", visit=1, detector=d): visitImage[d] for d in (0, 1)})

    task = SplitTask()
    butler = DictButler()
    source = _dataset(task, "visitImage", instrument="C", visit=1)
    butler.store[source.key] = ["a", "b"]
    outputs = [_dataset(task, "piece", instrument="C", visit=1, detector=d) for d in (0, 1)]
    quantum = Quantum("split", DataId(instrument="C", visit=1), {"visitImage": [source]}, {"piece": outputs})
    task.runQuantum(quantum, butler)
    assert [butler.store[o.key] for o in outputs] == ["a", "b"]


def test_run_quantum_missing_output_names_field():
    class Lazy(IsrTask):
        def run(self, raw):
            return Struct(nothing=None)

    task = Lazy()
    butler = DictButler()
    dataId = dict(instrument="C", visit=1, detector=1)
    raw = _dataset(task, "raw", **dataId)
    butler.store[raw.key] = [[1.0]]
    quantum = Quantum(
        "isr", DataId(dataId), {"raw": [raw]}, {"postISRCCD": [_dataset(task, "postISRCCD", **dataId)]}
    )
    with pytest.raises(TaskError, match="returned no 'postISRCCD'"):
        task.runQuantum(quantum, butler)


def test_run_quantum_rejects_two_datasets_for_single_input():
    task = IsrTask()
    butler = DictButler()
    raws = [_dataset(task, "raw", instrument="C", visit=1, detector=d) for d in (1, 2)]
    quantum = Quantum("isr", DataId(instrument="C", visit=1, detector=1), {"raw": raws}, {})
    with pytest.raises(TaskError, match="has 2 datasets of 'raw'"):
        task.runQuantum(quantum, butler)


def test_define_quanta_delegates_to_graph_module(monkeypatch):
    calls = []
    fake = types.ModuleType("supertask.graph.quanta")
    fake.define_quanta_by_units = lambda task, repoGraph: calls.append((task, repoGraph)) or ["q"]
    monkeypatch.setitem(sys.modules, "supertask.graph.quanta", fake)
    task = IsrTask()
    assert task.defineQuanta("repoGraph") == ["q"]
    assert calls == [(task, "repoGraph")]


def test_dataset_units_fixed_by_class_even_when_renamed():
    config = VisitSummaryConfig()
    config.visitSummary.name = "summary2"
    assert config.visitSummary.datasetType.units == ("instrument", "visit")
