"""A batch run records in the registry what ``supertask run`` records, plus its submit config.

The final job (``bps finalize``) reads the pipeline, configs, versions, command line,
expression and inputs from the graph file's header, and the ``bps`` command and resolved
submit config from ``provenance.json``, which ``bps prepare`` writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main
from bps.finalize import finalize
from bps.provenance import PROVENANCE_FILE, _masked
from supertask.execution import run_graph
from supertask.graph.quantum_graph import QuantumGraph
from supertask.repo.butler import Butler

RUN = "u/test/prov"
TOY = ToyPipeline(run=RUN, detectors=(1, 2), seed_scale=10, multiplier=2)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    toy = TOY.set_up(tmp_path, monkeypatch, compute_site="local")
    return toy.repo, toy.submit_yaml


def _provenance(repo: Path, run: str) -> dict | None:
    butler = Butler(repo)
    try:
        return butler.registry.getRunProvenance(run)
    finally:
        butler.close()


def test_a_batch_run_records_what_supertask_run_records_and_its_submit_config(toy, monkeypatch):
    repo, config = toy
    cfg = config("batch")
    monkeypatch.setattr("sys.argv", ["/opt/venv/bin/bps", "submit", str(cfg), "-j", "2"])
    result = CliRunner().invoke(bps_main, ["submit", str(cfg), "-j", "2"])
    assert result.exit_code == 0, result.output
    batch = _provenance(repo, RUN)
    assert batch is not None
    # `supertask run` of the same graph into another RUN records these keys with these values
    graph = QuantumGraph.load(json.loads((submit_dir_of(cfg) / "workflow.json").read_text())["graph_file"])
    butler = Butler(repo, run="u/test/prov-run")
    try:
        run_graph(butler, graph, "u/test/prov-run", command_line="supertask run ...")
    finally:
        butler.close()
    direct = _provenance(repo, "u/test/prov-run")
    for key in ("pipeline", "configs", "versions", "where", "input_collections"):
        assert batch[key] == direct[key], key
    assert batch["pipeline"] and "support.toy_pipeline.MakeTask" in batch["pipeline"]
    assert batch["command_line"] == f"bps submit {cfg} -j 2"
    submit = batch["submit_config"]
    assert (submit["wms"], submit["output_run"], submit["repo"]) == ("local", RUN, str(repo))
    assert batch["submit_config_sources"]["output_run"] == str(cfg)


def test_a_restarted_batch_run_records_its_provenance_once(toy):
    repo, config = toy
    cfg = config("again", fail_detector=2, retry={"retries": 0})
    assert CliRunner().invoke(bps_main, ["submit", str(cfg), "-j", "2"]).exit_code == 1
    first = _provenance(repo, RUN)
    assert first is not None and "later_executions" not in first
    finalize(submit_dir_of(cfg))  # the final job again (a restart's): same provenance, nothing added
    assert _provenance(repo, RUN) == first


def test_without_its_graph_file_finalize_registers_and_says_provenance_was_not_recorded(toy):
    repo, config = toy
    cfg = config("nograph")
    assert CliRunner().invoke(bps_main, ["submit", str(cfg), "-j", "2"]).exit_code == 0
    submit_dir = submit_dir_of(cfg)
    graph = json.loads((submit_dir / "workflow.json").read_text())["graph_file"]
    shutil.move(graph, graph + ".moved")
    Butler(repo).registry  # noqa: B018 - the repository stays readable
    summary = finalize(submit_dir)
    assert summary.exit_code == 0 and summary.already_registered > 0
    assert summary.provenance_error.startswith("the run's provenance was not recorded:")
    assert "graph" in summary.provenance_error or graph in summary.provenance_error
    assert summary.provenance_error in summary.text()


def test_prepare_writes_the_bps_command_and_submit_config_with_passwords_masked(toy):
    repo, config = toy
    cfg = config("prepared")
    assert CliRunner().invoke(bps_main, ["prepare", str(cfg)]).exit_code == 0
    written = json.loads((submit_dir_of(cfg) / PROVENANCE_FILE).read_text())
    assert written["submit_config"]["output_run"] == RUN
    assert set(written) == {"bps_command_line", "submit_config", "submit_config_sources", "variables"}
    assert _masked({"repo": "postgresql://me:s3cret@db/x", "n": [1, "a"]}) == {
        "repo": "postgresql://me:***@db/x",
        "n": [1, "a"],
    }
