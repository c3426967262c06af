"""The builder's planning: the expression selects quanta but never slices their inputs.

These tests use a small in-memory RepoGraph (``FakeRepoGraph``) so that the planning
rules are checked independently of the SQL registry; the demo-repository tests check
the same rules end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from supertask.graph.builder import GraphBuilderError, QuantumGraphBuilder
from supertask.graph.quanta import define_quanta_by_units
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
SUMMARY = DatasetType("visitSummary", ("instrument", "visit"), "Table")
WARP = DatasetType("warp", ("instrument", "visit", "skymap", "tract", "patch"), "NumpyArray")


class FakeRepoGraph:
    """Rows of a tiny universe: one visit, four detectors, two tracts with one patch each.

    Detectors 1 and 2 overlap tract 0; detectors 3 and 4 overlap tract 1.
    """

    def __init__(self, where: Callable[[DataId], bool], raws: Iterable[int] = (1, 2, 3, 4)):
        self.all_rows = [
            DataId(instrument="Cam", visit=1, detector=d, skymap="sky", tract=0 if d <= 2 else 1, patch=0)
            for d in (1, 2, 3, 4)
        ]
        self.rows = [row for row in self.all_rows if where(row)]
        self.existing = {
            ("raw", DataId(instrument="Cam", visit=1, detector=d)): Dataset(
                RAW, DataId(instrument="Cam", visit=1, detector=d), id=d, run="raw"
            )
            for d in raws
        }
        self.added: list[Dataset] = []

    def dataIds(self, units: Iterable[str]) -> set[DataId]:
        return {row.subset(units) for row in self.rows}

    def relatedDataIds(self, dataIds: Iterable[DataId], toUnits: Iterable[str]) -> dict[DataId, list[DataId]]:
        result: dict[DataId, set[DataId]] = {}
        for dataId in dataIds:
            result[dataId] = {row.subset(toUnits) for row in self.all_rows if row.matches(dataId)}
        return {k: sorted(v) for k, v in result.items()}

    def findDatasets(self, name: str, dataIds: Iterable[DataId]) -> dict[DataId, Dataset]:
        return {d: self.existing[(name, d)] for d in dataIds if (name, d) in self.existing}

    def addDataset(self, datasetType: DatasetType, dataId: DataId) -> Dataset:
        dataset = Dataset(datasetType, dataId)
        self.added.append(dataset)
        return dataset

    def explainEmpty(self) -> str:
        return "no rows"


class FakeTask:
    """Just enough of a SuperTask for the builder: label, quantum units, dataset classes."""

    def __init__(self, label: str, units: tuple[str, ...], inputs: dict, outputs: dict):
        self.label = label
        self.quantumUnits = units
        self._classes = {"inputs": inputs, "outputs": outputs}
        self.config = None

    def getDatasetClasses(self) -> dict:
        return self._classes

    def getDatasetSchemas(self) -> dict:
        return {}

    def defineQuanta(self, repoGraph):
        return define_quanta_by_units(self, repoGraph)


class FakePipeline:
    def __init__(self, tasks: list[FakeTask]):
        self.tasks = tasks

    def makeTasks(self, butler=None) -> list[FakeTask]:
        return self.tasks


def make_pipeline(with_summary: bool = True, with_warp: bool = True) -> FakePipeline:
    tasks = [FakeTask("calibrate", ("instrument", "visit", "detector"), {"raw": RAW}, {"calexp": CALEXP})]
    if with_summary:
        tasks.append(
            FakeTask("visitSummary", ("instrument", "visit"), {"calexp": CALEXP}, {"summary": SUMMARY})
        )
    if with_warp:
        tasks.append(
            FakeTask(
                "makeWarp",
                ("instrument", "visit", "skymap", "tract", "patch"),
                {"calexp": CALEXP},
                {"warp": WARP},
            )
        )
    return FakePipeline(tasks)


def define_all(builder: QuantumGraphBuilder, repoGraph: FakeRepoGraph) -> dict[str, list]:
    """Run the builder's planning and each task's defineQuanta, as makeGraph does."""
    from supertask.graph.quanta import PlannedRepoGraph

    planned, _ = builder.planDataIds(repoGraph)
    produced: dict = {}
    prunes: dict = {}
    view = PlannedRepoGraph(repoGraph, planned, produced, prunes, builder.expand_inputs)
    result = {}
    for task in builder.tasks:
        quanta = task.defineQuanta(view)
        for q in quanta:
            for d in q.iterOutputs():
                produced.setdefault(d.datasetType.name, {})[d.dataId] = d
        result[task.label] = quanta
    result["_prunes"] = prunes
    return result


def detectors(quanta) -> list[int]:
    return sorted(q.dataId["detector"] for q in quanta)


def test_gathering_task_gets_every_detector_of_the_visit_even_when_tract_touches_some():
    repo = FakeRepoGraph(where=lambda row: row["tract"] == 0)
    quanta = define_all(QuantumGraphBuilder(make_pipeline()), repo)
    (summary,) = quanta["visitSummary"]
    assert sorted(d.dataId["detector"] for d in summary.inputs["calexp"]) == [1, 2, 3, 4]
    # and the detectors outside the tile are calibrated so that the summary can be made
    assert detectors(quanta["calibrate"]) == [1, 2, 3, 4]


def test_warp_of_the_tile_gathers_only_overlapping_detectors():
    repo = FakeRepoGraph(where=lambda row: row["tract"] == 0)
    quanta = define_all(QuantumGraphBuilder(make_pipeline(with_summary=False)), repo)
    (warp,) = quanta["makeWarp"]
    assert warp.dataId["tract"] == 0
    assert sorted(d.dataId["detector"] for d in warp.inputs["calexp"]) == [1, 2]
    # without a gathering task over whole visits, only the tile's detectors are calibrated
    assert detectors(quanta["calibrate"]) == [1, 2]


def test_detector_needed_by_a_patch_is_not_dropped_when_expression_names_another_detector():
    repo = FakeRepoGraph(where=lambda row: row["tract"] == 0 and row["detector"] == 1)
    quanta = define_all(QuantumGraphBuilder(make_pipeline(with_summary=False)), repo)
    (warp,) = quanta["makeWarp"]
    assert sorted(d.dataId["detector"] for d in warp.inputs["calexp"]) == [1, 2]
    assert detectors(quanta["calibrate"]) == [1, 2]


def test_restricting_inputs_reproduces_tile_slicing_when_asked():
    repo = FakeRepoGraph(where=lambda row: row["tract"] == 0)
    builder = QuantumGraphBuilder(make_pipeline(), expand_inputs=False)
    quanta = define_all(builder, repo)
    (summary,) = quanta["visitSummary"]
    assert sorted(d.dataId["detector"] for d in summary.inputs["calexp"]) == [1, 2]
    assert detectors(quanta["calibrate"]) == [1, 2]


def test_quantum_whose_input_cannot_exist_is_pruned_and_gatherers_use_the_rest():
    repo = FakeRepoGraph(where=lambda row: True, raws=(1, 2, 3))
    quanta = define_all(QuantumGraphBuilder(make_pipeline()), repo)
    assert detectors(quanta["calibrate"]) == [1, 2, 3]
    (summary,) = quanta["visitSummary"]
    assert sorted(d.dataId["detector"] for d in summary.inputs["calexp"]) == [1, 2, 3]
    prunes = quanta["_prunes"]
    assert prunes["calibrate"].count == 1
    assert "'raw'" in prunes["calibrate"].examples[0] and "detector: 4" in prunes["calibrate"].examples[0]


def test_gathering_quantum_with_no_input_at_all_is_pruned():
    repo = FakeRepoGraph(where=lambda row: row["tract"] == 1, raws=(1, 2))
    quanta = define_all(QuantumGraphBuilder(make_pipeline(with_summary=False)), repo)
    assert quanta["makeWarp"] == []
    assert quanta["_prunes"]["makeWarp"].count == 1


def test_intermediate_inputs_are_the_producers_output_objects():
    repo = FakeRepoGraph(where=lambda row: True)
    quanta = define_all(QuantumGraphBuilder(make_pipeline()), repo)
    produced = {id(d) for q in quanta["calibrate"] for d in q.outputs["calexp"]}
    consumed = {id(d) for d in quanta["visitSummary"][0].inputs["calexp"]}
    assert consumed <= produced


def test_two_tasks_writing_one_dataset_type_is_an_error_naming_both():
    pipeline = FakePipeline(
        [
            FakeTask("a", ("instrument", "visit", "detector"), {"raw": RAW}, {"calexp": CALEXP}),
            FakeTask("b", ("instrument", "visit", "detector"), {"raw": RAW}, {"calexp": CALEXP}),
        ]
    )
    with pytest.raises(GraphBuilderError, match=r"'calexp' is written by both 'a' and 'b'"):
        QuantumGraphBuilder(pipeline)


def test_output_with_units_outside_the_quantum_is_refused_with_the_fix():
    pipeline = FakePipeline([FakeTask("bad", ("instrument", "visit"), {"raw": RAW}, {"calexp": CALEXP})])
    with pytest.raises(GraphBuilderError, match="custom defineQuanta or change quantumUnits"):
        QuantumGraphBuilder(pipeline)


def test_overall_inputs_and_outputs_are_classified():
    builder = QuantumGraphBuilder(make_pipeline())
    assert {t.name for t in builder.inputDatasetTypes} == {"raw"}
    assert {t.name for t in builder.outputDatasetTypes} == {"calexp", "visitSummary", "warp"}
    assert builder.units == {"instrument", "visit", "detector", "skymap", "tract", "patch"}


def test_a_per_quantum_lookup_is_aligned_with_the_data_ids_whoever_answers_it():
    from supertask.graph.quanta import PlannedRepoGraph

    repoGraph = FakeRepoGraph(lambda row: True, raws=(1, 3))  # no findDatasetList: findDatasets answers
    asked = [DataId(instrument="Cam", visit=1, detector=d) for d in (3, 2, 1, 3)]
    view = PlannedRepoGraph(repoGraph, {}, {}, {})
    found = view._existingOrPlannedList(RAW, asked)
    assert [None if f is None else f.dataId["detector"] for f in found] == [3, None, 1, 3]
    assert found[0] is repoGraph.existing[("raw", asked[0])]

    planned = {asked[1]: Dataset(CALEXP, asked[1])}  # an earlier task's outputs answer for their type
    view = PlannedRepoGraph(repoGraph, {}, {"calexp": planned}, {})
    assert view._existingOrPlannedList(CALEXP, asked) == [None, planned[asked[1]], None, None]


def test_inputs_an_earlier_task_produces_are_read_from_its_outputs_without_a_bulk_lookup(monkeypatch):
    from supertask.graph.quanta import PlannedRepoGraph

    def no_bulk_lookup(self, datasetType, dataIds):
        raise AssertionError(f"bulk look-up of {datasetType.name}")

    repo = FakeRepoGraph(where=lambda row: True)
    monkeypatch.setattr(PlannedRepoGraph, "existingOrPlanned", no_bulk_lookup)
    quanta = define_all(QuantumGraphBuilder(make_pipeline()), repo)
    produced = {id(d) for q in quanta["calibrate"] for d in q.outputs["calexp"]}
    for label in ("visitSummary", "makeWarp"):  # both gather calexp
        assert quanta[label] and all({id(d) for d in q.inputs["calexp"]} <= produced for q in quanta[label])


def test_common_keys_are_found_only_when_every_data_id_has_the_same_keys():
    from supertask.graph.quanta import _common_keys

    same = [DataId(instrument="Cam", visit=1, detector=d) for d in (1, 2)]
    assert _common_keys(same) == {"instrument", "visit", "detector"}
    # as many keys, but not the same ones; or a different number of keys
    assert _common_keys([*same, DataId(instrument="Cam", visit=1, tract=0)]) is None
    assert _common_keys([*same, DataId(instrument="Cam", visit=1)]) is None
    assert _common_keys([]) is None


def test_project_all_with_known_keys_keeps_the_data_ids_and_still_projects_onto_other_units():
    from supertask.graph.quanta import _project_all

    ids = [DataId(instrument="Cam", visit=1, detector=d) for d in (2, 1)]
    keys = frozenset(ids[0])
    same = _project_all(ids, ("detector", "instrument", "visit"), keys)
    assert same == ids and all(a is b for a, b in zip(same, ids, strict=True)) and same is not ids
    assert _project_all(ids, ("instrument", "visit"), keys) == [DataId(instrument="Cam", visit=1)] * 2
    with pytest.raises(KeyError, match="no value for unit 'tract'"):
        _project_all(ids, ("tract",), keys)


VISIT_FLAG = DatasetType("visitFlag", ("instrument", "visit"), "Table")
CHECKED = DatasetType("checked", ("instrument", "visit", "detector"), "Table")


@pytest.mark.parametrize("order", [("raw", "calexp"), ("calexp", "raw")])
def test_a_quantum_missing_several_inputs_is_pruned_naming_the_first_in_input_order(order):
    types = {"raw": RAW, "calexp": CALEXP}
    check = FakeTask(
        "check",
        ("instrument", "visit", "detector"),
        {name: types[name] for name in order},
        {"checked": CHECKED, "visitFlag": VISIT_FLAG},
    )
    pipeline = make_pipeline(with_summary=False, with_warp=False)
    pipeline.tasks.append(check)
    repo = FakeRepoGraph(where=lambda row: True, raws=(1, 2, 3))
    quanta = define_all(QuantumGraphBuilder(pipeline), repo)
    assert detectors(quanta["check"]) == [1, 2, 3]
    for q in quanta["check"]:
        assert list(q.inputs) == list(order)
        assert [d.dataId for d in q.inputs["calexp"]] == [q.dataId]
        assert (
            q.inputs["calexp"][0]
            is next(c for c in quanta["calibrate"] if c.dataId == q.dataId).outputs["calexp"][0]
        )
        assert list(q.outputs) == ["checked", "visitFlag"]
        assert [d.dataId for d in q.outputs["checked"]] == [q.dataId]
        assert [d.dataId for d in q.outputs["visitFlag"]] == [DataId(instrument="Cam", visit=1)]
    record = quanta["_prunes"]["check"]
    assert record.count == 1
    assert f"no {order[0]!r} exists" in record.examples[0] and "detector: 4" in record.examples[0]


def test_a_task_without_inputs_gets_one_quantum_per_data_id_with_its_outputs():
    make = FakeTask("make", ("instrument", "visit", "detector"), {}, {"checked": CHECKED})
    repo = FakeRepoGraph(where=lambda row: True)
    quanta = define_all(QuantumGraphBuilder(FakePipeline([make])), repo)
    assert detectors(quanta["make"]) == [1, 2, 3, 4]
    for q in quanta["make"]:
        assert q.inputs == {} and [d.dataId for d in q.outputs["checked"]] == [q.dataId]
    assert not quanta["_prunes"]


def test_a_produced_input_indexed_by_the_quanta_data_ids_is_found_without_hashing_them(monkeypatch):
    from supertask.graph.quanta import PlannedRepoGraph

    ids = [DataId(instrument="Cam", visit=1, detector=d) for d in (1, 2, 3)]
    produced = {d: Dataset(CALEXP, d) for d in ids}
    view = PlannedRepoGraph(FakeRepoGraph(where=lambda row: True), {}, {"calexp": produced}, {})

    def refuse(self):
        raise AssertionError("a data ID was hashed")

    with monkeypatch.context() as m:
        m.setattr(DataId, "__hash__", refuse)
        found = view._existingOrPlannedList(CALEXP, ids)
    assert all(f is produced[d] for f, d in zip(found, ids, strict=True))
    # any other list of data IDs is looked up one by one, still aligned with it
    other = [
        ids[2],
        DataId(instrument="Cam", visit=1, detector=1),
        DataId(instrument="Cam", visit=1, detector=4),
    ]
    assert view._existingOrPlannedList(CALEXP, other) == [produced[ids[2]], produced[ids[0]], None]


def test_gathered_inputs_are_looked_up_grouped_by_the_keys_quanta_share_with_them():
    from supertask.graph.quanta import _locality_order

    # makeWarp-like quanta sorted by patch first; each gathers the calexps of its visit
    quanta = [
        DataId(instrument="Cam", patch=p, skymap="sky", tract=0, visit=v) for p in (0, 1, 2) for v in (7, 5)
    ]
    keys = frozenset(quanta[0])
    toKeys = frozenset(("instrument", "visit", "detector"))
    many = [[DataId(instrument="Cam", visit=q["visit"], detector=d) for d in range(8)] for q in quanta]
    order = _locality_order(quanta, many, keys, toKeys)
    assert order is not None and sorted(order) == list(range(len(quanta)))
    assert [quanta[i]["visit"] for i in order] == [5, 5, 5, 7, 7, 7]
    assert [quanta[i]["patch"] for i in order] == [0, 1, 2, 0, 1, 2]  # (stable within a visit)
    few = [ids[:7] for ids in many]  # fewer than 8 per quantum: not worth the sort
    assert _locality_order(quanta, few, keys, toKeys) is None
    assert _locality_order(quanta, many, keys, frozenset(("detector",))) is None  # nothing shared
    assert _locality_order(quanta, many, keys, keys | {"detector"}) is None  # every key shared
    assert _locality_order(quanta, many, None, toKeys) is None
