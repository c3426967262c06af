"""Dataset schemas: declared by tasks, passed to later tasks' constructors, recorded once per RUN.

The toy of ``support.schema_toy``: ``catalog`` writes ``cat`` tables and declares their
columns; ``summary`` reads the schema of ``cat`` in its constructor and reports the columns
it was given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from support.schema_toy import (
    BASE_COLUMNS,
    EXTRA_COLUMN_VARIABLE,
    TASKS_PYTHONPATH,
    SummaryTask,
    pipeline_yaml,
)

from supertask.execution import run_graph
from supertask.execution.schema_outputs import graph_schemas, recorded_schemas, write_schemas
from supertask.graph.builder import GraphBuilderError, build_quantum_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.pipeline import Pipeline, PipelineError
from supertask.repo.butler import Butler
from supertask.repo.dataset import DatasetType
from supertask.schemas import DatasetSchema, SchemaConflictError, SchemaError, SchemaSource

SEED = DatasetType("seed", ("instrument", "detector"), "StructuredDataDict")
DETECTORS = (0, 1, 2)
RUN = "u/test/schemas"
BASE = DatasetSchema(BASE_COLUMNS)
EXTRA = DatasetSchema([*BASE_COLUMNS, ("extra", "<f4")])


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    Butler.create(root).close()
    butler = Butler(root, run="seeds")
    try:
        butler.registry.insertUnits("instrument", [{"instrument": "Cam", "detector_max": len(DETECTORS)}])
        butler.registry.insertUnits(
            "detector", [{"instrument": "Cam", "detector": d, "full_name": f"D{d}"} for d in DETECTORS]
        )
        for d in DETECTORS:
            butler.put({"detector": d, "value": 10 * d}, SEED, {"instrument": "Cam", "detector": d})
    finally:
        butler.close()
    return root


def plan(repo: Path, run: str = RUN, labels: tuple[str, ...] = ("catalog", "summary")) -> QuantumGraph:
    butler = Butler(repo, collections=["seeds"])
    try:
        graph, _ = build_quantum_graph(
            Pipeline.fromYaml(pipeline_yaml(labels=labels)),
            butler,
            input_collections=["seeds"],
            output_run=run,
        )
        return graph
    finally:
        butler.close()


def run(repo: Path, graph: QuantumGraph, run: str = RUN, **kwargs):
    butler = Butler(repo, collections=["seeds"])
    try:
        return run_graph(butler, graph, run, **kwargs)
    finally:
        butler.close()


def summary_of(repo: Path, run: str = RUN) -> dict:
    butler = Butler(repo, collections=[run])
    try:
        (dataset,) = butler.registry.queryDatasets("summary", [run])
        return butler.get(dataset)
    finally:
        butler.close()


def schemas_in(repo: Path, run: str = RUN) -> dict[str, DatasetSchema]:
    butler = Butler(repo, collections=[run])
    try:
        return recorded_schemas(butler, run, ["cat"])
    finally:
        butler.close()


# -- the schema object ---------------------------------------------------------------------------


def test_schema_round_trips_through_numpy_and_json():
    dtype = np.dtype([("id", "<i8"), ("flux", "<f8"), ("ok", "?")])
    schema = DatasetSchema.from_dtype(dtype)
    assert schema.to_dtype() == dtype
    assert DatasetSchema.from_json(schema.to_json()) == schema
    assert DatasetSchema.from_dtype(np.zeros(2, dtype=dtype)) == schema


def test_schema_difference_names_the_columns():
    assert EXTRA.difference(BASE) == "new columns ['extra']"
    assert BASE.difference(EXTRA) == "missing columns ['extra']"
    changed = DatasetSchema([("id", "<i4"), ("flux", "<f8")])
    assert changed.difference(BASE) == "changed types ['id <i8 -> <i4']"
    assert BASE.difference(BASE) == ""


def test_malformed_schemas_are_refused_with_what_a_schema_is():
    with pytest.raises(SchemaError, match="structured dtype"):
        DatasetSchema.from_dtype(np.dtype("<f8"))
    with pytest.raises(SchemaError, match="duplicate"):
        DatasetSchema([("a", "<f8"), ("a", "<i8")])
    with pytest.raises(SchemaError, match=r"\(name, dtype string\) pair"):
        DatasetSchema([("a",)])


# -- construction ----------------------------------------------------------------------------------


def test_later_task_constructor_receives_the_schema_an_earlier_task_declares(monkeypatch):
    monkeypatch.setenv(EXTRA_COLUMN_VARIABLE, "1")
    tasks = Pipeline.fromYaml(pipeline_yaml()).makeTasks()
    summary = tasks[1]
    assert summary.inputSchema("cat") == EXTRA
    assert summary.columns == ["id", "flux", "extra"]


def test_task_made_alone_takes_its_input_schemas_directly_or_says_how():
    assert SummaryTask(inputSchemas={"cat": BASE}).columns == ["id", "flux"]
    assert SummaryTask(butler=SchemaSource({"cat": BASE})).columns == ["id", "flux"]
    with pytest.raises(SchemaError, match=r"needs the schema of its input 'cat'.*inputSchemas="):
        SummaryTask()


def test_pipeline_without_schema_readers_never_asks_for_schemas(monkeypatch):
    """Constructing tasks that read no schema costs nothing more: getDatasetSchemas is not called."""
    from support.schema_toy import CatalogTask

    calls = []
    monkeypatch.setattr(CatalogTask, "getDatasetSchemas", lambda self: calls.append(self) or {})
    Pipeline.fromYaml(pipeline_yaml(labels=("catalog",))).makeTasks()
    assert calls == []


def test_demo_catalogue_tasks_declare_their_table_schemas():
    from demo_drp.calibrate import SRC_DTYPE
    from demo_drp.coadd import COADD_SRC_DTYPE
    from demo_drp.tasks import CalibrateTask, DetectCoaddTask

    assert CalibrateTask().getDatasetSchemas() == {"src": DatasetSchema.from_dtype(SRC_DTYPE)}
    assert DetectCoaddTask().getDatasetSchemas() == {
        "deepCoadd_src": DatasetSchema.from_dtype(COADD_SRC_DTYPE)
    }


# -- planning --------------------------------------------------------------------------------------


def test_graph_records_the_schemas_its_run_writes_and_keeps_them_in_the_file(repo, tmp_path):
    graph = plan(repo)
    schemas, outputs = graph_schemas(graph.metadata)
    assert schemas == {"cat": BASE} and outputs == {"cat"}
    graph.save(tmp_path / "g.qgraph")
    assert graph_schemas(QuantumGraph.load(tmp_path / "g.qgraph").metadata) == ({"cat": BASE}, {"cat"})


def test_schema_keyed_by_something_not_an_output_is_refused(repo, monkeypatch):
    from support.schema_toy import CatalogTask

    monkeypatch.setattr(CatalogTask, "getDatasetSchemas", lambda self: {"catt": BASE})
    with pytest.raises(GraphBuilderError, match=r"names 'catt', which is not one of its outputs \['cat'\]"):
        plan(repo, labels=("catalog",))


def test_planning_into_a_run_with_another_schema_is_refused(repo, monkeypatch):
    """Same pipeline and configs, but the task's code now writes another column."""
    run(repo, plan(repo))
    monkeypatch.setenv(EXTRA_COLUMN_VARIABLE, "1")
    with pytest.raises(SchemaConflictError, match=r"cat: new columns \['extra'\].*cannot mix schemas"):
        plan(repo, run=RUN)


