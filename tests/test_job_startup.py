"""What a batch job pays before its quantum runs: the modules it imports and the files it parses.

Every job of a workflow starts a fresh interpreter, so its fixed cost is paid once per job
(see ``benchmarks/bench_run_quantum.py`` for the figures). These tests keep what a job
imports to what it needs: no YAML parser (the pipeline comes from the graph header's JSON
form, the repository config is JSON-form YAML), no workflow model, no executor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.trivial_job import make_trivial_job

from supertask.graph.quantum_graph import QuantumGraph
from supertask.pipeline import Pipeline
from supertask.pipeline.yaml_io import load_pipeline_json, pipeline_json
from supertask.repo.butler import Butler
from supertask.repo.repo_config import read_repo_config

ROOT = Path(__file__).resolve().parents[1]

#: modules a job must not import: each costs every job of a workflow its import time
NOT_IMPORTED = (
    "yaml",
    "bps.workflow",
    "supertask.execution.executor",
    "multiprocessing",
    "socket",
    "uuid",
    "sqlalchemy",
    "pydantic",
    "dataclasses",
    "inspect",
    "hashlib",
    "signal",
    # re-exports of the supertask package, and YAML error messages: never used by a job
    "supertask.lazy_exports",
    "supertask.yaml_errors",
    # tempfile (with random) and shutil (with bz2, lzma, zlib): bps.fs does a job's four calls
    "tempfile",
    "random",
    "shutil",
    "bz2",
    "lzma",
    "zlib",
    # argparse (with gettext and locale): a plain command line is read without it
    "argparse",
    "gettext",
    "locale",
    # pickle.py (the C _pickle it re-exports is enough) and zstandard's package (its import
    # loads platform only to choose the C backend, which supertask.graph.zstd_import loads)
    "pickle",
    "zstandard",
    "platform",
)

#: runs ``bps.run_quantum`` as ``python -m`` does, then prints the modules it imported
PROBE = """
import json, runpy, sys
compiled = []  # source text compiled at run time (not a module file)
sys.addaudithook(lambda event, args: compiled.append(repr(args[0])) if event == "compile" and args[1] == "<string>" else None)
sys.argv = ["run_quantum", *sys.argv[1:]]
try:
    runpy.run_module("bps.run_quantum", run_name="__main__")
except SystemExit as exit:
    print(json.dumps({"code": exit.code, "modules": sorted(sys.modules), "compiled": compiled}))
"""


def _repo_and_graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, with_json: bool = True
) -> tuple[Path, Path, dict[str, str]]:
    repo, graph = make_trivial_job(
        tmp_path, "startup_tasks", 2, output_run="startup/run", with_json=with_json
    )
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    env = {"PYTHONPATH": f"{tmp_path / 'pkg'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    return repo, graph, env


def _run_job(tmp_path: Path, repo: Path, graph: Path, env: dict[str, str]) -> dict:
    argv = [
        "--graph",
        str(graph),
        "--quantum",
        "0",
        "--repo",
        str(repo),
        "--manifest-dir",
        str(tmp_path / "m"),
    ]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_job_imports_no_yaml_parser_workflow_model_or_executor(tmp_path, monkeypatch):
    repo, graph, env = _repo_and_graph(tmp_path, monkeypatch)
    result = _run_job(tmp_path, repo, graph, env)
    assert result["code"] == 0
    assert (repo / "startup" / "run").exists()
    imported = set(result["modules"])
    assert sorted(imported & set(NOT_IMPORTED)) == []


def test_a_job_compiles_no_annotation(tmp_path, monkeypatch):
    # A string annotation of a NamedTuple field becomes a typing.ForwardRef, which calls
    # compile(): the first compile() of a process sets up the compiler (about 2.5 ms CPU).
    # The classes namedtuple makes are built by eval() of a lambda, which does not.
    repo, graph, env = _repo_and_graph(tmp_path, monkeypatch)
    result = _run_job(tmp_path, repo, graph, env)
    assert result["code"] == 0
    assert [text for text in result["compiled"] if not text.startswith("b'lambda _cls, ")] == []


def test_a_graph_without_the_json_pipeline_is_still_run_through_its_yaml(tmp_path, monkeypatch):
    repo, graph, env = _repo_and_graph(tmp_path, monkeypatch, with_json=False)
    assert "pipelineJson" not in QuantumGraph.readHeader(graph)
    result = _run_job(tmp_path, repo, graph, env)
    assert result["code"] == 0 and "yaml" in result["modules"]


def test_the_json_pipeline_builds_the_same_tasks_as_the_yaml():
    text = Pipeline.fromFile(ROOT / "examples" / "demo_pipeline.yaml").toYaml()
    encoded = pipeline_json(text)
    assert encoded is not None and json.loads(encoded) == yaml.safe_load(text)
    from_yaml, from_json = Pipeline.fromYaml(text), load_pipeline_json(encoded, pipeline_class=Pipeline)
    assert list(from_json) == list(from_yaml)
    for label in from_yaml:
        assert from_json[label].classPath == from_yaml[label].classPath
        assert from_json[label].config.toDict() == from_yaml[label].config.toDict()


@pytest.mark.parametrize(
    "text",
    [
        "tasks:\n  a:\n    class: x.Y\n    config:\n      table: {1: 2}\n",  # an integer key
        "tasks:\n  a:\n    class: x.Y\n    config:\n      when: 2026-12-05\n",  # a date
        "tasks:\n  a:\n    class: x.Y\n    config:\n      v: .nan\n",  # NaN is not equal to itself
        "tasks: [unclosed\n",  # not YAML at all: the job reports it from the YAML
    ],
)
def test_no_json_form_when_json_cannot_hold_the_pipeline_exactly(text):
    assert pipeline_json(text) is None


def test_json_keeps_mapping_order():
    text = "tasks:\n  b:\n    class: x.B\n  a:\n    class: x.A\n"
    assert list(json.loads(pipeline_json(text))["tasks"]) == ["b", "a"]


def test_repository_config_is_written_as_json_form_yaml_and_read_in_any_yaml_style(tmp_path):
    Butler.create(tmp_path / "repo").close()
    text = (tmp_path / "repo" / "butler.yaml").read_text()
    assert yaml.safe_load(text) == read_repo_config(tmp_path / "repo")  # any YAML reader agrees
    assert json.loads("".join(line for line in text.splitlines(True) if not line.startswith("#")))
    config = read_repo_config(tmp_path / "repo")
    (tmp_path / "repo" / "butler.yaml").write_text(yaml.safe_dump(config))  # edited into block style
    assert read_repo_config(tmp_path / "repo") == config


def test_pipelines_read_the_same_whatever_another_library_did_to_pyyamls_loaders(monkeypatch):
    # Pegasus.api makes yaml.CSafeLoader read dates as strings for the whole process
    def as_string(loader, node):
        return loader.construct_scalar(node)

    monkeypatch.setattr(yaml.CSafeLoader, "yaml_constructors", dict(yaml.CSafeLoader.yaml_constructors))
    yaml.CSafeLoader.add_constructor("tag:yaml.org,2002:timestamp", as_string)
    assert pipeline_json("tasks:\n  a:\n    class: x.Y\n    config:\n      when: 2026-12-05\n") is None
