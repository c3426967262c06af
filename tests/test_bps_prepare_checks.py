"""`bps prepare` refuses a submit configuration that would not apply as written, saying why.

Toy pipeline: ``make`` per (instrument, detector), ``total`` per instrument.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support.toy_pipeline import ToyPipeline, submit_dir_of

from bps.cli import main as bps_main

TOY = ToyPipeline(run="u/test/checks", detectors=(1, 2), seed_scale=10, multiplier=2)


@pytest.fixture
def config(tmp_path, monkeypatch):
    return TOY.set_up(tmp_path, monkeypatch, compute_site="local").submit_yaml


def _prepare(path):
    return CliRunner().invoke(bps_main, ["prepare", str(path)])


def test_a_rule_whose_units_a_label_lacks_is_refused_naming_rule_label_and_units(config):
    rules = {"clusters": [{"name": "per_detector", "labels": ["make", "total"], "units": ["detector"]}]}
    result = _prepare(config("partial", clustering=rules))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (
        "clustering rule 'per_detector' groups by ['detector'], but task label 'total' has no 'detector' "
        "(its quanta have ['instrument']): they would stay single jobs" in result.output
    )
    assert "one rule per group of labels sharing units" in result.output


def test_a_resources_key_that_is_neither_a_label_nor_a_cluster_is_refused(config):
    cfg = config("typo", resources={"labels": {"coadd": {"memory_mb": 8192}}})
    result = _prepare(cfg)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"resources.labels.coadd ({cfg}) names no task label or cluster of this workflow" in result.output


def test_resources_of_a_cluster_name_reach_its_jobs(config):
    cfg = config(
        "cluster",
        clustering={"clusters": [{"name": "makes", "labels": ["make"], "units": ["instrument"]}]},
        resources={"labels": {"makes": {"memory_mb": 4096}}},
    )
    result = _prepare(cfg)
    assert result.exit_code == 0, result.output
    from bps.workflow_io import load_workflow

    jobs = load_workflow(submit_dir_of(cfg) / "workflow.json").jobs.values()
    memory = {job.label: job.resources.memory_mb for job in jobs}
    assert memory == {"makes": 4096, "total": 2048}


def test_a_graph_without_an_output_run_and_none_configured_is_refused(config):
    from supertask.graph.quantum_graph import QuantumGraph

    cfg = config("bare", output_run=None)
    qgraph = cfg.parent / "bare.qgraph"
    graph = QuantumGraph.load(qgraph)
    del graph.metadata["output_run"]
    graph.save(qgraph)
    result = _prepare(cfg)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "output_run is not set: give it in the submit YAML or on the command line" in result.output