def test_overall_input_schema_is_read_from_the_input_collections(repo):
    run(repo, plan(repo))
    butler = Butler(repo)  # the input collections of the request are searched, not the butler's
    try:
        graph, _ = build_quantum_graph(
            Pipeline.fromYaml(pipeline_yaml(labels=("summary",))),
            butler,
            input_collections=[RUN],
            output_run="u/test/second",
        )
    finally:
        butler.close()
    assert graph_schemas(graph.metadata) == ({"cat": BASE}, set())
    with pytest.raises(PipelineError, match=r"no cat_schema dataset in collections \['seeds'\]"):
        plan_summary_only = Pipeline.fromYaml(pipeline_yaml(labels=("summary",)))
        butler = Butler(repo, collections=["seeds"])
        try:
            build_quantum_graph(plan_summary_only, butler, input_collections=["seeds"], output_run="u/x")
        finally:
            butler.close()


# -- supertask run ---------------------------------------------------------------------------------


def test_run_records_each_schema_once_and_the_consumer_gets_it(repo):
    result = run(repo, plan(repo), processes=2)
    assert result.ok
    assert schemas_in(repo) == {"cat": BASE}
    assert summary_of(repo) == {"rows": sum(10 * d % 5 + 1 for d in DETECTORS), "columns": ["id", "flux"]}
    butler = Butler(repo, collections=[RUN])
    try:
        assert len(list(butler.registry.queryDatasets("cat_schema", [RUN]))) == 1
        assert butler.getSchema("cat") == BASE
        # a second writer of the same schemas writes nothing
        assert write_schemas(butler, RUN, {"cat": BASE}) == []
    finally:
        butler.close()


