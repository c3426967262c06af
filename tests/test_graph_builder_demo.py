"""Preflight on the demo repository: counts of quanta and edges follow from the demo data.

The expected numbers are derived here from the registry's overlap relation directly,
independently of the builder's planning code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from demo_drp.data import make_demo_repo

from supertask.cli.main import main as supertask_cli
from supertask.execution import run_graph
from supertask.graph.builder import EmptyGraphError, QueryTooLargeError, build_quantum_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.pipeline import Pipeline
from supertask.repo.butler import Butler

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
INPUTS = ["DemoCam/defaults"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-preflight") / "repo"
    make_demo_repo(root, n_exposures=3)
    return root


def build(repo: Path, where: str, run: str = "plan", **kwargs):
    butler = Butler(repo, collections=INPUTS)
    return build_quantum_graph(
        Pipeline.fromFile(PIPELINE), butler, where=where, input_collections=INPUTS, output_run=run, **kwargs
    )


def overlaps(repo: Path, where: str) -> set[tuple[int, int, int]]:
    """(visit, detector, patch) rows of the overlap relation selected by ``where``."""
    registry = Butler(repo, collections=INPUTS).registry
    rows = registry.queryDataIds(["visit", "detector", "tract", "patch"], where=where)
    return {(r["visit"], r["detector"], r["patch"]) for r in rows}


def test_tile_graph_counts_follow_from_the_overlaps(repo):
    graph, report = build(repo, "tract = 0")
    rows = overlaps(repo, "tract = 0")
    visit_detectors = {(v, d) for v, d, _ in rows}
    visit_patches = {(v, p) for v, _, p in rows}
    registry = Butler(repo, collections=INPUTS).registry
    bands = {r["visit"]: r["band"] for r in registry.queryDataIds(["visit", "band"])}
    patch_bands = {(p, bands[v]) for v, p in visit_patches}

    counts = {label: len(quanta) for label, quanta in graph.quantaByLabel().items()}
    assert counts == {
        "isr": len(visit_detectors),  # one exposure per visit in the demo
        "calibrate": len(visit_detectors),
        "makeWarp": len(visit_patches),
        "assembleCoadd": len(patch_bands),
        "detectCoadd": len(patch_bands),
    }
    # edges: every overlapping (visit, detector) feeds the warp of each patch it overlaps ...
    by_label = graph.quantaByLabel()
    assert sum(len(q.inputs["calexp"]) for q in by_label["makeWarp"]) == len(rows)
    # ... and every warp feeds exactly one coadd (its visit's band)
    assert sum(len(q.inputs["warp"]) for q in by_label["assembleCoadd"]) == len(visit_patches)
    for quantum in by_label["makeWarp"]:
        parents = graph.parents(quantum)
        assert {p.taskLabel for p in parents} == {"calibrate"}
        assert len(parents) == len(quantum.inputs["calexp"])
    assert report.rows > 0 and not report.pruned


def test_constraining_the_detector_does_not_drop_the_other_detectors_a_patch_needs(repo):
    rows = overlaps(repo, "tract = 0")
    constrained = overlaps(repo, "tract = 0 AND detector = 1")
    graph, report = build(repo, "tract = 0 AND detector = 1")
    by_label = graph.quantaByLabel()
    warps = {(q.dataId["visit"], q.dataId["patch"]) for q in by_label["makeWarp"]}
    assert warps == {(v, p) for v, _, p in constrained}
    for quantum in by_label["makeWarp"]:
        v, p = quantum.dataId["visit"], quantum.dataId["patch"]
        expected = {d for (vv, d, pp) in rows if vv == v and pp == p}
        assert {d.dataId["detector"] for d in quantum.inputs["calexp"]} == expected
    calibrated = {q.dataId["detector"] for q in by_label["calibrate"]}
    assert calibrated > {1}, "detectors other than 1 are calibrated because the patches need them"
    assert report.expanded["calibrate"] > 0


def test_skip_existing_plans_only_what_is_missing(repo):
    run = "plan/skip"
    graph, _ = build(repo, "tract = 0", run=run)
    isr_ids = [q.id for q in graph.quantaByLabel()["isr"]]
    butler = Butler(repo, collections=INPUTS)
    result = run_graph(butler, graph.subgraph(isr_ids), run, processes=2)
    assert result.ok
    again, report = build(repo, "tract = 0", run=run, skip_existing=True)
    assert "isr" not in again.quantaByLabel()
    assert report.skipped_existing["isr"] == len(isr_ids)
    assert len(again.quantaByLabel()["calibrate"]) == len(graph.quantaByLabel()["calibrate"])
    # the calibrations read the postISRCCD datasets that already exist in the run
    inputs = [d for q in again.quantaByLabel()["calibrate"] for d in q.inputs["postISRCCD"]]
    assert inputs and all(d.run == run and d.id is not None for d in inputs)


def test_planning_into_a_run_holding_outputs_is_refused_unless_an_option_says_what_to_do(repo, tmp_path):
    from supertask.repo.registry import OutputExistsError, RunConflictError

    run = "plan/guard"
    graph, _ = build(repo, "tract = 0", run=run)
    done = graph.quantaByLabel()["isr"][:2]
    butler = Butler(repo, collections=INPUTS)
    assert run_graph(butler, graph.subgraph([q.id for q in done]), run, processes=1).ok
    with pytest.raises(
        OutputExistsError, match=r"2 quanta would write outputs already registered.*--skip-existing"
    ):
        build(repo, "tract = 0", run=run)
    # --extend-run and --skip-existing leave the done quanta out
    for option in ("extend_run", "skip_existing"):
        again, report = build(repo, "tract = 0", run=run, **{option: True})
        assert report.skipped_existing["isr"] == 2
    # --skip-existing-in: another RUN's outputs count as done; consumers read them from there
    other, report = build(repo, "tract = 0", run="plan/guard-2", skip_existing_in=[run])
    assert report.skipped_existing["isr"] == 2
    reused = [d for q in other.quantaByLabel()["calibrate"] for d in q.inputs["postISRCCD"] if d.run == run]
    assert len(reused) == 2
    # --clobber-outputs keeps them in the plan (the run unregisters the old outputs first)
    clobber, _ = build(repo, "tract = 0", run=run, clobber_outputs=True)
    assert len(clobber.quantaByLabel()["isr"]) == len(graph.quantaByLabel()["isr"])
    # another config into the same RUN: refused, whatever the options
    changed = Pipeline.fromFile(PIPELINE)
    changed.applyConfigOverrides({"calibrate": ["minMatches=6"]})
    with pytest.raises(RunConflictError, match="made with a different (pipeline|task configs)"):
        build_quantum_graph(
            changed, butler, where="tract = 0", input_collections=INPUTS, output_run=run, skip_existing=True
        )
    # the command line says it in one line
    result = CliRunner().invoke(
        supertask_cli,
        [
            "qgraph",
            str(repo),
            "-p",
            str(PIPELINE),
            "-i",
            INPUTS[0],
            "-o",
            run,
            "-d",
            "tract = 0",
            "--save",
            str(tmp_path / "g.qgraph"),
        ],
    )
    assert result.exit_code == 1
    assert "already registered" in result.output and "Traceback" not in result.output
    # and so does bps prepare, which plans the same way
    from bps.cli import main as bps_main

    config = tmp_path / "submit.yaml"
    config.write_text(
        f"pipeline: {PIPELINE}\nrepo: {repo}\ninput_collections: [{INPUTS[0]}]\noutput_run: {run}\n"
        f"where: tract = 0\nsubmit_dir: {tmp_path / 'submit'}\n"
    )
    prepared = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert prepared.exit_code == 1, prepared.output
    assert "already registered" in prepared.output and "Traceback" not in prepared.output


def test_an_empty_graph_says_which_constraint_emptied_it(repo):
    with pytest.raises(EmptyGraphError, match="tract"):
        build(repo, "tract = 0 AND visit = 99999")


def test_a_planning_query_over_the_limit_is_refused_with_the_fix(repo):
    with pytest.raises(QueryTooLargeError, match=r"--max-rows"):
        build(repo, "tract = 0", max_rows=3)


def test_qgraph_command_builds_saves_and_shows(repo, tmp_path):
    runner = CliRunner()
    save = tmp_path / "tile.qgraph"
    dot = tmp_path / "tile.dot"
    plan = ["qgraph", str(repo), "-p", str(PIPELINE), "-i", INPUTS[0], "-o", "cli/run", "--where"]
    result = runner.invoke(supertask_cli, [*plan, "tract = 0", "--save", str(save), "--dot", str(dot)])
    assert result.exit_code == 0, result.output
    graph = QuantumGraph.load(save)
    assert len(graph) > 0 and graph.metadata["where"] == "tract = 0"
    assert "makeWarp" in dot.read_text()
    shown = runner.invoke(supertask_cli, ["qgraph", "show", str(save)])
    assert shown.exit_code == 0 and "assembleCoadd" in shown.output
    one = runner.invoke(supertask_cli, ["qgraph", "show", str(save), "--quantum", "0"])
    assert one.exit_code == 0 and "outputs" in one.output
    empty = runner.invoke(supertask_cli, [*plan, "visit = 99999", "--save", str(tmp_path / "none.qgraph")])
    assert empty.exit_code == 1 and "empty" in empty.output


def test_a_pipeline_built_in_python_is_checked_like_a_pipeline_file(repo):
    from supertask.pipeline.errors import PipelineError

    undeclared = Pipeline.fromFile(PIPELINE)
    undeclared.inputs = []  # as if built in Python without declaring what comes from the repository
    butler = Butler(repo, collections=INPUTS)
    with pytest.raises(PipelineError, match="top-level 'inputs:' list"):
        build_quantum_graph(
            undeclared, butler, where="tract = 0", input_collections=INPUTS, output_run="plan"
        )


def one_object_per_dataset(graph: QuantumGraph) -> bool:
    """Whether every (type name, data ID) of the graph is one object, linked to its quanta."""
    objects: dict[object, set[int]] = {}
    for quantum in graph:
        for dataset in quantum.iterInputs():
            objects.setdefault(dataset.key, set()).add(id(dataset))
            assert quantum in dataset.consumers
        for dataset in quantum.iterOutputs():
            objects.setdefault(dataset.key, set()).add(id(dataset))
            assert dataset.creator is quantum
    return all(len(ids) == 1 for ids in objects.values())


def test_default_tasks_hand_over_shared_datasets_so_the_graph_links_them_by_identity(repo, monkeypatch):
    import supertask.graph.quantum_graph as quantum_graph

    def no_sharing_pass(quanta):
        raise AssertionError("the builder's quanta went through the sharing pass")

    monkeypatch.setattr(quantum_graph, "_share_and_link", no_sharing_pass)
    graph, _ = build(repo, "tract = 0")
    assert len(graph) > 0 and one_object_per_dataset(graph)


def test_a_task_with_its_own_defineQuanta_gets_its_equal_datasets_shared(repo, monkeypatch):
    from demo_drp.tasks import MakeWarpTask

    from supertask.repo.dataset import Dataset

    default = MakeWarpTask.defineQuanta

    def copying(self, repoGraph):
        # a custom defineQuanta that builds its own (equal, distinct) input objects
        quanta = default(self, repoGraph)
        for quantum in quanta:
            for name, datasets in quantum.inputs.items():
                quantum.inputs[name] = [
                    Dataset(d.datasetType, d.dataId, id=d.id, run=d.run) for d in datasets
                ]
        return quanta

    monkeypatch.setattr(MakeWarpTask, "defineQuanta", copying)
    graph, _ = build(repo, "tract = 0")
    assert one_object_per_dataset(graph)
    for quantum in graph.quantaByLabel()["makeWarp"]:
        assert {p.taskLabel for p in graph.parents(quantum)} == {"calibrate"}


def test_preflight_drops_the_repository_graphs_lookup_tables_once_planned(repo, monkeypatch):
    import supertask.repo.repograph as repograph

    made = []
    original = repograph.makeRepoGraph

    def keeping(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    sizes = []
    release = repograph.RepoGraph.releaseLookupTables

    def recording(self):
        sizes.append(sum(len(table) for table in self._interned.values()))
        release(self)

    monkeypatch.setattr(repograph, "makeRepoGraph", keeping)
    monkeypatch.setattr(repograph.RepoGraph, "releaseLookupTables", recording)
    graph, _ = build(repo, "tract = 0")
    assert len(graph) > 0
    assert sizes[0] > 0  # planning's look-ups filled them, and they went before defineQuanta
    assert not made[0]._interned


def _kept_repo_graphs(monkeypatch) -> list:
    import supertask.repo.repograph as repograph

    made: list = []
    original = repograph.makeRepoGraph

    def keeping(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(repograph, "makeRepoGraph", keeping)
    return made


def test_preflight_drops_the_planning_rows_and_dataset_index_and_plans_the_same_graph(repo, monkeypatch):
    from supertask.graph.builder import QuantumGraphBuilder

    made = _kept_repo_graphs(monkeypatch)
    graph, report = build(repo, "tract = 0")
    assert len(graph) > 0 and report.rows > 0
    assert not made[0]._rowValues and len(made[0].rows) == report.rows
    with pytest.raises(RuntimeError, match="released"):  # and its dataset index, once quanta were defined
        made[0].findDatasets("calexp", [])
    # the same graph as a builder that keeps the rows
    import supertask.repo.repograph as repograph

    butler = Butler(repo, collections=INPUTS)
    builder = QuantumGraphBuilder(Pipeline.fromFile(PIPELINE), None)
    fresh = repograph.makeRepoGraph(
        butler, builder.inputDatasetTypes, builder.outputDatasetTypes, "tract = 0", collections=INPUTS
    )
    other = builder.makeGraph(fresh)
    assert fresh._rowValues and fresh.datasets["calexp"]  # makeGraph keeps them unless told otherwise
    assert [(q.taskLabel, q.dataId) for q in other] == [(q.taskLabel, q.dataId) for q in graph]


def test_preflight_keeps_the_rows_for_a_task_with_its_own_defineQuanta(repo, monkeypatch):
    from demo_drp.tasks import MakeWarpTask

    default = MakeWarpTask.defineQuanta
    monkeypatch.setattr(MakeWarpTask, "defineQuanta", lambda self, repoGraph: default(self, repoGraph))
    made = _kept_repo_graphs(monkeypatch)
    graph, _ = build(repo, "tract = 0")
    assert len(graph) > 0 and made[0]._rowValues  # a custom defineQuanta may read them


def test_preflight_indexes_produced_outputs_in_its_repo_graphs_index_not_a_second_dict(repo, monkeypatch):
    import supertask.repo.repograph as repograph

    indexes: dict = {}
    original = repograph.RepoGraph.datasetIndex

    def recording(self, typeName):
        indexes[typeName] = original(self, typeName)
        return indexes[typeName]

    monkeypatch.setattr(repograph.RepoGraph, "datasetIndex", recording)
    graph, _ = build(repo, "tract = 0")
    produced = {id(d) for q in graph for d in q.iterOutputs()}
    assert set(indexes) == {d.datasetType.name for q in graph for d in q.iterOutputs()}
    assert {id(d) for index in indexes.values() for d in index.values()} == produced


def test_preflight_returns_the_freed_heap_to_the_system_once_the_datasets_are_released(repo, monkeypatch):
    import supertask.graph.builder as builder_module
    import supertask.graph.quantum_graph as quantum_graph_module

    made = _kept_repo_graphs(monkeypatch)
    steps: list[str] = []
    trim = builder_module.trim_heap
    monkeypatch.setattr(
        builder_module,
        "trim_heap",
        lambda: (
            steps.append("trim released" if made and not made[0]._datasetIndex else "trim early") or trim()
        ),
    )
    link = quantum_graph_module._link_unlinked
    monkeypatch.setattr(quantum_graph_module, "_link_unlinked", lambda q: steps.append("link") or link(q))
    graph, _ = build(repo, "tract = 0")
    assert len(graph) > 0
    assert steps == ["trim released", "link"]  # once, after the release, before the linking


def test_trim_heap_returns_freed_heap_pages_where_the_c_library_can():
    import ctypes

    from supertask.heap_trim import trim_heap

    if not hasattr(ctypes.CDLL(None), "malloc_trim"):
        pytest.skip("this C library has no malloc_trim")
    blocks = [bytearray(64 * 1024) for _ in range(64)]  # from the heap, below the mapping threshold
    del blocks[:-1]
    assert trim_heap() is True


def test_trim_heap_does_nothing_without_malloc_trim(monkeypatch):
    import ctypes

    from supertask.heap_trim import trim_heap

    def no_library(name):
        raise OSError(f"no C library {name!r} here")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert trim_heap() is False


def test_gathered_inputs_are_the_same_whatever_order_they_are_looked_up_in(repo, monkeypatch):
    import supertask.graph.quanta as quanta_module

    def describe(graph):
        return [
            (q.taskLabel, q.dataId, {k: [d.dataId for d in v] for k, v in q.inputs.items()}) for q in graph
        ]

    monkeypatch.setattr(quanta_module, "_GROUP_FROM", 1)  # (the demo's warps gather a few calexps each)
    calls: list[object] = []
    grouped = quanta_module._locality_order
    monkeypatch.setattr(
        quanta_module, "_locality_order", lambda *args: calls.append(grouped(*args)) or calls[-1]
    )
    reordered, _ = build(repo, None)
    assert any(order is not None for order in calls)  # the demo's warps gather enough to be grouped
    monkeypatch.setattr(quanta_module, "_locality_order", lambda *args: None)
    plain, _ = build(repo, None)
    assert describe(reordered) == describe(plain)
