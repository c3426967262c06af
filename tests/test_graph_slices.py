"""Graph slices: some quanta of a .qgraph in a file of their own, read by id as from the graph;
and ``bps.slices``, which cuts a transfer-staged workflow's jobs into a few slices."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bps.slices import SLICE_DIR, write_job_slices
from bps.workflow import Job
from supertask.graph import file_format
from supertask.graph.file_format import GraphFileError
from supertask.graph.quantum_graph import QuantumGraph
from supertask.graph.slice_file import GraphRecords, SliceWriter

_spec = importlib.util.spec_from_file_location(
    "synthetic_graph", Path(__file__).parents[1] / "benchmarks" / "synthetic_graph.py"
)
synthetic_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic_graph)

N_QUANTA = 600


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    graph = QuantumGraph(
        synthetic_graph.synthetic_quanta(N_QUANTA),
        pipelineYaml=synthetic_graph.PIPELINE_YAML,
        configs=synthetic_graph.CONFIGS,
        metadata={"output_run": "u/test/slices", "schemas": {"outputs": {"src": [["id", "<i8"]]}}},
    )
    path = tmp_path_factory.mktemp("graph") / "run.qgraph"
    graph.save(path)
    return path


def describe(q) -> tuple:
    def datasets(by_type):
        return {k: [(d.dataId, d.id, d.run) for d in v] for k, v in by_type.items()}

    return (q.id, q.taskLabel, q.dataId, datasets(q.inputs), datasets(q.outputs))


def write_slice(saved: Path, path: Path, ids: list[int]) -> Path:
    with GraphRecords(saved) as source:
        writer = SliceWriter(path, source)
        for qid in ids:
            writer.add(qid)
        writer.close()
    return path


IDS = [517, 3, 44, 45, 46, 250]


def test_a_slice_holds_its_quanta_and_the_graph_header(saved, tmp_path):
    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    assert QuantumGraph.readHeader(sliced) == QuantumGraph.readHeader(saved)
    expected = [describe(q) for q in QuantumGraph.loadQuanta(saved, IDS)]
    assert [describe(q) for q in QuantumGraph.loadQuanta(sliced, IDS)] == expected
    assert describe(QuantumGraph.loadQuantum(sliced, 250)) == describe(QuantumGraph.loadQuantum(saved, 250))
    assert sorted(q.id for q in file_format.read_quanta(sliced)) == sorted(IDS)


def test_a_slice_holds_the_shared_sections_and_its_own_records_only(saved, tmp_path):
    from supertask.graph.slice_file import _SLICE_PREAMBLE_SIZE

    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    with GraphRecords(saved) as source:
        shared = len(source.header_bytes) + len(source.tables_bytes) + len(source.dictionary)
        records = sum(len(source.record(qid)) for qid in IDS)
        all_records = sum(len(source.record(qid)) for qid in range(N_QUANTA))
    assert sliced.stat().st_size == _SLICE_PREAMBLE_SIZE + shared + records + 24 * len(IDS)
    assert records < all_records / 50


def test_a_quantum_not_in_the_slice_is_an_index_error(saved, tmp_path):
    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    for missing in (0, 4, 47, 599, 10_000):
        with pytest.raises(IndexError, match=f"no quantum {missing} in graph slice"):
            QuantumGraph.loadQuanta(sliced, [missing])


def test_a_damaged_slice_is_refused(saved, tmp_path):
    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    data = bytearray(sliced.read_bytes())
    # a byte in the last record (just before the id table of 6 entries of 24 bytes)
    data[len(data) - 6 * 24 - 5] ^= 0x5A
    damaged = tmp_path / "damaged.qslice"
    damaged.write_bytes(bytes(data))
    with pytest.raises(GraphFileError, match="checksum"):
        file_format.read_quanta(damaged)
    truncated = tmp_path / "short.qslice"
    truncated.write_bytes(sliced.read_bytes()[:-10])
    with pytest.raises(GraphFileError, match="truncated"):
        QuantumGraph.readHeader(truncated)


def test_a_slice_cannot_be_sliced_again(saved, tmp_path):
    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    with pytest.raises(GraphFileError, match="is a graph slice already"):
        GraphRecords(sliced)


def test_reading_a_slice_imports_nothing_heavy(saved, tmp_path):
    sliced = write_slice(saved, tmp_path / "s.qslice", IDS)
    code = (
        "import sys\n"
        "from supertask.graph.quantum_graph import QuantumGraph\n"
        f"QuantumGraph.loadQuanta({str(sliced)!r}, [44, 45])\n"
        "heavy = {'numpy', 'sqlalchemy', 'pydantic', 'yaml', 'rich'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- bps.slices --------------------------------------------------------------------------------------


def jobs_of(saved: Path, sizes: list[int]) -> list[Job]:
    jobs, next_id = [], 0
    for n, size in enumerate(sizes):
        ids = list(range(next_id, next_id + size))
        next_id += size
        args = ["--graph", str(saved), *[a for q in ids for a in ("--quantum", str(q))], "--job", f"j{n}"]
        jobs.append(Job(f"j{n}", "label", ids, args))
    return jobs


def test_jobs_are_cut_into_few_slices_and_each_job_reads_its_own(saved, tmp_path):
    jobs = jobs_of(saved, [3, 1, 4, 1, 5, 9, 2, 6])
    count = write_job_slices(saved, jobs, tmp_path, quanta_per_slice=10)
    files = sorted((tmp_path / SLICE_DIR).iterdir())
    assert count == len(files) == 4  # 3+1+4+1 | 5 | 9 | 2+6 (a job is never split)
    for job in jobs:
        graph = job.arguments[job.arguments.index("--graph") + 1]
        assert Path(graph).parent == tmp_path / SLICE_DIR
        assert [q.id for q in QuantumGraph.loadQuanta(graph, job.quantum_ids)] == job.quantum_ids
    held = [sorted(q.id for q in file_format.read_quanta(f)) for f in files]
    assert held == [list(range(0, 9)), list(range(9, 14)), list(range(14, 23)), list(range(23, 31))]


def test_a_job_larger_than_a_slice_gets_one_of_its_own(saved, tmp_path):
    jobs = jobs_of(saved, [2, 30, 2])
    assert write_job_slices(saved, jobs, tmp_path, quanta_per_slice=10) == 3


def test_a_restart_after_the_graph_was_rewritten_ships_the_new_records(saved, tmp_path):
    from bps.slices import refresh_job_slices
    from bps.workflow import GenericWorkflow

    graph_file = tmp_path / "run.qgraph"
    graph_file.write_bytes(saved.read_bytes())
    wf = GenericWorkflow(
        name="w", submit_dir=str(tmp_path), graph_file=str(graph_file), repo="", output_run="r"
    )
    for job in jobs_of(graph_file, [3, 4, 5]):
        wf.add_job(job, [])
    write_job_slices(graph_file, wf.jobs.values(), tmp_path, quanta_per_slice=7)
    assert refresh_job_slices(wf) == 0  # current: nothing written
    fixed = QuantumGraph.load(graph_file)
    fixed.metadata["fixed"] = True
    fixed.save(graph_file)
    assert refresh_job_slices(wf) == 2
    for job in wf.jobs.values():
        sliced = job.arguments[job.arguments.index("--graph") + 1]
        assert QuantumGraph.readHeader(sliced)["metadata"]["fixed"] is True
        assert [q.id for q in QuantumGraph.loadQuanta(sliced, job.quantum_ids)] == job.quantum_ids
    assert refresh_job_slices(wf) == 0


# -- bps prepare with transfer staging -------------------------------------------------------------


def _toy_config(tmp_path, monkeypatch, **site):
    from support.toy_pipeline import TASKS_PYTHONPATH, ToyPipeline

    toy = ToyPipeline(run="u/test/slices", detectors=(1, 2, 3, 4, 5), seed_scale=1, multiplier=2)
    repo = toy.set_up(
        tmp_path,
        monkeypatch,
        wms="htcondor",
        compute_site="htcondor_transfer",
        site={
            "environment": {"PYTHONPATH": TASKS_PYTHONPATH},
            "condor": {"skip_checks": ["tmp_node_log", "job_user"]},
            **site,
        },
    )
    return repo.submit_yaml("slices")


def test_prepare_with_transfer_staging_ships_each_node_its_slice(tmp_path, monkeypatch):
    from support.toy_pipeline import prepare

    from bps.workflow_io import load_workflow

    submit_dir = prepare(_toy_config(tmp_path, monkeypatch, slice_quanta=2))
    workflow = load_workflow(submit_dir / "workflow.json")
    slices = sorted((submit_dir / SLICE_DIR).iterdir())
    assert len(slices) == 3  # 5 one-quantum jobs by twos, then the total job
    (dag,) = submit_dir.glob("*.dag")
    text = dag.read_text()
    for job in workflow.jobs.values():
        graph = job.arguments[job.arguments.index("--graph") + 1]
        assert Path(graph) in slices
        assert f'bps_graph="{graph}"' in text
    for sub in submit_dir.glob("*.sub"):
        if sub.name != "bps_final.sub":
            assert "transfer_input_files = $(bps_graph)$(bps_inputs)" in sub.read_text()


def test_prepare_refuses_a_slice_size_below_one(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bps.cli import main as bps_main

    result = CliRunner().invoke(
        bps_main, ["prepare", str(_toy_config(tmp_path, monkeypatch, slice_quanta=0))]
    )
    assert result.exit_code != 0
    assert "site.slice_quanta" in result.output and "at least 1" in result.output
    assert "Traceback" not in result.output