def test_saved_graph_runs_with_the_schemas_it_was_planned_with(repo, tmp_path):
    plan(repo).save(tmp_path / "g.qgraph")
    graph = QuantumGraph.load(tmp_path / "g.qgraph")
    assert run(repo, graph).ok
    assert summary_of(repo)["columns"] == ["id", "flux"]


def test_running_a_graph_with_another_schema_into_the_run_is_refused_before_any_quantum(repo, monkeypatch):
    run(repo, plan(repo))
    monkeypatch.setenv(EXTRA_COLUMN_VARIABLE, "1")
    other = plan(repo, run="u/test/other")
    with pytest.raises(SchemaConflictError, match=r"RUN 'u/test/schemas' records other schemas.*extra"):
        run(repo, other, RUN, extend_run=True)
    assert schemas_in(repo) == {"cat": BASE}


def test_supertask_cli_reports_a_schema_conflict_in_one_line(repo, tmp_path, monkeypatch):
    from supertask.cli.main import main

    run(repo, plan(repo))
    monkeypatch.setenv(EXTRA_COLUMN_VARIABLE, "1")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(pipeline_yaml())
    result = CliRunner().invoke(
        main,
        [
            "qgraph",
            "build",
            str(repo),
            "-p",
            str(pipeline),
            "-i",
            "seeds",
            "-o",
            RUN,
            "--extend-run",
            "--save",
            str(tmp_path / "g.qgraph"),
        ],
    )
    assert result.exit_code == 1
    assert "cannot mix schemas" in result.output and "Traceback" not in result.output


# -- bps -------------------------------------------------------------------------------------------


def _submit_yaml(tmp_path: Path, repo: Path, graph: Path, name: str, run: str = RUN) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "qgraph": str(graph),
                "repo": str(repo),
                "output_run": run,
                "submit_dir": str(tmp_path / "submit" / name),
                "compute_site": "local",
            }
        )
    )
    return config


def test_bps_local_run_writes_schemas_once_in_the_final_job(repo, tmp_path, monkeypatch):
    from bps.cli import main as bps_main

    monkeypatch.setenv("PYTHONPATH", TASKS_PYTHONPATH)
    plan(repo).save(tmp_path / "g.qgraph")
    config = _submit_yaml(tmp_path, repo, tmp_path / "g.qgraph", "first")
    result = CliRunner().invoke(bps_main, ["submit", str(config), "-j", "2"])
    assert result.exit_code == 0, result.output
    assert schemas_in(repo) == {"cat": BASE}
    assert summary_of(repo)["columns"] == ["id", "flux"]


def test_bps_prepare_refuses_a_graph_whose_schema_differs_from_the_runs(repo, tmp_path, monkeypatch):
    from bps.cli import main as bps_main

    run(repo, plan(repo))
    monkeypatch.setenv(EXTRA_COLUMN_VARIABLE, "1")
    plan(repo, run=RUN + "/x").save(tmp_path / "other.qgraph")
    config = _submit_yaml(tmp_path, repo, tmp_path / "other.qgraph", "other")
    result = CliRunner().invoke(bps_main, ["prepare", str(config)])
    assert result.exit_code != 0
    assert "cannot mix schemas" in result.output and "Traceback" not in result.output
